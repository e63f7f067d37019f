"""The ASGI app: control API and the worker's `/ws` in one process (see README to split them).

This is the one place the control API meets the voice worker: it mounts `/ws` on the same app.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from after_call.outcome_writer import replay_spool
from control_api import metrics
from control_api.outreach_gate import OutreachRefused, outreach_refused_handler
from control_api.routes import calls, form, health, leads, strategies, twilio_status, workspaces
from control_api.routes import metrics as metrics_routes
from control_api.security import ApiKeyMiddleware
from control_api.telephony.selection import make_dialer
from models.log_config import configure_logging, get_logger
from models.settings import Settings, get_settings
from services import open_services
from services.dialer import Dialer
from voice_worker.media_stream import router as media_stream_router

log = get_logger(__name__)


def create_app(settings: Settings | None = None, dialer: Dialer | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_json)
        async with open_services(settings, make_dialer, dialer) as services:
            replayed = await asyncio.to_thread(replay_spool, services)
            app.state.services = services
            gauge_refresher = asyncio.create_task(metrics.refresh_active_calls(services.store))
            log.info("service_started", replayed_outcomes=replayed, **settings.safe_summary())
            try:
                yield
            finally:
                gauge_refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gauge_refresher

    app = FastAPI(title="Voice caller", version="0.1.0", lifespan=lifespan)
    app.include_router(calls.router)
    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    app.include_router(media_stream_router)
    app.include_router(form.router)
    app.include_router(twilio_status.router)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value() if settings.api_key else None)
    app.include_router(workspaces.router)
    app.include_router(strategies.router)
    app.include_router(leads.router)
    app.add_exception_handler(OutreachRefused, outreach_refused_handler)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory control_api.main:app_factory`."""
    return create_app()
