"""After each call: close its call attempt, free its campaign slot, and schedule what follows.

An after-call hook (after_call/outcome_writer.py runs it once the outcome is stored and Twilio's
verdicts are in). What follows is the queue's rule (call_queue/attempt_store.py): a retry after the
backoff for a call that reached nobody, a callback at the time the caller asked for. A call placed
before the queue existed, or by hand, has no attempt and is left alone.
"""

import asyncio

from call_queue import attempt_store
from call_queue.attempt_store import CallEnding, FinishedAttempt
from call_queue.campaign_limiter import process_campaign_limiter
from models.call_job import utcnow
from models.enums import CallOutcome
from models.log_config import get_logger
from models.tables import Call
from prompts.caller_intent import Intent, classify
from services import Services

log = get_logger(__name__)


def callback_words(record: Call) -> str | None:
    """What the caller said when asking to be called back: the last such utterance, else their last words."""
    said = [str(entry.get("text", "")) for entry in record.transcript if entry.get("role") == "caller" and entry.get("text")]
    if not said:
        return None
    asking = [text for text in said if classify(text) is Intent.CALLBACK]
    return (asking or said)[-1]


def ending_of(record: Call) -> CallEnding:
    return CallEnding(
        record.status,
        outcome=record.outcome,
        telephony_status=record.telephony_status,
        error=record.error,
        callback_text=callback_words(record) if record.outcome is CallOutcome.CALLBACK_REQUESTED else None,
    )


async def finish_call_attempt(services: Services, record: Call) -> None:
    finished: FinishedAttempt | None = await asyncio.to_thread(
        attempt_store.finish_attempt, services.engine, services.settings, record.id, ending_of(record), utcnow()
    )
    if finished is None:
        return  # no attempt behind this call, or it was closed already (a repeated status callback)
    if finished.campaign_id is not None:
        limiter, owned = process_campaign_limiter(services.settings)
        try:
            await limiter.release(finished.campaign_id, record.id)
        finally:
            if owned:
                await limiter.aclose()
    log.info(
        "call_attempt_finished",
        call_id=record.id,
        attempt_id=finished.attempt_id,
        status=finished.status.value,
        next_attempt_id=finished.next_attempt_id,
        next_scheduled_for=finished.next_scheduled_for.isoformat() if finished.next_scheduled_for else None,
    )
