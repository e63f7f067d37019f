"""Publishes the transcript so far into the call's live job, so GET /calls/{id} (and the web page) follow the call.

At most one store write per interval, and only when something changed: a line was added, or one
was marked interrupted. The call runner stops it before the final outcome is written, so the
last word in the store is always the outcome writer's.
"""

import asyncio
import contextlib

from models.log_config import get_logger
from models.session_store import SessionStoreUnavailable
from services import Services
from voice_worker.call_session import CallSession

log = get_logger(__name__)

PUBLISH_SECONDS = 1.0


async def publish_transcript(services: Services, session: CallSession, interval: float = PUBLISH_SECONDS) -> None:
    published: list[dict] = []
    while True:
        await asyncio.sleep(interval)
        snapshot = [entry.as_dict() for entry in session.transcript]
        if snapshot == published:
            continue
        try:
            await services.store.update_job(session.job.model_copy(update={"transcript": snapshot}))
            published = snapshot
        except SessionStoreUnavailable:
            log.warning("live_transcript_not_published", call_id=session.call_id)


async def stop_publishing(task: asyncio.Task | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
