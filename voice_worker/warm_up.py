"""What the voice worker loads once per process, before its first call."""

import asyncio

from models.settings import Settings


async def warm_voice_worker(settings: Settings) -> None:
    """Load the providers and the VAD, start the offline recognizer's decode workers and load the Smart
    Turn model now, before /health answers, not in a call: a process takes calls warm, as LiveKit's
    pre-warmed ones do.

    Both live as long as the process (an app started again in the same process, as tests do, reuses
    them); the decode workers are joined at interpreter exit.
    """
    _import_and_load(settings)
    if settings.stt_provider == "local":
        from voice_worker.providers.recognition_pool import recognition_pool

        recognition_pool(settings.stt_decode_processes)  # its workers load the model in the background
    if settings.smart_turn:
        from voice_worker.turn_taking import smart_turn_session

        await asyncio.to_thread(smart_turn_session)


def _import_and_load(settings: Settings) -> None:
    """Load what a call's pipeline needs before the first call: importing the providers' modules and
    loading the VAD model take a second or more of CPU, which would otherwise hold the event loop (and
    every other call's audio) when the first call of a fresh process starts."""
    import pipecat.transports.websocket.fastapi

    from voice_worker import pipeline  # noqa: F401
    from voice_worker.vad_analyzer import shared_silero_session

    if settings.stt_provider == "deepgram":
        import pipecat.services.deepgram.stt
    else:
        import voice_worker.providers.local_stt
    if settings.llm_provider == "openai":
        import voice_worker.providers.openai_llm
    else:
        import voice_worker.providers.rule_llm
    if settings.tts_provider == "cartesia":
        import pipecat.services.cartesia.tts  # noqa: F401
    else:
        import voice_worker.providers.local_tts  # noqa: F401
    shared_silero_session()
