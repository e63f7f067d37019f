"""Writes a finished call where it outlives the session, then runs the after-call hooks in order.

The local journal first (models/outcome_journal.py, fsynced), then the database (retried), the
session store and the hooks, each step marked in the journal as it completes. Whatever could not be
done (the database is down, a hook failed, the process died) is replayed from the journal at start-up
and every OUTCOME_JOURNAL_REPLAY_SECONDS, from the step where it stopped: every effect, an opt-out
above all, is applied once and in order.
Both the worker (a conversation that ended) and the telephony callbacks (a call that never reached
the worker) come through `record_finished_call`, so every call gets the same row, job update,
released phone lock and hooks.
"""

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable

from sqlmodel import Session

from after_call import metrics
from after_call.call_attempts import finish_call_attempt
from after_call.lead_updates import update_lead_after_call
from after_call.missed_call_textback import send_missed_call_textback
from after_call.sms_followup import send_sms_followup
from after_call.telephony_verdicts import reconcile_with_telephony, with_known_verdict
from models.call_job import CallJob, utcnow
from models.enums import CallGoal, CallOutcome, CallStatus, EndReason
from models.log_config import get_logger
from models.outcome_journal import LEASE_SECONDS, JournalEntry
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from services import Services

log = get_logger(__name__)

# The journal's name for the first step; every hook's step is its function's name.
DATABASE_STEP = "database"

AfterCallHook = Callable[[Services, Call], Awaitable[None]]

