"""Offline text-to-speech: eSpeak NG, whose library and voices ship in the espeakng-loader wheel."""

import re
from collections.abc import AsyncGenerator

from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.tts_service import TTSService

from voice_worker.providers.espeak_synth import resample_pcm16, synthesize_async

# Synthesizing sentence by sentence gets the first words out while the rest is still being made.
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class LocalTTSService(TTSService):
    def __init__(self, *, voice: str = "en-us", rate_wpm: int = 170, **kwargs) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)
        self._voice = voice
        self._rate_wpm = rate_wpm

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        try:
            await self.start_tts_usage_metrics(text)
            for sentence in filter(None, (s.strip() for s in _SENTENCE.split(text))):
                pcm, rate = await synthesize_async(sentence, voice=self._voice, rate_wpm=self._rate_wpm)
                if not pcm:
                    continue
                await self.stop_ttfb_metrics()
                yield TTSAudioRawFrame(
                    audio=resample_pcm16(pcm, rate, self.sample_rate),
                    sample_rate=self.sample_rate,
                    num_channels=1,
                    context_id=context_id,
                )
        except Exception as exc:
            yield ErrorFrame(error=f"local TTS failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()
