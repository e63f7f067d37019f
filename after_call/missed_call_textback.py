"""Missed-call text-back: a caller nobody answered gets the workspace's auto-response by SMS, once.

An after-call hook (after_call/outcome_writer.py runs it after the lead update). A call counts as
missed when it came in on one of the workspace's numbers and ended with nobody to talk to: the
business did not pick up and the caller hung up before the agent (or said nothing to it). The text
goes out from the number that was called, opens (or continues) the lead's SMS thread and is stored
there with its delivery status, which Twilio's callbacks move on (POST /twilio/message-status).

Once per call: the durable `Call.sms_sent` flag is checked first, then a `textback:{call_id}` key
claimed with SET NX decides which process sends; the claim is given back only when Twilio refused
the message (a 4xx: nothing went out).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlmodel import Session
from twilio.base.exceptions import TwilioRestException

from after_call import metrics
from models.call_job import utcnow
from models.call_request import mask_phone
from models.conversation_history import record_outgoing_text
from models.domain import Lead, Workspace
from models.enums import CallDirection, CallOutcome, LeadStage
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from prompts.inbound_context import auto_response
from services import Services
from services.twilio_account import message_status_url

log = get_logger(__name__)

TEXTBACK_CLAIM_TTL_SECONDS = 24 * 3600
TEXTBACK_KIND = "missed_call_textback"


def textback_claim_key(call_id: str) -> str:
    return f"textback:{call_id}"


@dataclass(frozen=True)
class MissedCall:
    to: str
    body: str
    from_number: str | None
    sms_sent: bool
    refusal: str | None


def _missed_call(services: Services, call_id: str) -> MissedCall:
    with Session(services.engine) as db:
        call = db.get(Call, call_id)
        if call is None or call.workspace_id is None:
            return MissedCall("", "", None, False, "no_workspace")
        workspace = db.get(Workspace, call.workspace_id)
        lead = db.get(Lead, call.lead_id) if call.lead_id is not None else None
        if workspace is None or lead is None:
            return MissedCall("", "", None, False, "no_caller_number")
        refusal = None
        if not workspace.auto_response_enabled:
            refusal = "auto_response_disabled"
        elif lead.opted_out_at is not None or lead.stage is LeadStage.SUPPRESSED:
            refusal = "opted_out"
        return MissedCall(lead.phone, auto_response(workspace), call.business_phone, call.sms_sent, refusal)


def _store_text(services: Services, call_id: str, body: str, message_sid: str) -> None:
    """The text in the lead's SMS thread (opened here on a first contact), and the call marked as texted."""
    with Session(services.engine) as db:
        call = db.get(Call, call_id)
        if call is None or call.lead_id is None:
            return
        lead = db.get(Lead, call.lead_id)
        if lead is None:
            return
        now = utcnow()
        call.sms_sent = True
        record_outgoing_text(db, lead, body, message_sid, message_metadata={"step": TEXTBACK_KIND, "call_id": call_id})
        if lead.stage is LeadStage.NEW:
            lead.stage = LeadStage.CONTACTED
        lead.updated_at = now
        db.add_all([call, lead])
        db.commit()


def is_missed(record: Call) -> bool:
    return record.direction is CallDirection.INBOUND and record.outcome is CallOutcome.NO_ANSWER


async def text_back(services: Services, record: Call) -> str:
    """Send the auto-response for a missed inbound call if it warrants one; returns what happened."""
    if not is_missed(record):
        return "not_missed"
    if services.twilio is None:
        log.info("missed_call_textback_skipped", call_id=record.id, reason="twilio_not_configured")
        return "not_configured"
    missed = await asyncio.to_thread(_missed_call, services, record.id)
    if missed.refusal:
        return missed.refusal
    if missed.sms_sent:
        return "already_sent"
    if not await services.store.set(textback_claim_key(record.id), "sending", TEXTBACK_CLAIM_TTL_SECONDS, only_if_absent=True):
        return "claimed_elsewhere"
    try:
        message_sid = await services.twilio.send_sms(
            missed.to, missed.body, from_=missed.from_number, status_callback=message_status_url(services.settings)
        )
    except TwilioRestException as exc:
        if 400 <= exc.status < 500:
            await services.store.delete(textback_claim_key(record.id))  # refused: nothing went out
        log.error("missed_call_textback_refused", call_id=record.id, status=exc.status, code=exc.code)
        return "failed"
    except Exception as exc:
        log.error("missed_call_textback_unknown_result", call_id=record.id, error=type(exc).__name__)
        return "failed"
    await asyncio.to_thread(_store_text, services, record.id, missed.body, message_sid)
    record.sms_sent = True
    log.info("missed_call_textback_sent", call_id=record.id, message_sid=message_sid, phone=mask_phone(missed.to))
    return "sent"


async def send_missed_call_textback(services: Services, record: Call) -> None:
    """After-call hook: the auto-response to a missed inbound caller."""
    try:
        result = await text_back(services, record)
    except SessionStoreUnavailable:
        result = "store_unavailable"
        log.warning("missed_call_textback_skipped", call_id=record.id, reason=result)
    metrics.MISSED_CALL_TEXTBACKS.labels(result).inc()
