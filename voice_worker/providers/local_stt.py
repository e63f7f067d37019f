"""Offline speech-to-text: pocketsphinx on each VAD-delimited utterance, with a per-call language model."""

import asyncio
from collections.abc import AsyncGenerator

from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.utils.time import time_now_iso8601

from voice_worker.providers.pocketsphinx_recognizer import PocketsphinxRecognizer


class LocalSTTService(SegmentedSTTService):
    def __init__(self, *, phrases: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self._recognizer = PocketsphinxRecognizer(phrases)

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        try:
            await self.start_processing_metrics()
            text = await asyncio.to_thread(self._recognizer.transcribe, audio, self.sample_rate)
            await self.stop_processing_metrics()
            if text:
                yield TranscriptionFrame(text, self._user_id, time_now_iso8601())
        except Exception as exc:
            yield ErrorFrame(error=f"local STT failed: {exc}")
