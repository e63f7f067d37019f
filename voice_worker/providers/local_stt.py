"""Pipecat STT service backed by the offline pocketsphinx recognizer, decoding while the caller speaks."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    StartFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from voice_worker.providers.recognition_pool import RecognitionPool, RecognitionStream, recognition_pool
from voice_worker.providers.speech_vocabulary import CALLER_PHRASES

# The final is ready a few ms after VAD stop (only the last block and the search's end are left);
# reported so turn-taking strategies don't fall back to pipecat's generic 1 s guess.
_TTFS_P99_S = 0.4
# Audio kept from before VAD reported speech, handed to the recognizer with the utterance so its first
# word is whole (the silence in it is not decoded: recognition_pool drops all but 60 ms of it). VAD
# reports speech 0.4 s after the onset of "stop calling me" as a rule, but 0.64 s when its window's
# phase fell so that "stop" alone did not start it: with 0.5 s kept, "st" was lost, the line came out
# "off calling me" and the opt-out with it (1 call in 4 after two others on one server).
PREROLL_SECONDS = 1.0
# Audio is handed to the decoder in blocks this long (the recognizer's own block), not per 20 ms frame.
FEED_SECONDS = 0.1


class LocalSTTService(STTService):
    """Streams each utterance into pocketsphinx between VAD start and stop; the final follows VAD stop."""

    def __init__(
        self,
        *,
        phrases: list[str] | None = None,
        decode_processes: int = 1,
        pool: RecognitionPool | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("ttfs_p99_latency", _TTFS_P99_S)
        super().__init__(settings=STTSettings(model=None, language=Language.EN_US), **kwargs)
        self._phrases = list(phrases) if phrases is not None else list(CALLER_PHRASES)
        self._pool = pool
        self._decode_processes = decode_processes
        self._stream: RecognitionStream | None = None
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._pending = bytearray()
        self._speaking = False

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self._open()

    async def _open(self) -> RecognitionStream:
        if self._stream is None:
            pool = self._pool or recognition_pool(self._decode_processes)
            self._stream = await pool.open_stream(self._phrases, self.sample_rate)
        return self._stream

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    async def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                await stream.close()
            except Exception as e:  # a dead decode worker must not keep the call from ending
                logger.warning(f"{self} closing its recognizer failed: {e}")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            await self._begin_utterance()
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            await self._finish_utterance()

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Called per audio frame: held as pre-roll while nobody speaks, handed to the decoder while someone does."""
        if self._speaking and self._stream is not None:
            self._pending += audio
            if len(self._pending) >= int(self.sample_rate * FEED_SECONDS) * 2:
                self._stream.feed(bytes(self._pending))
                self._pending.clear()
        else:
            self._preroll.append(audio)
            self._preroll_bytes += len(audio)
            while self._preroll_bytes - len(self._preroll[0]) >= int(self.sample_rate * PREROLL_SECONDS) * 2:
                self._preroll_bytes -= len(self._preroll.popleft())
        yield None

    async def _begin_utterance(self) -> None:
        stream = await self._open()
        if self._speaking:
            return
        self._speaking = True
        stream.begin(b"".join(self._preroll))
        self._preroll.clear()
        self._preroll_bytes = 0
        self._pending.clear()

    async def _finish_utterance(self) -> None:
        if not self._speaking or self._stream is None:
            return
        self._speaking = False
        if self._pending:
            self._stream.feed(bytes(self._pending))
            self._pending.clear()
        await self.start_processing_metrics()
        try:
            text = await self._stream.finish()
        except Exception as e:
            logger.error(f"{self} exception: {e}")
            await self.push_error_frame(ErrorFrame(error=f"Local STT failed: {e}"))
            return
        finally:
            await self.stop_processing_metrics()
        if text:
            logger.debug(f"Transcription: [{text}]")
            # Everything the caller said up to VAD stop is in it: turn strategies need not wait for more.
            frame = TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN_US)
            frame.finalized = True
            await self.push_frame(frame)
