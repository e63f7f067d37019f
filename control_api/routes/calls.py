"""POST /calls, GET /calls/{id}, GET /contexts/{id}."""

import asyncio
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from sqlmodel import Session, col, select

from control_api.call_intake import accept_call_in_time
from control_api.call_visibility import public_context, require_call_visible, require_context_visible
from control_api.deps import get_db, get_services, get_store
from control_api.security import guard_public_call_request
from control_api.workspace_auth import OptionalWorkspaceKey, OptionalWorkspaceKeyOffLoop
from models.call_queue import CallAttempt
from models.call_request import CallRequest, mask_phone
from models.call_views import CallAccepted, CallStatusResponse, attempt_status_view, call_status
from models.context import ContextInstance
from models.enums import CallStatus
from models.log_config import get_logger
from models.session_store import SessionStore, SessionStoreUnavailable
from models.tables import Call
from services import Services
from services.stream_credential import stream_parameters, ws_url

log = get_logger(__name__)
router = APIRouter(tags=["calls"])


def _store_down() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="session store unavailable; nothing was dialed")


CALL_STATUS_PATH = "/calls/{call_id}"


# The abuse limits (rate limit, Turnstile) apply unless the request carries the API key.
@router.post(
    "/calls",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CallAccepted,
    response_model_exclude_none=True,
    dependencies=[Depends(guard_public_call_request)],
    responses={
        409: {"description": "this number already has a call under way"},
        422: {"description": "a field is invalid, or the outreach policy refuses for good (reason_code)"},
        503: {"description": "the database is busy or down; see Retry-After"},
    },
)
async def create_call(
    call_request: CallRequest,
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    workspace_key: OptionalWorkspaceKeyOffLoop,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> CallAccepted:
    """Validate, decide and schedule; the queue dials (now, or at `scheduled_for`) and re-checks the policy first.

    Refusals raise OutreachRefused (422 with reason_code; 429 when a time rule has no window in sight).
    """
    settings = services.settings
    accepted = await accept_call_in_time(
        services.engine, services.loop_engine, settings, call_request, workspace_key, idempotency_key
    )
    if accepted.status == "queued" and not accepted.repeated:
        _wake_queue(request)
    log.info(
        "call_accepted",
        call_id=accepted.call_id,
        phone=mask_phone(call_request.phone),
        status=accepted.status,
        scheduled_for=accepted.scheduled_for.isoformat(),
        repeated=accepted.repeated,
    )
    return CallAccepted(
        id=accepted.call_id,
        status=accepted.status,
        scheduled_for=accepted.scheduled_for,
        # Not request.url_for: it searches every route of the app by name, per request.
        status_url=f"{str(request.base_url).rstrip('/')}{CALL_STATUS_PATH.format(call_id=accepted.call_id)}",
        telephony=settings.telephony_provider,
        # "url" only where the streams go elsewhere (the voice pool): otherwise the client dials the
        # address it reached us at, right even when PUBLIC_BASE_URL names another port.
        stream={
            **stream_parameters(settings, accepted.call_id),
            **({"url": ws_url(settings)} if settings.voice_public_url else {}),
        }
        if settings.telephony_provider == "none"
        else None,
    )


_wakes: set[asyncio.Task] = set()


def _wake_queue(request: Request) -> None:
    # Not awaited: the answer does not wait for the broker; a lost nudge only waits for the next poll.
    scheduler = getattr(request.app.state, "call_scheduler", None)
    if scheduler is None:
        return
    task = asyncio.create_task(scheduler.wake())
    _wakes.add(task)
    task.add_done_callback(_woken)


def _woken(task: asyncio.Task) -> None:
    _wakes.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("call_queue_wake_failed", error=repr(task.exception()))


def _stored(engine, workspace_key, call_id: UUID) -> tuple[Call | None, CallAttempt | None]:
    with Session(engine) as db:
        require_call_visible(db, workspace_key, call_id)
        record = db.get(Call, str(call_id))
        attempt = None
        if record is None:  # not placed yet: its queue attempt says where it is
            attempt = db.exec(select(CallAttempt).where(col(CallAttempt.call_id) == str(call_id))).first()
        return record, attempt


@router.get(CALL_STATUS_PATH, response_model=CallStatusResponse, name="get_call")
async def get_call(
    call_id: UUID,
    services: Annotated[Services, Depends(get_services)],
    workspace_key: OptionalWorkspaceKey,
) -> CallStatusResponse:
    record, attempt = await asyncio.to_thread(_stored, services.engine, workspace_key, call_id)
    try:
        job = await services.store.load_job(call_id)
    except SessionStoreUnavailable:
        job = None
    # A finished call's stored record is the truth; the live job only while the call is under way.
    if record is not None and record.status in (CallStatus.COMPLETED, CallStatus.FAILED):
        return call_status(record, job)
    if job is not None:
        return call_status(job)
    if attempt is not None:
        return attempt_status_view(attempt)
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
