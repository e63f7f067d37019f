"""A dial that fails ends the call as failed, with its reason, where every reader of the call looks.

Twilio refuses synchronously (POST /calls answers 502, naming the call); the built-in simulated
callee fails later, in the background, after POST /calls has answered. Either way the job in the
session store and the durable Call row say `failed` and why, so GET /calls/{id} and the web page
show it instead of waiting for a connection that will never come.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from models.call_job import CallJob, utcnow
from models.enums import CallStatus
from models.log_config import get_logger, mask_phone_numbers
from models.session_store import SessionStore, SessionStoreUnavailable
from models.tables import Call
from voice_worker.worker_deps import WorkerDeps

log = get_logger(__name__)

REASON_CHARACTERS = 300


def dial_failure_reason(exc: BaseException) -> str:
    """Words a caller of the API can act on: Twilio's own error, else the exception; numbers masked."""
    code, message = getattr(exc, "code", None), getattr(exc, "msg", None)
    if code is not None and isinstance(message, str):  # twilio's TwilioRestException
        reason = f"Twilio refused the call (error {code}): {message}"
    else:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    reason = mask_phone_numbers(reason)
    return reason if len(reason) <= REASON_CHARACTERS else reason[:REASON_CHARACTERS] + "…"


async def record_dial_failure(store: SessionStore, db: Session, job: CallJob) -> None:
    """The job (already marked failed) written back to the store and to its Call row; the number is freed."""
    try:
        await store.update_job(job)
        await store.mark_inactive(job.id)
        await store.release_phone(job.phone, job.id)
    except SessionStoreUnavailable:
        log.warning("session_update_failed_after_dial_failure", call_id=str(job.id))
    record = db.get(Call, str(job.id))
    if record is not None:
        record.status, record.error, record.ended_at = job.status, job.error, job.ended_at
        db.add(record)
        db.commit()


class DialFailed(Exception):
    """Raised by POST /calls once the failure is recorded: the answer names the call and the reason."""

    def __init__(self, job: CallJob, status_url: str) -> None:
        super().__init__(job.error)
        self.call_id, self.reason, self.status_url = str(job.id), job.error or "dial failed", status_url


async def dial_failed_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DialFailed)
    body = {"detail": exc.reason, "id": exc.call_id, "status": CallStatus.FAILED.value, "status_url": exc.status_url}
    return JSONResponse(body, status_code=502)


def fail_job(job: CallJob, reason: str) -> None:
    job.status, job.error, job.ended_at = CallStatus.FAILED, reason, utcnow()


async def fail_unanswered_call(deps: WorkerDeps, call_id: str, reason: str) -> None:
    """The simulated callee gave up: fail the call, unless a stream was admitted for it meanwhile
    (then the worker records how the call ended, failure or not)."""
    try:
        job = await deps.store.load_job(call_id)
    except SessionStoreUnavailable:
        job = None
    with Session(deps.engine) as db:
        if job is None:  # expired, or the store is down: the durable row must still say what happened
            record = db.get(Call, call_id)
            if record is not None and record.status == CallStatus.PENDING:
                record.status, record.error, record.ended_at = CallStatus.FAILED, reason, utcnow()
                db.add(record)
                db.commit()
            return
        if job.status is not CallStatus.PENDING:
            return
        fail_job(job, reason)
        await record_dial_failure(deps.store, db, job)
