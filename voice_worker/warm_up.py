"""What the voice worker loads once per process, before its first call, and releases at shutdown."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from models.settings import Settings


@contextlib.asynccontextmanager
async def warmed_voice_worker(settings: Settings) -> AsyncIterator[None]:
    """Start the offline recognizer's decode workers and load the Smart Turn model now, not in a call."""
    pool_started = False
    if settings.stt_provider == "local":
        from voice_worker.providers.recognition_pool import recognition_pool

        recognition_pool(settings.stt_decode_processes)  # its workers load the model in the background
        pool_started = True
    if settings.smart_turn:
        from voice_worker.turn_taking import smart_turn_session

        await asyncio.to_thread(smart_turn_session)
    try:
        yield
    finally:
        if pool_started:
            from voice_worker.providers.recognition_pool import shutdown_recognition_pool

            shutdown_recognition_pool()
