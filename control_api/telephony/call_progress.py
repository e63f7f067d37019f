"""What Twilio reports about a call (status callbacks, the AMD verdict), applied to the job and outcome.

Once a media stream runs, the voice worker owns the job and writes the outcome; Twilio's reports
then only add to it. A call that never reached the worker (busy, unanswered, failed, canceled, or
a machine that answered before the stream started) is finished here, through the worker's own
outcome path (`record_outcome`), so it gets the same durable `Call` row, job update, released phone
lock and after-call hooks as a conversation.

Twilio's status is kept under its own key (`telephony:{call_id}`) rather than only in the job:
the job is one JSON value that the worker rewrites at stream start and end, so a status written
into it meanwhile could be lost. `reconcile_after_call`, an after-call hook, and every terminal
callback bring the two together whichever arrives last.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass

from sqlmodel import Session

from models.call_job import CallJob, utcnow
from models.enums import CallOutcome, CallStatus, EndReason
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from voice_worker.worker_deps import CallFinishedHook, WorkerDeps

log = get_logger(__name__)

# Twilio's call statuses in the order a call goes through them; a report never moves a call back.
STATUS_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3}
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")
TWILIO_STATUSES = (*STATUS_RANK, *TERMINAL)
# AnsweredBy values that mean a machine took the call (fax included: nobody to talk to).
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
ANSWERED_BY_VALUES = (*sorted(MACHINE_ANSWERS), "human", "unknown")
# A conversation's own end decision is never overridden, least of all an opt-out.
KEEP_OUTCOMES = frozenset({CallOutcome.OPTED_OUT})


def rank(status: str | None) -> int:
    return STATUS_RANK.get(status or "", 4 if status in TERMINAL else -1)


def telephony_key(call_id: str) -> str:
    return f"telephony:{call_id}"


@dataclass
class TelephonyProgress:
    status: str | None = None
    answered_by: str | None = None
    call_sid: str | None = None
    sip_response_code: str | None = None

    @property
    def machine(self) -> bool:
        return self.answered_by in MACHINE_ANSWERS


async def _load_progress(deps: WorkerDeps, call_id: str) -> TelephonyProgress:
    raw = await deps.store.get(telephony_key(call_id))
    return TelephonyProgress(**json.loads(raw)) if raw else TelephonyProgress()


async def record_report(deps: WorkerDeps, job: CallJob, report: TelephonyProgress) -> TelephonyProgress:
    """Merge one Twilio report into what we know: statuses only move forward, AnsweredBy is kept."""
    known = await _load_progress(deps, str(job.id))
    if report.status and rank(report.status) >= rank(known.status) and known.status not in TERMINAL:
        known.status = report.status
        known.sip_response_code = report.sip_response_code or known.sip_response_code
    known.answered_by = known.answered_by or report.answered_by
    known.call_sid = known.call_sid or report.call_sid
    ttl = max(job.seconds_until_expiry(), 1.0)
    await deps.store.set(telephony_key(str(job.id)), json.dumps(asdict(known)), ttl)
    return known


def _unanswered_ending(progress: TelephonyProgress) -> tuple[CallOutcome, EndReason | None, str | None]:
    if progress.machine:
        return CallOutcome.VOICEMAIL, None, None
    if progress.status == "failed":
        sip = f" (SIP {progress.sip_response_code})" if progress.sip_response_code else ""
        return CallOutcome.NO_ANSWER, EndReason.ERROR, f"telephony: Twilio reported the call failed{sip}"
    if progress.status == "completed":
        # Answered, yet no stream ever reached the worker: the stream was refused or never opened.
        return CallOutcome.NO_ANSWER, EndReason.ERROR, "telephony: the call ended before its media stream started"
    return CallOutcome.NO_ANSWER, None, None


async def finish_without_conversation(deps: WorkerDeps, job: CallJob, progress: TelephonyProgress) -> Call:
    """Store the outcome of a call the worker never saw, the way the worker stores its own."""
    from voice_worker.call_session import CallSession
    from voice_worker.outcome_recorder import record_outcome

    outcome, end_reason, error = _unanswered_ending(progress)
    job = job.model_copy(update={"telephony_status": progress.status, "twilio_call_sid": job.twilio_call_sid or progress.call_sid})
    context = await deps.store.load_context(job.context_id)
    if context is None:  # the context expired under us: still leave the durable row behind
        ending = {
            "status": CallStatus.FAILED if end_reason is EndReason.ERROR else CallStatus.COMPLETED,
            "outcome": outcome,
            "end_reason": end_reason,
            "error": error,
            "twilio_call_sid": job.twilio_call_sid,
            "telephony_status": progress.status,
            "ended_at": utcnow(),
        }
        record = await asyncio.to_thread(_store_ending, deps, job, ending)
        await deps.store.mark_inactive(job.id)
        await deps.store.release_phone(job.phone, job.id)
        return record
    session = CallSession(job=job, context=context, call_sid=job.twilio_call_sid)
    session.outcome, session.end_reason, session.error = outcome, end_reason, error
    log.info("call_ended_without_conversation", call_id=str(job.id), telephony_status=progress.status, outcome=outcome.value)
    return await record_outcome(deps, session)


def _store_ending(deps: WorkerDeps, job: CallJob, ending: dict) -> Call:
    # Update the row POST /calls wrote rather than replace it: it carries links this module knows nothing of.
    with Session(deps.engine) as db:
        record = db.get(Call, str(job.id)) or Call(id=str(job.id), context_id=str(job.context_id), phone=job.phone, created_at=job.created_at)
        for name, value in ending.items():
            setattr(record, name, value)
        db.add(record)
        db.commit()
        db.refresh(record)
        return record


def _reconcile_record(deps: WorkerDeps, call_id: str, progress: TelephonyProgress) -> Call | None:
    """Bring a stored outcome in line with Twilio's last word; returns the record if it changed."""
    with Session(deps.engine) as db:
        record = db.get(Call, call_id)
        if record is None:
            return None
        changed = False
        if progress.status and rank(progress.status) > rank(record.telephony_status):
            record.telephony_status, changed = progress.status, True
        if progress.call_sid and not record.twilio_call_sid:
            record.twilio_call_sid, changed = progress.call_sid, True
        if progress.machine and record.outcome not in KEEP_OUTCOMES and record.outcome is not CallOutcome.VOICEMAIL:
            record.outcome, changed = CallOutcome.VOICEMAIL, True
        if not changed:
            return None
        db.add(record)
        db.commit()
        db.refresh(record)
        return record


