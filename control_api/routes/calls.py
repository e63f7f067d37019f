"""POST /calls, GET /calls/{id}, GET /contexts/{id}."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlmodel import Session

from control_api import metrics as control_metrics
from control_api.call_visibility import public_context, require_call_visible, require_context_visible
from control_api.deps import get_context_generator, get_db, get_dialer, get_services, get_settings, get_store
from control_api.dial_failures import DialFailed, record_dial_failure
from control_api.outreach_gate import admit_call
from control_api.security import guard_public_call_request
from control_api.workspace_auth import OptionalWorkspaceKey
from models.call_job import CallJob
from models.call_request import CallRequest, mask_phone
from models.call_views import CallCreated, CallStatusResponse, call_status
from models.context import ContextInstance
from models.enums import CallStatus
from models.log_config import get_logger
from models.session_store import SessionStore, SessionStoreUnavailable
from models.settings import Settings
from models.tables import Call
from prompts.openai_context import ContextGenerator
from services import Services
from services.dialer import Dialer, dial_failure_reason

log = get_logger(__name__)
router = APIRouter(tags=["calls"])


def _store_down() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="session store unavailable; nothing was dialed")


# The abuse limits (rate limit, Turnstile) apply unless the request carries the API key.
@router.post(
    "/calls", status_code=status.HTTP_201_CREATED, response_model=CallCreated, dependencies=[Depends(guard_public_call_request)]
)
async def create_call(
    call_request: CallRequest,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    store: Annotated[SessionStore, Depends(get_store)],
    dialer: Annotated[Dialer, Depends(get_dialer)],
    db: Annotated[Session, Depends(get_db)],
    contexts: Annotated[ContextGenerator, Depends(get_context_generator)],
    workspace_key: OptionalWorkspaceKey,
    services: Annotated[Services, Depends(get_services)],
) -> CallCreated:
    # The outreach policy decides, and its decision is stored, before anything can be dialed;
    # a refusal raises OutreachRefused (422/429 with reason_code and next_allowed_at).
    admission = admit_call(db, settings, call_request, workspace_key)
    with control_metrics.STAGE_LATENCY.labels("context").time():
        context = await contexts.generate(call_request, history=admission.history)
    control_metrics.CONTEXTS_GENERATED.labels(context.source.value).inc()
    job = CallJob(context_id=context.id, phone=call_request.phone)
    try:
        holder = await store.claim_phone(job.phone, job.id)
        if holder is not None:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail="this number is already being called; try again when that call ends"
            )
        await store.save_call(job, context)
    except SessionStoreUnavailable:
        raise _store_down() from None

    db.add(
        Call(
            id=str(job.id),
            context_id=str(context.id),
            phone=job.phone,
            goal=context.goal,
            created_at=job.created_at,
            **admission.call_links(),
        )
    )
    admission.link_call(db, str(job.id))
    db.commit()

    try:
        with control_metrics.STAGE_LATENCY.labels("dial").time():
            dialed = await dialer.dial(job, context)
    except Exception as exc:
        reason = f"dial failed: {dial_failure_reason(exc)}"
        log.error("dial_failed", call_id=str(job.id), error=reason)
        await record_dial_failure(services, job, reason)
        raise DialFailed(str(job.id), reason, status_url=str(request.url_for("get_call", call_id=str(job.id)))) from None
    if dialed.twilio_call_sid:
        job.twilio_call_sid = dialed.twilio_call_sid
        try:
            await store.update_job(job)
        except SessionStoreUnavailable:
            log.warning("session_update_failed_after_dial", call_id=str(job.id))

    log.info(
        "call_created",
        call_id=str(job.id),
        phone=mask_phone(job.phone),
        goal=context.goal.value,
        telephony=settings.telephony_provider,
        context_source=context.source.value,
    )
    control_metrics.CALLS_CREATED.labels(settings.telephony_provider).inc()
    return CallCreated(
        id=str(job.id),
        status=job.status,
        created_at=job.created_at,
        expires_at=job.expires_at,
        seconds_until_expiry=round(job.seconds_until_expiry(), 3),
        context_id=str(context.id),
        context_url=str(request.url_for("get_context", context_id=str(context.id))),
        status_url=str(request.url_for("get_call", call_id=str(job.id))),
        telephony=settings.telephony_provider,
        twilio_call_sid=job.twilio_call_sid,
        stream=dialed.stream_parameters,
    )


@router.get("/calls/{call_id}", response_model=CallStatusResponse, name="get_call")
async def get_call(
    call_id: UUID,
    store: Annotated[SessionStore, Depends(get_store)],
    db: Annotated[Session, Depends(get_db)],
    workspace_key: OptionalWorkspaceKey,
) -> CallStatusResponse:
    require_call_visible(db, workspace_key, call_id)
    try:
        job = await store.load_job(call_id)
    except SessionStoreUnavailable:
        job = None
    record = db.get(Call, str(call_id))
    # A finished call's stored record is the truth; the live job only while the call is under way.
    if record is not None and record.status in (CallStatus.COMPLETED, CallStatus.FAILED):
        return call_status(record, job)
    if job is not None:
        return call_status(job)
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"call {call_id} is unknown or has expired")


@router.get("/contexts/{context_id}", response_model=ContextInstance, name="get_context")
async def get_context(
    context_id: UUID,
    store: Annotated[SessionStore, Depends(get_store)],
    db: Annotated[Session, Depends(get_db)],
    workspace_key: OptionalWorkspaceKey,
) -> ContextInstance:
    require_context_visible(db, workspace_key, context_id)
    try:
        context = await store.load_context(context_id)
    except SessionStoreUnavailable:
        raise _store_down() from None
    if context is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"context {context_id} is unknown or has expired")
    return public_context(context)
