"""The SMS follow-up after a call: the context's text (the booking link, the order summary), sent once.

An after-call hook (after_call/outcome_writer.py runs it last). "Once, never twice" holds across hook retries and processes: the durable
`Call.sms_sent` flag is checked first, then a `sms:{call_id}` key claimed with SET NX decides which
process sends. The claim is given back only when Twilio said no (a 4xx: nothing was sent); after
an error that leaves it unknown whether Twilio accepted the message, it is kept: a missed follow-up
is better than a duplicate.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sqlmodel import Session
from twilio.base.exceptions import TwilioRestException

from after_call import metrics
from models.call_request import mask_phone
from models.conversation_history import record_outgoing_text
from models.domain import Lead
from models.enums import CallGoal, CallOutcome
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from services import Services
from services.twilio_account import message_status_url

log = get_logger(__name__)

SMS_CLAIM_TTL_SECONDS = 24 * 3600
# The outcomes whose follow-up text makes sense, per goal: the booking link also helps a qualified
# lead who did not pick a time yet; an order summary only follows a confirmed order. Never after
# opted_out, not_interested, callback_requested, no_answer or voicemail.
SMS_OUTCOMES: dict[CallGoal, frozenset[CallOutcome]] = {
    CallGoal.BOOK_MEETING: frozenset({CallOutcome.MEETING_BOOKED, CallOutcome.QUALIFIED}),
    CallGoal.CONFIRM_ORDER: frozenset({CallOutcome.ORDER_CONFIRMED}),
    CallGoal.QUALIFY_INTEREST: frozenset({CallOutcome.QUALIFIED}),
    CallGoal.COLLECT_INFO: frozenset({CallOutcome.INFO_COLLECTED}),
}


class SmsSender(Protocol):
    async def send_sms(self, to: str, body: str, *, from_: str | None = None, status_callback: str | None = None) -> str: ...


def sms_claim_key(call_id: str) -> str:
    return f"sms:{call_id}"


def _already_sent(services: Services, call_id: str) -> bool:
    with Session(services.engine) as db:
        record = db.get(Call, call_id)
        return bool(record and record.sms_sent)


def _mark_sent(services: Services, call_id: str, body: str, message_sid: str) -> None:
    with Session(services.engine) as db:
        record = db.get(Call, call_id)
        if record is not None:
            record.sms_sent = True
            db.add(record)
            lead = db.get(Lead, record.lead_id) if record.lead_id is not None else None
            if lead is not None:  # the text is part of the lead's conversation, with its delivery status
                record_outgoing_text(db, lead, body, message_sid, message_metadata={"step": "call_followup", "call_id": call_id})
            db.commit()


async def send_followup(services: Services, sender: SmsSender | None, record: Call) -> str:
    """Send the follow-up for a finished call if it warrants one; returns what happened."""
    goal_outcomes = SMS_OUTCOMES.get(record.goal) if record.goal else None
    if record.outcome is None or not goal_outcomes or record.outcome not in goal_outcomes:
        return "not_for_this_outcome"
    context = await services.store.load_context(record.context_id)
    if context is None or not context.should_send_sms or not context.sms_message:
        return "no_sms_text"
    if sender is None:
        log.info("sms_followup_skipped", call_id=record.id, reason="twilio_not_configured")
        return "not_configured"
    if await asyncio.to_thread(_already_sent, services, record.id):
        return "already_sent"
    if not await services.store.set(sms_claim_key(record.id), "sending", SMS_CLAIM_TTL_SECONDS, only_if_absent=True):
        return "claimed_elsewhere"
    try:
        message_sid = await sender.send_sms(
            record.phone, context.sms_message, status_callback=message_status_url(services.settings)
        )
    except TwilioRestException as exc:
        if 400 <= exc.status < 500:
            await services.store.delete(sms_claim_key(record.id))  # refused: nothing went out, a retry may send
        log.error("sms_followup_refused", call_id=record.id, status=exc.status, code=exc.code)
        return "failed"
    except Exception as exc:
        log.error("sms_followup_unknown_result", call_id=record.id, error=type(exc).__name__)
        return "failed"
    record.sms_sent = True
    await asyncio.to_thread(_mark_sent, services, record.id, context.sms_message, message_sid)
    job = await services.store.load_job(record.id)
    if job is not None:
        await services.store.update_job(job.model_copy(update={"sms_sent": True}))
    log.info("sms_followup_sent", call_id=record.id, message_sid=message_sid, phone=mask_phone(record.phone))
    return "sent"


async def send_sms_followup(services: Services, record: Call) -> None:
    """After-call hook: the follow-up text through the process's Twilio account, when there is one."""
    try:
        result = await send_followup(services, services.twilio, record)
    except SessionStoreUnavailable:
        result = "store_unavailable"
        log.warning("sms_followup_skipped", call_id=record.id, reason=result)
    metrics.SMS_FOLLOWUPS.labels(result).inc()
