"""A workspace's Twilio numbers and the business settings that decide how their calls are answered.

POST /workspaces/{id}/numbers registers a number the business owns at Twilio; its voice, SMS and
status webhooks must point at the URLs the answer lists (each one signature checked).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_api.deps import get_db, get_settings
from control_api.routes.workspaces import own_workspace
from control_api.workspace_auth import CurrentWorkspace
from models.business_hours import from_weekly_schedule, to_weekly_schedule
from models.call_job import utcnow
from models.call_request import mask_phone
from models.domain import PhoneNumber
from models.number_schemas import (
    BusinessSettings,
    BusinessSettingsPublic,
    PhoneNumberCreate,
    PhoneNumberPublic,
    PhoneNumberUpdate,
)
from models.row_views import view_of
from models.settings import Settings

router = APIRouter(tags=["numbers"])

Db = Annotated[Session, Depends(get_db)]
VOICE_WEBHOOK_PATH = "/twilio/voice"
SMS_WEBHOOK_PATH = "/twilio/sms"
VOICE_STATUS_PATH = "/twilio/voice/status"


def number_view(number: PhoneNumber, settings: Settings) -> PhoneNumberPublic:
    base = settings.public_base_url.rstrip("/")
    return view_of(
        PhoneNumberPublic,
        number,
        voice_webhook_url=base + VOICE_WEBHOOK_PATH,
        sms_webhook_url=base + SMS_WEBHOOK_PATH,
        status_callback_url=base + VOICE_STATUS_PATH,
    )


@router.post("/workspaces/{workspace_id}/numbers", status_code=status.HTTP_201_CREATED, response_model=PhoneNumberPublic)
def register_number(
    workspace_id: int,
    body: PhoneNumberCreate,
    workspace: CurrentWorkspace,
    db: Db,
    settings: Annotated[Settings, Depends(get_settings)],
) -> PhoneNumberPublic:
    own_workspace(workspace_id, workspace)
    number = PhoneNumber(workspace_id=workspace_id, **body.model_dump())
    db.add(number)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        # Any workspace's: a number routes to exactly one business.
        taken = db.exec(select(PhoneNumber).where(PhoneNumber.phone_number == body.phone_number)).first()
        field = "phone_number" if taken is not None else "phone_number_sid"
        shown = mask_phone(body.phone_number) if taken is not None else body.phone_number_sid
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{field} {shown} is already registered") from None
    return number_view(number, settings)


@router.get("/workspaces/{workspace_id}/numbers", response_model=list[PhoneNumberPublic])
def list_numbers(
    workspace_id: int, workspace: CurrentWorkspace, db: Db, settings: Annotated[Settings, Depends(get_settings)]
) -> list[PhoneNumberPublic]:
    own_workspace(workspace_id, workspace)
    rows = db.exec(select(PhoneNumber).where(PhoneNumber.workspace_id == workspace.id).order_by(col(PhoneNumber.id))).all()
    return [number_view(row, settings) for row in rows]


@router.patch("/workspaces/{workspace_id}/numbers/{number_id}", response_model=PhoneNumberPublic)
def update_number(
    workspace_id: int,
    number_id: int,
    body: PhoneNumberUpdate,
    workspace: CurrentWorkspace,
    db: Db,
    settings: Annotated[Settings, Depends(get_settings)],
) -> PhoneNumberPublic:
    own_workspace(workspace_id, workspace)
    number = db.get(PhoneNumber, number_id)
    if number is None or number.workspace_id != workspace.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"number {number_id} not found")
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None and name == "status":
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="status cannot be null")
        setattr(number, name, value)  # forward_to null: the agent answers every call
    number.updated_at = utcnow()
    db.add(number)
    db.commit()
    db.refresh(number)
    return number_view(number, settings)


def settings_view(workspace) -> BusinessSettingsPublic:
    return view_of(BusinessSettingsPublic, workspace, business_hours=to_weekly_schedule(workspace.business_hours))


@router.get("/workspaces/{workspace_id}/business-settings", response_model=BusinessSettingsPublic)
def get_business_settings(workspace_id: int, workspace: CurrentWorkspace) -> BusinessSettingsPublic:
    return settings_view(own_workspace(workspace_id, workspace))


@router.patch("/workspaces/{workspace_id}/business-settings", response_model=BusinessSettingsPublic)
def update_business_settings(
    workspace_id: int, body: BusinessSettings, workspace: CurrentWorkspace, db: Db
) -> BusinessSettingsPublic:
    own_workspace(workspace_id, workspace)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None and name != "trade":
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name} cannot be null")
        if name == "business_hours":
            value = from_weekly_schedule(body.business_hours or {})
        setattr(workspace, name, value)
    db.add(workspace)
    db.commit()
    db.refresh(workspace)
    return settings_view(workspace)
