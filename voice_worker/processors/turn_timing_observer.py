"""Per-turn latency, watched without touching the flow.

For each caller turn: end of caller speech (VAD stop, less the VAD's own stop
delay), turn end decided (endpointing), STT final, LLM first token, TTS first
audio, first audio sent to the caller; all in ms after the end of speech. Each
turn is also observed in the latency histograms as soon as it is answered.
"""

import time

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voice_worker import metrics
from voice_worker.call_session import CallSession

STAGES = ("endpointing_ms", "stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_sent_ms")


class TurnTimingObserver(BaseObserver):
    def __init__(self, session: CallSession, **kwargs) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._speech_end: float | None = None
        self._marks: dict[str, float] = {}
        # A streaming recognizer (Deepgram) can finalize before the VAD reports the stop.
        self._transcript_at: float | None = None

    async def on_push_frame(self, data: FramePushed) -> None:
        if not getattr(data, "first_push", True) or data.direction is not FrameDirection.DOWNSTREAM:
            return
        frame, now = data.frame, time.monotonic()
        if isinstance(frame, BotStartedSpeakingFrame):
            self._session.agent_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._session.agent_speaking = False
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_end, self._marks, self._transcript_at = None, {}, None
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_end = now - float(getattr(frame, "stop_secs", 0.0) or 0.0)
            self._marks = {"stt_final_ms": self._transcript_at} if self._transcript_at is not None else {}
        elif isinstance(frame, TranscriptionFrame):
            self._transcript_at = now
            # The last final before the reply is the one that completed the caller's words.
            if self._speech_end is not None and "llm_first_token_ms" not in self._marks:
                self._marks["stt_final_ms"] = now
        elif self._speech_end is None:
            return
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._marks.setdefault("endpointing_ms", now)
        elif isinstance(frame, LLMTextFrame) and "stt_final_ms" in self._marks:
            self._marks.setdefault("llm_first_token_ms", now)
        elif isinstance(frame, TTSAudioRawFrame) and "llm_first_token_ms" in self._marks:
            self._marks.setdefault("tts_first_audio_ms", now)
        elif isinstance(frame, BotStartedSpeakingFrame) and "tts_first_audio_ms" in self._marks:
            self._marks["first_audio_sent_ms"] = now
            self._close_turn()

    def _close_turn(self) -> None:
        assert self._speech_end is not None
        # Never before the end of speech: that end is the VAD's estimate, a few ms off either way.
        metrics_ms = {
            stage: round(max(0.0, self._marks[stage] - self._speech_end) * 1000, 1) for stage in STAGES if stage in self._marks
        }
        for stage, ms in metrics_ms.items():
            metrics.STAGE_LATENCY.labels(stage.removesuffix("_ms")).observe(ms / 1000)
        metrics.TURN_LATENCY.observe(metrics_ms["first_audio_sent_ms"] / 1000)
        turn = {**metrics_ms, "caller_speech_end_s": round(self._speech_end - self._session.started_monotonic, 3)}
        self._session.turn_metrics.append(turn)
        for entry in reversed(self._session.transcript):
            if entry.role == "caller":
                if entry.timing is None:
                    entry.timing = turn
                break
        self._speech_end, self._marks, self._transcript_at = None, {}, None
