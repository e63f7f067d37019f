"""`/ws`: where Twilio Media Streams (or the simulator) connect."""

import contextlib
import os

import structlog
from fastapi import APIRouter, WebSocket

from models.call_job import utcnow
from models.enums import CallStatus
from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from services import Services
from voice_worker import metrics
from voice_worker.call_runner import run_call
from voice_worker.call_session import CallSession
from voice_worker.call_transfer import workspace_transfer_number
from voice_worker.stream_admission import StreamRefused, admit_stream

log = get_logger(__name__)
router = APIRouter()

# 1008: policy violation, the close code for a refused stream.
REFUSED_CLOSE_CODE = 1008


@router.websocket("/ws")
async def media_stream(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    try:
        admitted = await admit_stream(
            websocket,
            services.store,
            services.settings.secret_key.get_secret_value(),
            services.settings.stream_start_timeout_seconds,
        )
    except StreamRefused as refused:
        metrics.STREAMS_REJECTED.labels(refused.reason).inc()
        log.warning("media_stream_refused", reason=refused.reason, call_id=refused.call_id)
        with contextlib.suppress(RuntimeError):  # the client already went away
            await websocket.close(code=REFUSED_CLOSE_CODE, reason=refused.reason)
        return

    job = admitted.job.model_copy(update={"status": CallStatus.IN_PROGRESS, "started_at": utcnow()})
    if admitted.start.start.callSid:
        job.twilio_call_sid = admitted.start.start.callSid
    try:
        await services.store.update_job(job)
    except SessionStoreUnavailable:
        log.warning("session_update_failed_at_start", call_id=str(job.id))
    session = CallSession(
        job=job,
        context=admitted.context,
        stream_sid=admitted.start.streamSid,
        call_sid=admitted.start.start.callSid or job.twilio_call_sid,
        transfer_number=await workspace_transfer_number(services, str(job.id)),
    )
    with structlog.contextvars.bound_contextvars(call_id=session.call_id):
        log.info(
            "media_stream_started",
            stream_sid=session.stream_sid,
            process=os.getpid(),  # which process of a voice pool serves the call
            stt=services.settings.stt_provider,
            llm=services.settings.llm_provider,
            tts=services.settings.tts_provider,
        )
        await run_call(websocket, services, session)
