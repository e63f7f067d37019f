"""The ASGI app: control API and the worker's `/ws` in one process (see README to split them).

This is the one place the control API meets the voice worker: it mounts `/ws` on the same app.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from after_call.outcome_writer import keep_replaying
from control_api import metrics
from control_api.body_limit import BodySizeLimitMiddleware
from control_api.call_scheduling import running_call_queue
from control_api.dial_failures import DialFailed, dial_failed_handler, fail_unanswered_call
from control_api.listening_address import ListeningAddress, ListeningAddressMiddleware, warn_if_public_url_is_elsewhere
from control_api.outreach_gate import OutreachRefused, outreach_refused_handler
from control_api.routes import (
    calls,
    campaigns,
    form,
    health,
    lead_conversations,
    leads,
    numbers,
    recordings,
    strategies,
    twilio_messages,
    twilio_status,
    twilio_voice,
    webhooks,
    workspaces,
)
from control_api.routes import metrics as metrics_routes
from control_api.security import ApiKeyMiddleware
from control_api.telephony.call_progress import report_machine_verdict
from control_api.telephony.selection import make_dialer
from control_api.validation_errors import request_validation_handler
from models.log_config import configure_logging, get_logger
from models.settings import Settings, get_settings
from services import open_services
from services.dialer import Dialer
from services.recording_store import sweep_recordings_periodically
from services.twilio_account import TwilioAccount
from voice_worker.loop_lag import watch_event_loop_lag
from voice_worker.media_stream import router as media_stream_router
from voice_worker.warm_up import warm_voice_worker

log = get_logger(__name__)


def create_app(settings: Settings | None = None, dialer: Dialer | None = None) -> FastAPI:
    settings = settings or get_settings()
    listening = ListeningAddress()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_json)

        async def on_unanswered(call_id: str, reason: str) -> None:
            await fail_unanswered_call(app.state.services, call_id, reason)

        async def on_machine_verdict(call_id: str, call_sid: str, answered_by: str) -> None:
            await report_machine_verdict(app.state.services, call_id, call_sid, answered_by)

        def dialer_for(settings: Settings, twilio: TwilioAccount | None) -> Dialer:
            return make_dialer(
                settings,
                twilio,
                callee_ws_url=listening.ws_url,
                on_unanswered=on_unanswered,
                on_machine_verdict=on_machine_verdict,
            )

        await warm_voice_worker(settings)
        async with open_services(settings, dialer_for, dialer) as services:
            app.state.services = services
            gauge_refresher = asyncio.create_task(metrics.refresh_active_calls(services.store))
            address_check = asyncio.create_task(warn_if_public_url_is_elsewhere(settings))
            # Replays the outcome journal now (what a crash or an outage left) and then periodically.
            journal_replay = asyncio.create_task(keep_replaying(services))
            recording_sweep = asyncio.create_task(sweep_recordings_periodically(settings))
            loop_lag = asyncio.create_task(watch_event_loop_lag())
            log.info("service_started", **settings.safe_summary())
            try:
                async with running_call_queue(services) as scheduler:
                    app.state.call_scheduler = scheduler
                    yield
            finally:
                for task in (gauge_refresher, address_check, journal_replay, recording_sweep, loop_lag):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app = FastAPI(title="Voice caller", version="0.1.0", lifespan=lifespan)
    app.include_router(calls.router)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    app.include_router(media_stream_router)
    app.include_router(form.router)
    app.include_router(recordings.router)
    app.include_router(twilio_status.router)
    app.include_router(twilio_voice.router)
    app.include_router(twilio_messages.router)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value() if settings.api_key else None)
    app.include_router(workspaces.router)
    app.include_router(strategies.router)
    app.include_router(leads.router)
    app.include_router(numbers.router)
    app.include_router(lead_conversations.router)
    app.include_router(webhooks.router)
    app.include_router(campaigns.router)
    app.add_exception_handler(OutreachRefused, outreach_refused_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(DialFailed, dial_failed_handler)
    app.add_middleware(ListeningAddressMiddleware, listening=listening)
    # Outermost: a body too large is refused before anything else reads it.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory control_api.main:app_factory`."""
    return create_app()
