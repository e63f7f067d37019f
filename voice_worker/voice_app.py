"""The voice pool's ASGI app: `/ws` alone, for the Procfile's `voice` processes.

`uvicorn --factory voice_worker.voice_app:app_factory --workers K` runs K of these on one port; each is
a whole voice worker (its own event loop, VAD sessions, outcome writes and journal replay), and a
stream may land on any of them, since the call's session and its one-stream claim live in Redis. This
is how the worker uses more than one core: one process's calls share one event loop and one GIL.
Without REDIS_URL there is no pool: the `web` process serves `/ws` itself (control_api/main.py).
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from after_call.outcome_writer import keep_replaying
from models.log_config import configure_logging, get_logger
from models.settings import Settings, get_settings
from services import open_services
from services.dialer import NoDialer
from voice_worker import metrics
from voice_worker.loop_lag import watch_event_loop_lag
from voice_worker.media_stream import router as media_stream_router
from voice_worker.warm_up import warm_voice_worker

log = get_logger(__name__)


class VoicePoolNeedsRedis(RuntimeError):
    pass


def create_voice_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.redis_url:
        # The in-process store lives in the web process: a separate voice process would know no call.
        raise VoicePoolNeedsRedis("the voice pool needs REDIS_URL (the session store shared with the control API)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_json)
        await warm_voice_worker(settings)
        async with open_services(settings, lambda _settings, _twilio: NoDialer()) as services:
            app.state.services = services
            # Each process replays the journal; its leases keep two processes off the same entry.
            tasks = [asyncio.create_task(keep_replaying(services)), asyncio.create_task(watch_event_loop_lag())]
            log.info("voice_process_started", pid=os.getpid(), **settings.safe_summary())
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app = FastAPI(title="Voice caller: voice pool", version="0.1.0", lifespan=lifespan)
    app.include_router(media_stream_router)

    @app.get("/health")
    async def health() -> dict[str, object]:
        """This process's liveness and its own calls (the API's /health counts all of them)."""
        return {"status": "ok", "pid": os.getpid(), "active_calls": int(metrics.ACTIVE_CALLS._value.get())}

    @app.get("/metrics")
    async def metrics_text() -> Response:
        # Per process: a scraper reaching the pool's port sees whichever process answered.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory voice_worker.voice_app:app_factory`."""
    return create_voice_app()
