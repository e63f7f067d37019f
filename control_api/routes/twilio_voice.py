"""Calls to the workspaces' own numbers: Twilio's voice webhook, the forwarded ring's result, the call's status.

All three are signature checked (control_api/telephony/twilio_signature.py): a forged post, or a
valid signature replayed with other parameters or at another URL, is refused with 403. An exact
replay of a voice webhook (Twilio's own retry) gets the same call id and answer, never a second call.
"""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlmodel import Session, select
from twilio.twiml.voice_response import VoiceResponse

from after_call.telephony_verdicts import TERMINAL, TWILIO_STATUSES
from control_api.deps import get_services, get_settings
from control_api.telephony.inbound_calls import (
    IncomingCall,
    admit_inbound_call,
    agent_answers_twiml,
    finish_forwarded_call,
    finish_missed_call,
    job_of_call,
    ring_business_twiml,
)
from control_api.telephony.twilio_signature import signed_form
from models.call_job import CallJob
from models.call_request import mask_phone
from models.enums import CallDirection, CallStatus
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.settings import Settings
from models.tables import Call
from services import Services

log = get_logger(__name__)
router = APIRouter(tags=["twilio"])

DIAL_STATUSES = ("completed", "answered", "busy", "no-answer", "failed", "canceled")
TWIML = "application/xml"
FINISHED = (CallStatus.COMPLETED, CallStatus.FAILED)
FORWARD_PREFIX = "forward-"


def _twiml(text: str) -> Response:
    return Response(content=text, media_type=TWIML)


def _hang_up() -> Response:
    response = VoiceResponse()
    response.hangup()
    return _twiml(str(response))


def _unavailable() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="session store unavailable; Twilio will retry")


@router.post(
    "/twilio/voice",
    response_class=Response,
    responses={200: {"content": {TWIML: {}}}, 403: {"description": "missing or wrong X-Twilio-Signature"}},
)
async def incoming_call(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
) -> Response:
    form = await signed_form(request, settings)
    incoming = IncomingCall.from_form(form)
    for field in ("CallSid", "From", "To"):
        if not form.get(field):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{field} is required")
    try:
        answered = await admit_inbound_call(services, incoming)
    except SessionStoreUnavailable:
        raise _unavailable() from None
    if answered is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"To: {mask_phone(incoming.called)} is not a registered number")
    with structlog.contextvars.bound_contextvars(call_id=str(answered.job.id)):
        # A retried webhook after the ring went unanswered must not ring the business again.
        already_rang = (answered.job.telephony_status or "").startswith(FORWARD_PREFIX)
        ringing = answered.ring_business and answered.job.status is CallStatus.PENDING and not already_rang
        log.info(
            "inbound_call",
            caller=mask_phone(incoming.caller),
            number=mask_phone(answered.number.phone_number),
            answered_by="business" if ringing else "agent",
        )
        return _twiml(ring_business_twiml(services, answered) if ringing else agent_answers_twiml(services, answered.job))


async def _job(services: Services, call_id: str) -> CallJob | None:
    job = await services.store.load_job(call_id)
    if job is not None:
        return job
    # A long forwarded call outlives its job; the row knows everything the record needs.
    row = await asyncio.to_thread(_inbound_call_row, services, Call.id == call_id)
    return job_of_call(row) if row is not None else None


def _inbound_call_row(services: Services, condition) -> Call | None:
    with Session(services.engine) as db:
        return db.exec(select(Call).where(condition, Call.direction == CallDirection.INBOUND)).first()


@router.post(
    "/twilio/voice/dial-result",
    response_class=Response,
    responses={200: {"content": {TWIML: {}}}, 403: {"description": "missing or wrong X-Twilio-Signature"}},
)
async def forwarded_ring_result(
    request: Request,
    call_id: UUID,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
) -> Response:
    """The <Dial> to the business ended: answered (done), unanswered (the agent answers), or the caller left (missed)."""
    form = await signed_form(request, settings)
    dial_status = form.get("DialCallStatus", "")
    if dial_status not in DIAL_STATUSES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"DialCallStatus must be one of {', '.join(DIAL_STATUSES)}"
        )
    with structlog.contextvars.bound_contextvars(call_id=str(call_id)):
        try:
            job = await _job(services, str(call_id))
            if job is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"call {call_id} is unknown")
            if job.twilio_call_sid and form.get("CallSid") and form["CallSid"] != job.twilio_call_sid:
                raise HTTPException(status.HTTP_409_CONFLICT, detail="CallSid does not belong to this call")
            if job.status in FINISHED:
                return _hang_up()  # a retried callback: the call was recorded already
            log.info("forwarded_ring_ended", dial_status=dial_status, call_status=form.get("CallStatus"))
            if dial_status in ("completed", "answered"):
                await finish_forwarded_call(services, job, form.get("DialCallDuration"))
                return _hang_up()
            if dial_status == "canceled" or form.get("CallStatus") in TERMINAL:
                await finish_missed_call(services, job, f"{FORWARD_PREFIX}{dial_status}", form.get("CallDuration"))
                return _twiml(str(VoiceResponse()))
            job = job.model_copy(update={"telephony_status": f"{FORWARD_PREFIX}{dial_status}"})
            await services.store.update_job(job)
        except SessionStoreUnavailable:
            raise _unavailable() from None
        return _twiml(agent_answers_twiml(services, job))


@router.post("/twilio/voice/status", responses={403: {"description": "missing or wrong X-Twilio-Signature"}})
async def inbound_call_status(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
) -> dict[str, object]:
    """The number's call status callback: a call that ended before the agent answered it was missed."""
    form = await signed_form(request, settings)
    call_status = form.get("CallStatus", "")
    if call_status not in TWILIO_STATUSES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"CallStatus must be one of {', '.join(TWILIO_STATUSES)}"
        )
    call_sid = form.get("CallSid", "")
    row = await asyncio.to_thread(_inbound_call_row, services, Call.twilio_call_sid == call_sid) if call_sid else None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="CallSid is not an inbound call of this service")
    with structlog.contextvars.bound_contextvars(call_id=row.id):
        try:
            job = await services.store.load_job(row.id) or job_of_call(row)
            missed = call_status in TERMINAL and job.status is CallStatus.PENDING
            if missed:
                await finish_missed_call(services, job, call_status, form.get("CallDuration"))
        except SessionStoreUnavailable:
            raise _unavailable() from None
        log.info("inbound_call_status", telephony_status=call_status, missed=missed)
    return {"call_id": row.id, "telephony_status": call_status, "missed": missed}
