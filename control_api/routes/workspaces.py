"""Workspaces, their API keys and consent attestations.

POST /workspaces answers with the workspace's first API key, the only time it is shown. Every
other route here serves only the workspace of the key sent, and answers 404 for any other id.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlmodel import Session, col, select

from control_api.deps import get_db
from control_api.workspace_auth import CurrentWorkspace, issue_api_key, require_admin, revoke
from models.domain import Lead, OutreachAttestation, Workspace, WorkspaceApiKey
from models.row_views import view_of
from models.workspace_schemas import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyPublic,
    AttestationCreate,
    AttestationPublic,
    WorkspaceCreate,
    WorkspaceCreated,
    WorkspacePublic,
    WorkspaceUpdate,
)

router = APIRouter(tags=["workspaces"])

Db = Annotated[Session, Depends(get_db)]


def own_workspace(workspace_id: int, workspace: Workspace) -> Workspace:
    if workspace_id != workspace.id:
        # Not 403: another workspace's ids are not even confirmed to exist.
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"workspace {workspace_id} not found")
    return workspace


@router.post(
    "/workspaces", status_code=status.HTTP_201_CREATED, response_model=WorkspaceCreated, dependencies=[Depends(require_admin)]
)
def create_workspace(body: WorkspaceCreate, db: Db) -> WorkspaceCreated:
    workspace = Workspace(**body.model_dump())
    db.add(workspace)
    db.flush()
    record, key = issue_api_key(db, workspace)
    db.commit()
    return WorkspaceCreated(workspace=view_of(WorkspacePublic, workspace), key=view_of(ApiKeyPublic, record), api_key=key)


@router.get("/workspaces/{workspace_id}", response_model=WorkspacePublic)
def get_workspace(workspace_id: int, workspace: CurrentWorkspace) -> WorkspacePublic:
    return view_of(WorkspacePublic, own_workspace(workspace_id, workspace))


@router.patch("/workspaces/{workspace_id}", response_model=WorkspacePublic)
def update_workspace(workspace_id: int, body: WorkspaceUpdate, workspace: CurrentWorkspace, db: Db) -> WorkspacePublic:
    own_workspace(workspace_id, workspace)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None and name not in ("business_hours", "transfer_number"):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name} cannot be null")
        setattr(workspace, name, value)
    db.add(workspace)
    db.commit()
    db.refresh(workspace)
    return view_of(WorkspacePublic, workspace)


@router.get("/workspaces/{workspace_id}/api-keys", response_model=list[ApiKeyPublic])
def list_api_keys(workspace_id: int, workspace: CurrentWorkspace, db: Db) -> list[ApiKeyPublic]:
    own_workspace(workspace_id, workspace)
    keys = db.exec(
        select(WorkspaceApiKey).where(WorkspaceApiKey.workspace_id == workspace.id).order_by(col(WorkspaceApiKey.id))
    ).all()
    return [view_of(ApiKeyPublic, key) for key in keys]


@router.post("/workspaces/{workspace_id}/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyIssued)
def create_api_key(workspace_id: int, body: ApiKeyCreate, workspace: CurrentWorkspace, db: Db) -> ApiKeyIssued:
    own_workspace(workspace_id, workspace)
    record, key = issue_api_key(db, workspace, body.name)
    db.commit()
    return ApiKeyIssued(key=view_of(ApiKeyPublic, record), api_key=key)


@router.delete("/workspaces/{workspace_id}/api-keys/{key_id}", response_model=ApiKeyPublic)
def revoke_api_key(workspace_id: int, key_id: int, workspace: CurrentWorkspace, db: Db) -> ApiKeyPublic:
    own_workspace(workspace_id, workspace)
    record = db.get(WorkspaceApiKey, key_id)
    if record is None or record.workspace_id != workspace.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"API key {key_id} not found")
    revoke(record)
    db.add(record)
    db.commit()
    return view_of(ApiKeyPublic, record)


@router.post("/workspaces/{workspace_id}/attestations", status_code=status.HTTP_201_CREATED, response_model=AttestationPublic)
def create_attestation(workspace_id: int, body: AttestationCreate, workspace: CurrentWorkspace, db: Db) -> AttestationPublic:
    own_workspace(workspace_id, workspace)
    if body.lead_id is not None:
        lead = db.get(Lead, body.lead_id)
        if lead is None or lead.workspace_id != workspace.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"lead {body.lead_id} not found")
    attestation = OutreachAttestation(workspace_id=workspace.id, **body.model_dump())
    db.add(attestation)
    db.commit()
    return view_of(AttestationPublic, attestation)


@router.get("/workspaces/{workspace_id}/attestations", response_model=list[AttestationPublic])
def list_attestations(workspace_id: int, workspace: CurrentWorkspace, db: Db) -> list[AttestationPublic]:
    own_workspace(workspace_id, workspace)
    rows = db.exec(
        select(OutreachAttestation).where(OutreachAttestation.workspace_id == workspace.id).order_by(col(OutreachAttestation.id))
    ).all()
    return [view_of(AttestationPublic, row) for row in rows]
