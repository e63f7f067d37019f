"""Pipecat segmented STT service backed by the offline pocketsphinx recogniser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, StartFrame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from voice_worker.providers.pocketsphinx_recognizer import PocketsphinxRecognizer
from voice_worker.providers.speech_vocabulary import CALLER_PHRASES

# Measured: 0.15-0.35 s decode per short utterance, plus queueing; reported so turn-taking
# strategies don't fall back to pipecat's generic guess.
_TTFS_P99_S = 0.6


class LocalSTTService(SegmentedSTTService):
    """Transcribes each VAD segment with pocketsphinx; works at 8 kHz or 16 kHz input."""

    def __init__(
        self,
        *,
        phrases: list[str] | None = None,
        recognizer: PocketsphinxRecognizer | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("ttfs_p99_latency", _TTFS_P99_S)
        super().__init__(
            settings=STTSettings(model=None, language=Language.EN_US),
            **kwargs,
        )
        self._phrases = list(phrases) if phrases is not None else list(CALLER_PHRASES)
        self._recognizer = recognizer

    @property
    def wants_wav_segments(self) -> bool:
        """Receive raw 16-bit PCM; the recogniser reads samples, not a WAV container."""
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame: StartFrame) -> None:
        # Building the LM and loading the acoustic model takes ~0.5 s; doing it in a
        # thread keeps other calls' audio flowing on a shared event loop.
        if self._recognizer is None:
            self._recognizer = await asyncio.to_thread(PocketsphinxRecognizer, self._phrases)
        await super().start(frame)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Transcribe one segment of raw PCM at ``self.sample_rate``."""
        if self._recognizer is None:  # driven without start(), e.g. directly in tests
            self._recognizer = await asyncio.to_thread(PocketsphinxRecognizer, self._phrases)
        await self.start_processing_metrics()
        try:
            text = await asyncio.to_thread(self._recognizer.transcribe, audio, self.sample_rate)
        except Exception as e:
            logger.error(f"{self} exception: {e}")
            yield ErrorFrame(error=f"Local STT failed: {e}")
            return
        finally:
            await self.stop_processing_metrics()
        if text:
            logger.debug(f"Transcription: [{text}]")
            yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN_US)
