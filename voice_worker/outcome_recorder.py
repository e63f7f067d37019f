"""Writes a finished call where it outlives the session: database first, then the session store.

The database write is retried and, if the database stays down, the record goes to
an append-only spool file that is replayed later: an outcome is never dropped.
"""

import asyncio
import json
from pathlib import Path

from sqlmodel import Session

from models.call_job import utcnow
from models.enums import CallOutcome, CallStatus, EndReason
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from voice_worker import metrics
from voice_worker.call_session import CallSession
from voice_worker.worker_deps import WorkerDeps

log = get_logger(__name__)

SPOOL_PATH = Path("data/outcome-spool.jsonl")


def call_record(session: CallSession, deps: WorkerDeps) -> Call:
    ended = utcnow()
    failed = session.end_reason is EndReason.ERROR
    return Call(
        id=session.call_id,
        context_id=str(session.context.id),
        phone=session.job.phone,
        goal=session.context.goal,
        status=CallStatus.FAILED if failed else CallStatus.COMPLETED,
        outcome=session.outcome or CallOutcome.NO_ANSWER,
        end_reason=session.end_reason,
        error=session.error,
        twilio_call_sid=session.call_sid or session.job.twilio_call_sid,
        telephony_status=session.job.telephony_status,
        stt_provider=deps.settings.stt_provider,
        llm_provider=("openai+rules" if session.llm_fallback_used else deps.settings.llm_provider),
        tts_provider=deps.settings.tts_provider,
        created_at=session.job.created_at,
        started_at=session.started_at,
        ended_at=ended,
        duration_seconds=round((ended - session.started_at).total_seconds(), 3),
        transcript=[entry.as_dict() for entry in session.transcript],
        answers=session.answers,
        turn_metrics=session.turn_metrics,
    )


def _write_db(deps: WorkerDeps, record: Call) -> None:
    with Session(deps.engine) as db:
        stored = db.get(Call, record.id)
        if stored is not None:
            # The worker does not know who the call was for; merge would blank what POST /calls set.
            for name in Call.LINK_FIELDS:
                setattr(record, name, getattr(stored, name))
        db.merge(record)
        db.commit()


async def _persist(deps: WorkerDeps, record: Call) -> bool:
    for attempt in range(3):
        try:
            await asyncio.to_thread(_write_db, deps, record)
            return True
        except Exception as exc:  # any database fault: retry, then spool
            log.warning("outcome_db_write_failed", call_id=record.id, attempt=attempt + 1, error=type(exc).__name__)
            await asyncio.sleep(0.2 * (attempt + 1))
    metrics.OUTCOME_WRITE_FAILURES.labels("database").inc()
    SPOOL_PATH.parent.mkdir(parents=True, exist_ok=True)
    with SPOOL_PATH.open("a") as spool:
        spool.write(record.model_dump_json() + "\n")
    log.error("outcome_spooled", call_id=record.id, spool=str(SPOOL_PATH))
    return False


def replay_spool(deps: WorkerDeps) -> int:
    """Move spooled outcomes into the database (run at start-up)."""
    if not SPOOL_PATH.exists():
        return 0
    lines = [line for line in SPOOL_PATH.read_text().splitlines() if line.strip()]
    for line in lines:
        data = json.loads(line)
        _write_db(deps, Call.model_validate(data))
    SPOOL_PATH.unlink()
    return len(lines)


async def _update_session(deps: WorkerDeps, session: CallSession, record: Call) -> None:
    job = session.job.model_copy(
        update={
            "status": record.status,
            "outcome": record.outcome,
            "ended_at": record.ended_at,
            "started_at": record.started_at,
            "error": record.error,
        }
    )
    for attempt in range(3):
        try:
            await deps.store.update_job(job)
            await deps.store.mark_inactive(job.id)
            await deps.store.release_phone(job.phone, job.id)
            return
        except SessionStoreUnavailable as exc:
            log.warning("session_update_failed", call_id=session.call_id, attempt=attempt + 1, error=str(exc))
            await asyncio.sleep(0.3 * (attempt + 1))
    metrics.OUTCOME_WRITE_FAILURES.labels("session_store").inc()


async def record_outcome(deps: WorkerDeps, session: CallSession) -> Call:
    record = call_record(session, deps)
    await _persist(deps, record)
    await _update_session(deps, session, record)
    metrics.CALLS_FINISHED.labels(record.status.value, record.outcome.value if record.outcome else "").inc()
    for hook in deps.on_call_finished:
        try:
            await hook(record)
        except Exception as exc:
            log.error("call_finished_hook_failed", call_id=record.id, hook=getattr(hook, "__name__", "hook"), error=repr(exc))
    log.info(
        "call_recorded",
        call_id=record.id,
        status=record.status.value,
        outcome=record.outcome.value if record.outcome else None,
        end_reason=record.end_reason.value if record.end_reason else None,
        turns=len(record.transcript),
    )
    return record
