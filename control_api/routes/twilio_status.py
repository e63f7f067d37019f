"""POST /twilio/status: Twilio's call status callbacks and async AMD verdicts, signature checked.

The signature is checked against the URL Twilio was given (PUBLIC_BASE_URL + path + query), not
the URL this process sees, which behind a proxy or tunnel has another scheme and host. The call id
rides in that URL's query string, so it is covered by the signature too. Twilio sends no nonce:
an exact replay is indistinguishable from Twilio's own retry, and is harmless because a call's
status only moves forward.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, status

from after_call.telephony_verdicts import ANSWERED_BY_VALUES, MACHINE_ANSWERS, TERMINAL, TWILIO_STATUSES, TelephonyProgress
from control_api import metrics
from control_api.deps import get_services, get_settings
from control_api.telephony.call_progress import apply_report
from control_api.telephony.twilio_signature import signed_form
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from models.settings import Settings
from services import Services

log = get_logger(__name__)
router = APIRouter(tags=["twilio"])


def _report(form: dict[str, str]) -> TelephonyProgress:
    answered_by = form.get("AnsweredBy") or None
    call_status = form.get("CallStatus") or None
    if answered_by is None and call_status is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="CallStatus or AnsweredBy is required")
    if call_status is not None and call_status not in TWILIO_STATUSES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"CallStatus must be one of {', '.join(TWILIO_STATUSES)}"
        )
    if answered_by is not None and answered_by not in ANSWERED_BY_VALUES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"AnsweredBy must be one of {', '.join(ANSWERED_BY_VALUES)}"
        )
    return TelephonyProgress(
        status=call_status,
        answered_by=answered_by,
        call_sid=form.get("CallSid") or None,
        sip_response_code=form.get("SipResponseCode") or None,
    )


@router.post(
    "/twilio/status",
    responses={403: {"description": "missing or wrong X-Twilio-Signature"}, 404: {"description": "unknown or expired call"}},
)
async def twilio_status(
    request: Request,
    call_id: UUID,
    settings: Annotated[Settings, Depends(get_settings)],
    services: Annotated[Services, Depends(get_services)],
) -> dict[str, object]:
    form = await signed_form(request, settings)
    report = _report(form)
    with structlog.contextvars.bound_contextvars(call_id=str(call_id)):
        try:
            job = await services.store.load_job(call_id)
            if job is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"call {call_id} is unknown or has expired")
            if job.twilio_call_sid and report.call_sid and report.call_sid != job.twilio_call_sid:
                raise HTTPException(status.HTTP_409_CONFLICT, detail="CallSid does not belong to this call")
            progress = await apply_report(services, job, report)
        except SessionStoreUnavailable:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="session store unavailable; Twilio will retry"
            ) from None
        metrics.TWILIO_CALLBACKS.labels(report.status or f"amd_{report.answered_by}").inc()
        log.info("twilio_status", telephony_status=report.status, answered_by=report.answered_by, call_sid=report.call_sid)
        if report.answered_by in MACHINE_ANSWERS and progress.status not in TERMINAL:
            await _hang_up_on_machine(request, report.call_sid or job.twilio_call_sid)
    return {"call_id": str(call_id), "telephony_status": progress.status, "answered_by": progress.answered_by}


async def _hang_up_on_machine(request: Request, call_sid: str | None) -> None:
    """Nobody to talk to: end the call now rather than let the agent pitch a voicemail box."""
    account = request.app.state.services.twilio
    if account is None or not call_sid:
        return
    try:
        await account.hang_up(call_sid)
        log.info("machine_answered_call_hung_up", call_sid=call_sid)
    except Exception as exc:  # the call may have ended already; the outcome is stored either way
        log.warning("machine_hang_up_failed", call_sid=call_sid, error=type(exc).__name__)
