"""Pipecat TTS service backed by the offline espeak-ng binding (no keys, no downloads)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_decorators import traced_tts

from voice_worker.providers.espeak_synth import resample_pcm16, synthesize_async

# Split after sentence/clause punctuation so the first piece is short and its audio
# goes out while the rest is still being synthesised.
_PIECE_BOUNDARY = re.compile(r"(?<=[.!?;:])\s+")


@dataclass
class LocalTTSSettings(TTSSettings):
    """Settings for LocalTTSService (``voice`` is an espeak-ng voice name, e.g. "en-us+f3")."""


class LocalTTSService(TTSService):
    """Speaks with espeak-ng in-process; audio is resampled to the pipeline's rate."""

    Settings = LocalTTSSettings
    _settings: Settings

    def __init__(
        self,
        *,
        voice: str = "en-us",
        rate_wpm: int = 170,
        pitch: int | None = None,
        settings: Settings | None = None,
        **kwargs,
    ) -> None:
        default_settings = self.Settings(model=None, voice=voice, language=None)
        if settings is not None:
            default_settings.apply_update(settings)
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=default_settings,
            **kwargs,
        )
        self._rate_wpm = rate_wpm
        self._pitch = pitch

    def can_generate_metrics(self) -> bool:
        return True

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesise ``text`` piece by piece, yielding audio as soon as each is ready."""
        try:
            await self.start_tts_usage_metrics(text)
            # Read per call: the voice is just a name passed to espeak, so a runtime
            # settings update takes effect on the next sentence with no reload.
            voice = self._settings.voice if isinstance(self._settings.voice, str) else "en-us"
            for piece in _PIECE_BOUNDARY.split(text.strip()):
                if not piece.strip():
                    continue
                pcm, rate = await synthesize_async(piece, voice, self._rate_wpm, self._pitch)
                if not pcm:
                    continue
                await self.stop_ttfb_metrics()
                yield TTSAudioRawFrame(
                    audio=resample_pcm16(pcm, rate, self.sample_rate),
                    sample_rate=self.sample_rate,
                    num_channels=1,
                    context_id=context_id,
                )
        except Exception as e:
            logger.error(f"{self} exception: {e}")
            yield ErrorFrame(error=f"Local TTS failed: {e}")
        finally:
            await self.stop_ttfb_metrics()
