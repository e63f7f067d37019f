"""The ASGI app: control API and the worker's `/ws` in one process (see README to split them)."""

import asyncio
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from control_api.lead_outcomes import lead_outcome_hook
from control_api.outreach_gate import OutreachRefused, outreach_refused_handler
from control_api.routes import calls, health, leads, metrics, strategies, workspaces
from control_api.lifespan_services import start_control_services, stop_control_services
from control_api.routes import form, twilio_status
from control_api.security import ApiKeyMiddleware
from control_api.telephony.dialer import Dialer, make_dialer
from models.database import init_db, make_engine
from models.log_config import configure_logging, get_logger
from models.session_store import create_session_store
from models.settings import Settings, get_settings
from voice_worker.loop_lag import watch_event_loop_lag
from voice_worker.media_stream import router as media_stream_router
from voice_worker.outcome_recorder import replay_spool
from voice_worker.worker_deps import WorkerDeps

log = get_logger(__name__)


def create_app(settings: Settings | None = None, dialer: Dialer | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(settings.log_level, settings.log_json)
        engine = make_engine(settings.database_url)
        init_db(engine)
        deps = WorkerDeps(settings=settings, store=create_session_store(settings.redis_url), engine=engine)
        deps.on_call_finished.append(lead_outcome_hook(deps))
        replayed = replay_spool(deps)
        app.state.worker_deps = deps
        app.state.dialer = dialer or make_dialer(settings)
        await start_control_services(app, deps)
        loop_lag = asyncio.create_task(watch_event_loop_lag())
        log.info("service_started", replayed_outcomes=replayed, **settings.safe_summary())
        try:
            yield
        finally:
            loop_lag.cancel()
            with suppress(asyncio.CancelledError):
                await loop_lag
            await stop_control_services(app)
            await app.state.dialer.aclose()
            await deps.store.close()
            engine.dispose()

    app = FastAPI(title="Voice caller", version="0.1.0", lifespan=lifespan)
    app.include_router(calls.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
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
