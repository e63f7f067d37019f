"""A dial that fails ends the call as failed, with its reason, where every reader of the call looks.

Twilio refuses synchronously (POST /calls answers 502, naming the call); the built-in simulated
callee fails later, in the background, after POST /calls has answered. Either way the call ends
through the one outcome writer, so the job in the session store, the durable Call row (and the
lead) say `failed` and why: GET /calls/{id} and the web page show it instead of waiting for a
connection that will never come.
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from after_call.outcome_writer import record_finished_call, record_without_conversation
from models.call_job import CallJob, utcnow
from models.enums import CallOutcome, CallStatus, EndReason
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.tables import Call
from services import Services

log = get_logger(__name__)


async def record_dial_failure(services: Services, job: CallJob, reason: str) -> Call:
    record = record_without_conversation(job, outcome=CallOutcome.NO_ANSWER, end_reason=EndReason.ERROR, error=reason)
    return await record_finished_call(services, record, job)


class DialFailed(Exception):
    """Raised by POST /calls once the failure is recorded: the answer names the call and the reason."""

    def __init__(self, call_id: str, reason: str, status_url: str) -> None:
        super().__init__(reason)
        self.call_id, self.reason, self.status_url = call_id, reason, status_url


async def dial_failed_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DialFailed)
    body = {"detail": exc.reason, "id": exc.call_id, "status": CallStatus.FAILED.value, "status_url": exc.status_url}
    return JSONResponse(body, status_code=502)


def _fail_stored_row(services: Services, call_id: str, reason: str) -> None:
    with Session(services.engine) as db:
        record = db.get(Call, call_id)
        if record is not None and record.status == CallStatus.PENDING:
            record.status, record.error, record.ended_at = CallStatus.FAILED, reason, utcnow()
            db.add(record)
            db.commit()


async def fail_unanswered_call(services: Services, call_id: str, reason: str) -> None:
    """The simulated callee gave up: fail the call, unless a stream was admitted for it meanwhile
    (then the worker records how the call ended, failure or not)."""
    try:
        job = await services.store.load_job(call_id)
    except SessionStoreUnavailable:
        job = None
    if job is None:  # expired, or the store is down: the durable row must still say what happened
        await asyncio.to_thread(_fail_stored_row, services, call_id, reason)
        return
    if job.status is CallStatus.PENDING:
        await record_dial_failure(services, job, reason)
