"""What the voice worker loads once per process, before its first call."""

import asyncio

from models.settings import Settings
from voice_worker.providers.selection import prewarm


async def warm_voice_worker(settings: Settings) -> None:
    """Load the providers and the VAD, start the offline recognizer's decode workers and load the Smart
    Turn model now, before /health answers, not in a call: a process takes calls warm, as LiveKit's
    pre-warmed ones do.

    Both live as long as the process (an app started again in the same process, as tests do, reuses
    them); the decode workers are joined at interpreter exit.
    """
    prewarm(settings)
    if settings.stt_provider == "local":
        from voice_worker.providers.recognition_pool import recognition_pool

        recognition_pool(settings.stt_decode_processes)  # its workers load the model in the background
    if settings.smart_turn:
        from voice_worker.turn_taking import smart_turn_session

        await asyncio.to_thread(smart_turn_session)
