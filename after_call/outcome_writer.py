"""Writes a finished call where it outlives the session, then runs the after-call hooks in order.

Database first (retried; if it stays down, the record goes to an append-only spool file that is
replayed at start-up: an outcome is never dropped), then the session store, then the hooks.
Both the worker (a conversation that ended) and the telephony callbacks (a call that never reached
the worker) come through `record_finished_call`, so every call gets the same row, job update,
released phone lock and hooks.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlmodel import Session

from after_call import metrics
from after_call.call_attempts import finish_call_attempt
from after_call.lead_updates import update_lead_after_call
from after_call.sms_followup import send_sms_followup
from after_call.telephony_verdicts import reconcile_with_telephony
from models.call_job import CallJob, utcnow
from models.enums import CallGoal, CallOutcome, CallStatus, EndReason
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from services import Services

log = get_logger(__name__)

SPOOL_PATH = Path("data/outcome-spool.jsonl")

AfterCallHook = Callable[[Services, Call], Awaitable[None]]

# The order is the point: Twilio's verdicts first (a machine answer turns the outcome into
# `voicemail`, which the later hooks must see), then the lead, then the call attempt (its retry
# or callback is decided on the final outcome, and a lead who opted out on this call is already
# suppressed when the follow-up's policy is asked), then the SMS that depends on all of them.
AFTER_CALL_HOOKS: tuple[AfterCallHook, ...] = (
    reconcile_with_telephony,
    update_lead_after_call,
    finish_call_attempt,
    send_sms_followup,
)

# Set from the stored row when the finished call does not know them: who the call was for (POST
# /calls wrote it) and, for a call that ended before any conversation, what it was about.
_KEPT_IF_UNKNOWN = ("goal", "stt_provider", "llm_provider", "tts_provider", "started_at")


def record_without_conversation(
    job: CallJob,
    *,
    outcome: CallOutcome,
    end_reason: EndReason | None,
    error: str | None,
    telephony_status: str | None = None,
    goal: CallGoal | None = None,
) -> Call:
    """The row of a call that ended before any conversation (a failed dial, busy, unanswered, a machine)."""
    return Call(
        id=str(job.id),
        context_id=str(job.context_id),
        phone=job.phone,
        goal=goal,
        status=CallStatus.FAILED if end_reason is EndReason.ERROR else CallStatus.COMPLETED,
        outcome=outcome,
        end_reason=end_reason,
        error=error,
        twilio_call_sid=job.twilio_call_sid,
        telephony_status=telephony_status or job.telephony_status,
        created_at=job.created_at,
        ended_at=utcnow(),
    )


def _write_db(services: Services, record: Call) -> None:
    with Session(services.engine) as db:
        stored = db.get(Call, record.id)
        if stored is not None:
            for name in Call.LINK_FIELDS:
                setattr(record, name, getattr(stored, name))
            for name in _KEPT_IF_UNKNOWN:
                if getattr(record, name) is None:
                    setattr(record, name, getattr(stored, name))
            if stored.sms_sent:
                record.sms_sent = True
        db.merge(record)
        db.commit()


async def _persist(services: Services, record: Call) -> bool:
    for attempt in range(3):
        try:
            await asyncio.to_thread(_write_db, services, record)
            return True
        except Exception as exc:  # any database fault: retry, then spool
            log.warning("outcome_db_write_failed", call_id=record.id, attempt=attempt + 1, error=type(exc).__name__)
            await asyncio.sleep(0.2 * (attempt + 1))
    metrics.OUTCOME_WRITE_FAILURES.labels("database").inc()
    await asyncio.to_thread(_spool, record)
    log.error("outcome_spooled", call_id=record.id, spool=str(SPOOL_PATH))
    return False


def _spool(record: Call) -> None:
    SPOOL_PATH.parent.mkdir(parents=True, exist_ok=True)
    with SPOOL_PATH.open("a") as spool:
        spool.write(record.model_dump_json() + "\n")


def replay_spool(services: Services) -> int:
    """Move spooled outcomes into the database (run at start-up)."""
    if not SPOOL_PATH.exists():
        return 0
    lines = [line for line in SPOOL_PATH.read_text().splitlines() if line.strip()]
    for line in lines:
        data = json.loads(line)
        _write_db(services, Call.model_validate(data))
    SPOOL_PATH.unlink()
    return len(lines)


async def _update_session(services: Services, job: CallJob, record: Call) -> None:
    job = job.model_copy(
        update={
            "status": record.status,
            "outcome": record.outcome,
            "ended_at": record.ended_at,
            "started_at": record.started_at,
            "error": record.error,
            "telephony_status": record.telephony_status or job.telephony_status,
            "twilio_call_sid": record.twilio_call_sid or job.twilio_call_sid,
        }
    )
    for attempt in range(3):
        try:
            await services.store.update_job(job)
            await services.store.mark_inactive(job.id)
            await services.store.release_phone(job.phone, job.id)
            return
        except SessionStoreUnavailable as exc:
            log.warning("session_update_failed", call_id=str(job.id), attempt=attempt + 1, error=str(exc))
            await asyncio.sleep(0.3 * (attempt + 1))
    metrics.OUTCOME_WRITE_FAILURES.labels("session_store").inc()


async def record_finished_call(services: Services, record: Call, job: CallJob) -> Call:
    """Store a finished call's outcome and run every after-call hook; a failing hook is logged, never fatal."""
    await _persist(services, record)
    await _update_session(services, job, record)
    metrics.CALLS_FINISHED.labels(record.status.value, record.outcome.value if record.outcome else "").inc()
    for hook in AFTER_CALL_HOOKS:
        try:
            await hook(services, record)
        except Exception as exc:
            log.error("call_finished_hook_failed", call_id=record.id, hook=hook.__name__, error=repr(exc))
    log.info(
        "call_recorded",
        call_id=record.id,
        status=record.status.value,
        outcome=record.outcome.value if record.outcome else None,
        end_reason=record.end_reason.value if record.end_reason else None,
        turns=len(record.transcript),
    )
    return record