async def _reconcile(deps: WorkerDeps, call_id: str, progress: TelephonyProgress) -> Call | None:
    record = await asyncio.to_thread(_reconcile_record, deps, call_id, progress)
    if record is not None:
        job = await deps.store.load_job(call_id)
        if job is not None:
            await deps.store.update_job(job.model_copy(update={"outcome": record.outcome, "telephony_status": record.telephony_status}))
        log.info("call_reconciled_with_telephony", call_id=call_id, outcome=record.outcome, telephony_status=record.telephony_status)
    return record


async def apply_report(deps: WorkerDeps, job: CallJob, report: TelephonyProgress) -> TelephonyProgress:
    """Apply one status callback or AMD verdict; returns the merged progress."""
    progress = await record_report(deps, job, report)
    job = await deps.store.load_job(job.id) or job  # fresh: the worker may have moved it on
    ended_here = progress.status in TERMINAL or progress.machine
    if job.status in (CallStatus.COMPLETED, CallStatus.FAILED):
        await _reconcile(deps, str(job.id), progress)
    elif job.status is CallStatus.PENDING and ended_here:
        await finish_without_conversation(deps, job, progress)
    elif job.status is CallStatus.PENDING and rank(progress.status) < rank("in-progress"):
        # Before the answer only: from then on the worker rewrites the job, and a write from here
        # could undo its switch to in_progress. The key above keeps the rest.
        await deps.store.update_job(job.model_copy(update={"telephony_status": progress.status}))
    return progress


def reconcile_after_call(deps: WorkerDeps) -> CallFinishedHook:
    """After-call hook: a call the worker finished still takes Twilio's verdicts (voicemail, status).

    Registered before the other hooks and it updates the record in place, so the SMS follow-up sees
    `voicemail` rather than what the agent made of a greeting.
    """

    async def reconcile_with_telephony(record: Call) -> None:
        try:
            progress = await _load_progress(deps, record.id)
        except SessionStoreUnavailable:
            return
        if progress.status is None and progress.answered_by is None:
            return
        updated = await _reconcile(deps, record.id, progress)
        if updated is not None:
            record.outcome, record.telephony_status = updated.outcome, updated.telephony_status
            record.twilio_call_sid = updated.twilio_call_sid

    return reconcile_with_telephony
