"""Per-turn latency, watched without touching the flow.

For each caller turn: end of caller speech (VAD stop, less the VAD's own stop
delay), STT final, LLM first token, TTS first audio, first audio sent to the
caller; all in ms after the end of speech.
"""

import time

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voice_worker.call_session import CallSession

STAGES = ("stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_sent_ms")


class TurnTimingObserver(BaseObserver):
    def __init__(self, session: CallSession, **kwargs) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._speech_end: float | None = None
        self._marks: dict[str, float] = {}

    async def on_push_frame(self, data: FramePushed) -> None:
        if not getattr(data, "first_push", True) or data.direction is not FrameDirection.DOWNSTREAM:
            return
        frame, now = data.frame, time.monotonic()
        if isinstance(frame, BotStartedSpeakingFrame):
            self._session.agent_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._session.agent_speaking = False
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_end, self._marks = None, {}
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_end = now - float(getattr(frame, "stop_secs", 0.0) or 0.0)
            self._marks = {}
        elif self._speech_end is None:
            return
        elif isinstance(frame, TranscriptionFrame):
            self._marks.setdefault("stt_final_ms", now)
        elif isinstance(frame, LLMTextFrame) and "stt_final_ms" in self._marks:
            self._marks.setdefault("llm_first_token_ms", now)
        elif isinstance(frame, TTSAudioRawFrame) and "llm_first_token_ms" in self._marks:
            self._marks.setdefault("tts_first_audio_ms", now)
        elif isinstance(frame, BotStartedSpeakingFrame) and "tts_first_audio_ms" in self._marks:
            self._marks["first_audio_sent_ms"] = now
            self._close_turn()

    def _close_turn(self) -> None:
        assert self._speech_end is not None
        metrics = {stage: round((self._marks[stage] - self._speech_end) * 1000, 1) for stage in STAGES if stage in self._marks}
        metrics["caller_speech_end_s"] = round(self._speech_end - self._session.started_monotonic, 3)
        self._session.turn_metrics.append(metrics)
        for entry in reversed(self._session.transcript):
            if entry.role == "caller":
                if entry.timing is None:
                    entry.timing = metrics
                break
        self._speech_end, self._marks = None, {}
