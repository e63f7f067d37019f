"""Strategy versions of the key's workspace: create a new version, list, edit a draft, activate.

A version is never edited once it has been ACTIVE (models.domain refuses it too); a change is a
new version. Activating one rolls the previously active version back.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from control_api.deps import get_db
from control_api.workspace_auth import CurrentWorkspace
from models.call_job import utcnow
from models.domain import ImmutableStrategyError, StrategyVersion, Workspace
from models.enums import StrategyStatus
from models.row_views import view_of
from models.strategy_schemas import StrategyCreate, StrategyPublic, StrategyUpdate

router = APIRouter(tags=["strategies"])

Db = Annotated[Session, Depends(get_db)]


def _version_of(db: Session, workspace: Workspace, strategy_id: int) -> StrategyVersion:
    strategy = db.get(StrategyVersion, strategy_id)
    if strategy is None or strategy.workspace_id != workspace.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"strategy version {strategy_id} not found")
    return strategy


@router.post("/strategies", status_code=status.HTTP_201_CREATED, response_model=StrategyPublic)
def create_strategy_version(body: StrategyCreate, workspace: CurrentWorkspace, db: Db) -> StrategyPublic:
    fields = body.model_dump(exclude_none=True)
    for _ in range(3):  # two requests may pick the same number; the unique constraint decides
        latest = db.exec(
            select(func.max(StrategyVersion.version_number)).where(StrategyVersion.workspace_id == workspace.id)
        ).one()
        strategy = StrategyVersion(workspace_id=workspace.id, version_number=(latest or 0) + 1, **fields)
        db.add(strategy)
        try:
            db.commit()
            return view_of(StrategyPublic, strategy)
        except IntegrityError:
            db.rollback()
    raise HTTPException(status.HTTP_409_CONFLICT, detail="another version was created at the same time; retry")


@router.get("/strategies", response_model=list[StrategyPublic])
def list_strategy_versions(workspace: CurrentWorkspace, db: Db) -> list[StrategyPublic]:
    query = (
        select(StrategyVersion)
        .where(StrategyVersion.workspace_id == workspace.id)
        .order_by(col(StrategyVersion.version_number).desc())
    )
    return [view_of(StrategyPublic, row) for row in db.exec(query).all()]


@router.get("/strategies/{strategy_id}", response_model=StrategyPublic)
def get_strategy_version(strategy_id: int, workspace: CurrentWorkspace, db: Db) -> StrategyPublic:
    return view_of(StrategyPublic, _version_of(db, workspace, strategy_id))


@router.patch("/strategies/{strategy_id}", response_model=StrategyPublic)
def update_draft(strategy_id: int, body: StrategyUpdate, workspace: CurrentWorkspace, db: Db) -> StrategyPublic:
    strategy = _version_of(db, workspace, strategy_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(strategy, name, value)
    db.add(strategy)
    try:
        db.commit()
    except ImmutableStrategyError as exc:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return view_of(StrategyPublic, strategy)


@router.post("/strategies/{strategy_id}/activate", response_model=StrategyPublic)
def activate(strategy_id: int, workspace: CurrentWorkspace, db: Db) -> StrategyPublic:
    strategy = _version_of(db, workspace, strategy_id)
    if strategy.status is StrategyStatus.ACTIVE:
        return view_of(StrategyPublic, strategy)
    current = db.exec(
        select(StrategyVersion).where(
            StrategyVersion.workspace_id == workspace.id, StrategyVersion.status == StrategyStatus.ACTIVE
        )
    ).first()
    if current is not None:
        current.status = StrategyStatus.ROLLED_BACK
        db.add(current)
        db.flush()  # first: at most one ACTIVE version per workspace, checked by the database
    strategy.status, strategy.activated_at = StrategyStatus.ACTIVE, utcnow()
    db.add(strategy)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="another version was activated at the same time; retry") from None
    return view_of(StrategyPublic, strategy)
