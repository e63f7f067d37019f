"""A person at the business in a lead's conversation: move its stage, write into its SMS thread.

PATCH /leads/{id} moves the stage; TAKE_OVER stops the agent from answering the lead's texts (see
control_api/telephony/sms_conversation.py for when it steps back in). POST /leads/{id}/messages
sends a person's text from the workspace's number and stores it in the thread; writing to a lead is
taking its conversation over.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from sqlmodel import Session

from control_api.deps import get_db, get_services
from control_api.routes.leads import lead_of, opt_out
from control_api.telephony.sms_conversation import phone_number_of
from control_api.workspace_auth import CurrentWorkspace
from models.call_job import utcnow
from models.conversation_history import record_outgoing_text
from models.conversation_schemas import HumanMessageIn, LeadUpdate
from models.domain import Lead
from models.enums import DeliveryStatus, LeadStage, OptOutSource, SenderType
from models.lead_schemas import LeadPublic, MessagePublic
from models.log_config import get_logger
from models.row_views import view_of
from services import Services
from services.twilio_account import message_status_url

log = get_logger(__name__)
router = APIRouter(tags=["leads"])

Db = Annotated[Session, Depends(get_db)]


def take_over(lead: Lead) -> None:
    now = utcnow()
    lead.stage, lead.taken_over_at, lead.updated_at = LeadStage.TAKE_OVER, now, now


@router.patch("/leads/{lead_id}", response_model=LeadPublic)
def update_lead(lead_id: int, body: LeadUpdate, workspace: CurrentWorkspace, db: Db) -> LeadPublic:
    lead = lead_of(db, workspace, lead_id)
    fields = body.model_dump(exclude_unset=True)
    if "stage" in fields and fields["stage"] is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="stage cannot be null")
    stage = body.stage
    if stage is not None and stage is not lead.stage:
        if lead.stage is LeadStage.SUPPRESSED:
            raise HTTPException(status.HTTP_409_CONFLICT, detail="stage: the lead opted out; SUPPRESSED is final")
        if stage is LeadStage.SUPPRESSED:
            opt_out(lead, OptOutSource.API)
        elif stage is LeadStage.TAKE_OVER:
            take_over(lead)
        else:
            lead.stage, lead.taken_over_at = stage, None
    if body.name is not None:
        lead.name = body.name
    lead.updated_at = utcnow()
    db.add(lead)
    db.commit()
    db.refresh(lead)
    return view_of(LeadPublic, lead)


@router.post("/leads/{lead_id}/messages", status_code=status.HTTP_201_CREATED, response_model=MessagePublic)
async def send_human_message(
    lead_id: int, body: HumanMessageIn, workspace: CurrentWorkspace, db: Db, services: Annotated[Services, Depends(get_services)]
) -> MessagePublic:
    lead = lead_of(db, workspace, lead_id)
    if lead.stage is LeadStage.SUPPRESSED or lead.opted_out_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="the lead opted out: no more texts")
    if services.twilio is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="texts need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"
        )
    number = phone_number_of(db, workspace.id)  # type: ignore[arg-type]
    message_sid = await services.twilio.send_sms(
        lead.phone,
        body.content,
        from_=number.phone_number if number else None,
        status_callback=message_status_url(services.settings),
    )
    message = record_outgoing_text(
        db,
        lead,
        body.content,
        message_sid,
        sender=SenderType.HUMAN,
        delivery_status=DeliveryStatus.QUEUED,
        sender_name=body.sender_name,
        message_metadata={"step": "human"},
    )
    take_over(lead)
    db.add(lead)
    db.commit()
    db.refresh(message)
    log.info("human_text_sent", lead_id=lead.id, message_sid=message_sid)
    return view_of(MessagePublic, message, role="assistant")
