"""What Twilio reports about a call (status callbacks, the AMD verdict), kept and reconciled with its outcome.

Twilio's status is kept under its own key (`telephony:{call_id}`) rather than only in the job:
the job is one JSON value that the worker rewrites at stream start and end, so a status written
into it meanwhile could be lost. `reconcile_with_telephony`, the first after-call hook, and every
terminal callback bring the two together whichever arrives last.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass

from sqlmodel import Session

from models.call_job import CallJob
from models.enums import CallOutcome
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from services import Services

log = get_logger(__name__)

# Twilio's call statuses in the order a call goes through them; a report never moves a call back.
STATUS_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3}
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")
TWILIO_STATUSES = (*STATUS_RANK, *TERMINAL)
# AnsweredBy values that mean a machine took the call (fax included: nobody to talk to).
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
ANSWERED_BY_VALUES = (*sorted(MACHINE_ANSWERS), "human", "unknown")
# With MachineDetection=DetectMessageEnd: the machine's greeting is over, a message can be left now.
MESSAGE_ENDED = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})
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


async def load_progress(services: Services, call_id: str) -> TelephonyProgress:
    raw = await services.store.get(telephony_key(call_id))
    return TelephonyProgress(**json.loads(raw)) if raw else TelephonyProgress()


async def record_report(services: Services, job: CallJob, report: TelephonyProgress) -> TelephonyProgress:
    """Merge one Twilio report into what we know: statuses only move forward, AnsweredBy is kept."""
    known = await load_progress(services, str(job.id))
    if report.status and rank(report.status) >= rank(known.status) and known.status not in TERMINAL:
        known.status = report.status
        known.sip_response_code = report.sip_response_code or known.sip_response_code
    known.answered_by = known.answered_by or report.answered_by
    known.call_sid = known.call_sid or report.call_sid
    ttl = max(job.seconds_until_expiry(), 1.0)
    await services.store.set(telephony_key(str(job.id)), json.dumps(asdict(known)), ttl)
    return known


def _reconcile_record(services: Services, call_id: str, progress: TelephonyProgress) -> Call | None:
    """Bring a stored outcome in line with Twilio's last word; returns the record if it changed."""
    with Session(services.engine) as db:
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


async def reconcile(services: Services, call_id: str, progress: TelephonyProgress) -> Call | None:
    record = await asyncio.to_thread(_reconcile_record, services, call_id, progress)
    if record is not None:
        job = await services.store.load_job(call_id)
        if job is not None:
            await services.store.update_job(
                job.model_copy(update={"outcome": record.outcome, "telephony_status": record.telephony_status})
            )
        log.info(
            "call_reconciled_with_telephony", call_id=call_id, outcome=record.outcome, telephony_status=record.telephony_status
        )
    return record


async def with_known_verdict(services: Services, record: Call) -> Call:
    """The finished call with what Twilio has said of it so far, before anything stores or shows it:
    readers never see `no_answer` for a call a machine answered while the hooks are still to run."""
    try:
        progress = await load_progress(services, record.id)
    except SessionStoreUnavailable:
        return record
    if progress.machine and record.outcome not in KEEP_OUTCOMES:
        record.outcome = CallOutcome.VOICEMAIL
    if progress.status and rank(progress.status) > rank(record.telephony_status):
        record.telephony_status = progress.status
    record.twilio_call_sid = record.twilio_call_sid or progress.call_sid
    return record


async def reconcile_with_telephony(services: Services, record: Call) -> None:
    """After-call hook: a call the worker finished still takes Twilio's verdicts (voicemail, status).

    It runs before the other hooks and updates the record in place, so the SMS follow-up sees
    `voicemail` rather than what the agent made of a greeting.
    """
    try:
        progress = await load_progress(services, record.id)
    except SessionStoreUnavailable:
        return
    if progress.status is None and progress.answered_by is None:
        return
    updated = await reconcile(services, record.id, progress)
    if updated is not None:
        record.outcome, record.telephony_status = updated.outcome, updated.telephony_status
        record.twilio_call_sid = updated.twilio_call_sid
