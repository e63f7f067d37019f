"""What Twilio reports about a call (status callbacks, the AMD verdict), applied to the job and outcome.

Once a media stream runs, the voice worker owns the job and writes the outcome; Twilio's reports
then only add to it (after_call/telephony_verdicts.py). A call that never reached the worker (busy,
unanswered, failed, canceled, or a machine that answered before the stream started) is finished
here through the same outcome writer as a conversation, so it gets the same durable `Call` row, job
update, released phone lock and after-call hooks, also when its context has already expired.
"""

from __future__ import annotations

from after_call.outcome_writer import record_finished_call, record_without_conversation
from after_call.telephony_verdicts import TERMINAL, TelephonyProgress, rank, reconcile, record_report
from models.call_job import CallJob
from models.enums import CallOutcome, CallStatus, EndReason
from models.log_config import get_logger
from models.tables import Call
from services import Services

log = get_logger(__name__)


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


async def finish_without_conversation(services: Services, job: CallJob, progress: TelephonyProgress) -> Call:
    """Store the outcome of a call the worker never saw, the way the worker stores its own."""
    outcome, end_reason, error = _unanswered_ending(progress)
    job = job.model_copy(
        update={"telephony_status": progress.status, "twilio_call_sid": job.twilio_call_sid or progress.call_sid}
    )
    # The context only adds the goal; when it has expired the stored row keeps what POST /calls wrote.
    context = await services.store.load_context(job.context_id)
    record = record_without_conversation(
        job,
        outcome=outcome,
        end_reason=end_reason,
        error=error,
        telephony_status=progress.status,
        goal=context.goal if context else None,
    )
    log.info("call_ended_without_conversation", call_id=str(job.id), telephony_status=progress.status, outcome=outcome.value)
    return await record_finished_call(services, record, job)


async def apply_report(services: Services, job: CallJob, report: TelephonyProgress) -> TelephonyProgress:
    """Apply one status callback or AMD verdict; returns the merged progress."""
    progress = await record_report(services, job, report)
    job = await services.store.load_job(job.id) or job  # fresh: the worker may have moved it on
    ended_here = progress.status in TERMINAL or progress.machine
    if job.status in (CallStatus.COMPLETED, CallStatus.FAILED):
        await reconcile(services, str(job.id), progress)
    elif job.status is CallStatus.PENDING and ended_here:
        await finish_without_conversation(services, job, progress)
    elif job.status is CallStatus.PENDING and rank(progress.status) < rank("in-progress"):
        # Before the answer only: from then on the worker rewrites the job, and a write from here
        # could undo its switch to in_progress. The key above keeps the rest.
        await services.store.update_job(job.model_copy(update={"telephony_status": progress.status}))
    return progress


async def report_machine_verdict(services: Services, call_id: str, call_sid: str, answered_by: str) -> None:
    """The simulator's stand-in for Twilio's AMD callback: the same verdict, applied the same way."""
    job = await services.store.load_job(call_id)
    if job is not None:
        await apply_report(services, job, TelephonyProgress(answered_by=answered_by, call_sid=call_sid))