# The order is the point: Twilio's verdicts first (a machine answer turns the outcome into
# `voicemail`, which the later hooks must see), then the lead, then the call attempt (its retry
# or callback is decided on the final outcome, and a lead who opted out on this call is already
# suppressed when the follow-up's policy is asked), then the SMS that depends on all of them.
# A missed inbound call's text-back comes after the lead update, whose stage it moves on.
AFTER_CALL_HOOKS: tuple[AfterCallHook, ...] = (
    reconcile_with_telephony,
    update_lead_after_call,
    finish_call_attempt,
    send_sms_followup,
    send_missed_call_textback,
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


def _read_db(services: Services, call_id: str) -> Call | None:
    with Session(services.engine) as db:
        return db.get(Call, call_id)


async def _persist(services: Services, record: Call, attempts: int = 3) -> bool:
    for attempt in range(attempts):
        try:
            await asyncio.to_thread(_write_db, services, record)
            return True
        except Exception as exc:  # any database fault: retry, then leave it to the journal's replay
            log.warning("outcome_db_write_failed", call_id=record.id, attempt=attempt + 1, error=type(exc).__name__)
            if attempt + 1 < attempts:
                await asyncio.sleep(0.2 * (attempt + 1))
    metrics.OUTCOME_WRITE_FAILURES.labels("database").inc()
    return False


def _crash_here(services: Services, point: str) -> None:
    """TEST_ONLY_CRASH_POINT: die like a killed process would, to prove the journal loses nothing."""
    if services.settings.test_only_crash_point == point:
        log.warning("test_only_crash", point=point)
        os.kill(os.getpid(), signal.SIGKILL)


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


async def _apply(services: Services, entry: JournalEntry, record: Call, job: CallJob, *, live: bool) -> bool:
    """Run a journaled call's steps not done yet, in order; True once all are (the entry is confirmed)."""
    if entry.behind:  # an earlier outcome of this call awaits replay: this one goes after it
        await asyncio.to_thread(services.journal.release, entry, "behind an unconfirmed entry of the same call")
        await _update_session(services, job, record)
        return False
    if DATABASE_STEP not in entry.done:
        if not await _persist(services, record, attempts=3 if live else 1):
            await asyncio.to_thread(services.journal.release, entry, "database unavailable")
            if live:
                await _update_session(services, job, record)
                log.error("outcome_journaled_for_replay", call_id=record.id, journal=str(services.journal.path))
            return False
        await asyncio.to_thread(services.journal.mark_done, entry, DATABASE_STEP)
        _crash_here(services, "after_database")
    elif not live:
        # The row as stored: an earlier hook (Twilio's verdicts) may have changed it since.
        try:
            stored = await asyncio.to_thread(_read_db, services, record.id)
        except Exception as exc:
            await asyncio.to_thread(services.journal.release, entry, f"database unavailable: {type(exc).__name__}")
            return False
        record = stored or record
    await _update_session(services, job, record)
    if live:
        metrics.CALLS_FINISHED.labels(record.status.value, record.outcome.value if record.outcome else "").inc()
    for hook in AFTER_CALL_HOOKS:
        if hook.__name__ in entry.done:
            continue
        try:
            await hook(services, record)
        except Exception as exc:
            # The later hooks depend on this one (the order is the point): all wait for the replay.
            log.error("call_finished_hook_failed", call_id=record.id, hook=hook.__name__, error=repr(exc))
            await asyncio.to_thread(services.journal.release, entry, f"{hook.__name__}: {type(exc).__name__}")
            return False
        await asyncio.to_thread(services.journal.mark_done, entry, hook.__name__)
    await asyncio.to_thread(services.journal.confirm, entry)
    return True


async def journal_call_in_progress(services: Services, record: Call, job: CallJob) -> JournalEntry | None:
    """Journal what to store should this process die mid-call (`record`: the call failed); its real end replaces it.

    Leased for the longest a call may last; a replay takes it only once this process is gone.
    """
    lease = services.settings.max_call_seconds + LEASE_SECONDS
    try:
        return await asyncio.to_thread(
            services.journal.append, record.id, record.model_dump_json(), job.model_dump_json(), lease_seconds=lease
        )
    except Exception as exc:  # the journal's disk: the call goes on, its end is journaled again then
        log.error("outcome_journal_unavailable", call_id=record.id, error=repr(exc))
        return None


async def record_finished_call(
    services: Services, record: Call, job: CallJob, *, in_progress: JournalEntry | None = None
) -> Call:
    """Journal a finished call, store its outcome and run every after-call hook, each exactly once.

    What cannot be done now (the database is down, a hook failed) is left in the journal and done by
    `replay_journal`, from the step where it stopped. `in_progress`: the call's entry from
    `journal_call_in_progress`, which this one replaces.
    """
    record = await with_known_verdict(services, record)
    entry = await asyncio.to_thread(
        services.journal.append, record.id, record.model_dump_json(), job.model_dump_json(), supersedes=in_progress
    )
    _crash_here(services, "after_journal")
    await _apply(services, entry, record, job, live=True)
    log.info(
        "call_recorded",
        call_id=record.id,
        status=record.status.value,
        outcome=record.outcome.value if record.outcome else None,
        end_reason=record.end_reason.value if record.end_reason else None,
        turns=len(record.transcript),
    )
    return record


async def replay_journal(services: Services) -> int:
    """Apply what the journal holds unconfirmed (a database outage, a failed hook, a crash); returns how many completed."""
    completed = 0
    # Claimed entries are leased to this process: a concurrent replay (or another process) skips them.
    for entry in await asyncio.to_thread(services.journal.claim_unconfirmed):
        # model_validate, not model_validate_json: a table model only converts its fields (datetimes, enums) that way.
        record, job = Call.model_validate(json.loads(entry.record)), CallJob.model_validate_json(entry.job)
        try:
            done = await _apply(services, entry, record, job, live=False)
        except Exception as exc:  # never let one entry stop the others
            log.error("outcome_replay_failed", call_id=entry.call_id, error=repr(exc))
            await asyncio.to_thread(services.journal.release, entry, repr(exc))
            continue
        if done:
            completed += 1
            log.info("outcome_replayed", call_id=entry.call_id, seq=entry.seq, attempts=entry.attempts + 1)
    return completed


async def keep_replaying(services: Services) -> None:
    """At start-up, then every OUTCOME_JOURNAL_REPLAY_SECONDS: recovery needs no restart."""
    await asyncio.to_thread(services.journal.prune_confirmed)
    while True:
        try:
            await replay_journal(services)
            metrics.JOURNAL_UNCONFIRMED.set(await asyncio.to_thread(services.journal.unconfirmed_count))
        except Exception as exc:  # the journal's own disk: keep trying, never kill the app
            log.error("outcome_journal_unavailable", error=repr(exc))
        await asyncio.sleep(services.settings.outcome_journal_replay_seconds)
