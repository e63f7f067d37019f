"""Texts through Twilio: incoming texts (POST /twilio/sms) and delivery reports (POST /twilio/message-status), signature checked.

A report only moves a message's status forward (queued -> sent -> delivered, or a failure), so a
late or retried report never takes a delivered text back to `sent`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlmodel import Session, select
from twilio.twiml.messaging_response import MessagingResponse

from control_api.deps import get_services, get_settings
from control_api.telephony.sms_conversation import TEXT_MAX, IncomingText, answer_text
from control_api.telephony.twilio_signature import signed_form
from models.call_job import utcnow
from models.domain import ChatMessage
from models.enums import DeliveryStatus
from models.log_config import get_logger
from models.settings import Settings
from services import Services

log = get_logger(__name__)
router = APIRouter(tags=["twilio"])

# Twilio's MessageStatus values, as stored.
TWILIO_MESSAGE_STATUSES: dict[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
    "received": DeliveryStatus.RECEIVED,
}
DELIVERY_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENT_TO_EXTERNAL: 2,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.RECEIVED: 3,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.UNDELIVERED: 3,
    DeliveryStatus.FAILED: 3,
}


def moves_forward(current: DeliveryStatus | None, reported: DeliveryStatus) -> bool:
    return current is None or DELIVERY_RANK[reported] > DELIVERY_RANK[current]


def apply_delivery_report(services: Services, message_sid: str, twilio_status: str, error: str | None) -> DeliveryStatus | None:
    """The reported status on the stored message; None when no stored message has this sid."""
    reported = TWILIO_MESSAGE_STATUSES[twilio_status]
    with Session(services.engine) as db:
        message = db.exec(select(ChatMessage).where(ChatMessage.external_message_id == message_sid)).first()
        if message is None:
            return None
        if moves_forward(message.delivery_status, reported):
            now = utcnow()
            message.delivery_status, message.updated_at = reported, now
            if reported is DeliveryStatus.DELIVERED:
                message.delivered_at = message.delivered_at or now
            if twilio_status == "read":
                message.read_at = now
            if error:
                message.error_message = error[:500]
            db.add(message)
            db.commit()
        return message.delivery_status


@router.post("/twilio/message-status", responses={403: {"description": "missing or wrong X-Twilio-Signature"}})
async def message_status(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
) -> dict[str, object]:
    form = await signed_form(request, settings)
    message_sid = form.get("MessageSid") or form.get("SmsSid") or ""
    twilio_status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not message_sid:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="MessageSid is required")
    if twilio_status not in TWILIO_MESSAGE_STATUSES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"MessageStatus must be one of {', '.join(TWILIO_MESSAGE_STATUSES)}"
        )
    error = " ".join(filter(None, (form.get("ErrorCode"), form.get("ErrorMessage")))) or None
    stored = await asyncio.to_thread(apply_delivery_report, services, message_sid, twilio_status, error)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="MessageSid is not a text this service sent")
    log.info("message_status", message_sid=message_sid, twilio_status=twilio_status, stored=stored.value)
    return {"message_sid": message_sid, "delivery_status": stored.value}


@router.post(
    "/twilio/sms",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}, 403: {"description": "missing or wrong X-Twilio-Signature"}},
)
async def incoming_text(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
) -> Response:
    """A text to one of the workspaces' numbers: stored, then answered (the reply goes out over REST)."""
    form = await signed_form(request, settings)
    for field in ("MessageSid", "From", "To"):
        if not form.get(field):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{field} is required")
    body = form.get("Body", "")
    if len(body) > TEXT_MAX:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"Body is longer than {TEXT_MAX} characters")
    text = IncomingText(message_sid=form["MessageSid"], sender=form["From"], number=form["To"], body=body)
    reply = await answer_text(services, text)
    response = MessagingResponse()
    if reply is not None:  # no REST account to send it with: Twilio sends what the TwiML says
        response.message(reply)
    return Response(content=str(response), media_type="application/xml")
