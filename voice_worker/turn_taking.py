"""When the caller's turn is over: Silero VAD with a short stop, then Smart Turn v3 or a silence timeout.

Settings (models/settings.py, README's settings table): VAD_STOP_SECONDS, SMART_TURN,
SMART_TURN_STOP_SECONDS, USER_SPEECH_TIMEOUT_SECONDS, SPECULATIVE_REPLY (voice_worker/speculative_turn.py).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import onnxruntime as ort
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from models.settings import Settings
from voice_worker.speculative_turn import SpeculativeReply
from voice_worker.vad_analyzer import SharedSileroVADAnalyzer

_SMART_TURN_MODEL = "smart-turn-v3.2-cpu.onnx"
_model_lock = threading.Lock()
_session: ort.InferenceSession | None = None


def smart_turn_session() -> ort.InferenceSession:
    """The bundled Smart Turn v3 model, loaded once per process and shared by every call.

    onnxruntime's `run` is safe to call from several threads at once and releases the GIL.
    """
    from importlib import resources

    path = str(resources.files("pipecat.audio.turn.smart_turn.data").joinpath(_SMART_TURN_MODEL))
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    # One thread per inference; concurrent calls' inferences run side by side in the executor below.
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    global _session
    with _model_lock:
        if _session is None:
            session = ort.InferenceSession(path, sess_options=options)
            # The first inference costs 2-3x the next ones (allocations): pay it here, not in a call.
            session.run(None, {"input_features": np.zeros((1, 80, 800), dtype=np.float32)})
            _session = session
        return _session


@lru_cache(maxsize=1)
def _inference_threads() -> ThreadPoolExecutor:
    # ~50-80 ms an inference on this project's 2-core machine: off the event loop, one at a time per core.
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="smart-turn")


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """Pipecat's local Smart Turn v3 analyzer on the process's shared model and inference threads.

    The stock analyzer loads its own onnx session (and starts its own thread) for every call.
    """

    def __init__(self, *, params: SmartTurnParams | None = None) -> None:
        BaseSmartTurn.__init__(self, params=params)  # skips LocalSmartTurnAnalyzerV3's model load
        self._log_data = False
        self._session = smart_turn_session()

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        return _inference_threads()


# A line whose words so far end on one of these is not over, whatever its sound says: "tuesday at | three
# pm", "we have about | twenty employees". The simulated callee's speech has no prosody for the model to
# hear, and a short VAD stop falls inside such a pause (measured: "tuesday at three pm works for me" is
# two VAD segments at every stop below 0.3 s, and Smart Turn judged "tuesday at" finished).
UNFINISHED_ENDINGS = frozenset(
    [
        "a",
        "an",
        "the",
        "at",
        "on",
        "in",
        "to",
        "for",
        "of",
        "from",
        "with",
        "and",
        "or",
        "but",
        "my",
        "our",
        "your",
        "their",
        "his",
        "her",
        "its",
        "is",
        "are",
        "was",
        "i",
        "i'm",
        "we",
        "about",
        "around",
        "like",
        "than",
        "as",
        "if",
        "so",
        "because",
    ]
)


def ends_unfinished(text: str) -> bool:
    words = text.lower().replace(",", " ").replace(".", " ").split()
    return bool(words) and words[-1] in UNFINISHED_ENDINGS


class TranscriptAwareTurnStop(TurnAnalyzerUserTurnStopStrategy):
    """Smart Turn's decision, held while the words so far end mid-phrase (for at most the silence fallback).

    The stock strategy ends the turn once the model judges it complete and the transcript is final. When
    that transcript ends on a word that cannot end a sentence, this waits: more speech (a new VAD start)
    continues the turn; `SMART_TURN_STOP_SECONDS` of silence ends it anyway.
    """

    def __init__(self, *, stop_seconds: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stop_seconds = stop_seconds
        self._hold_task: asyncio.Task | None = None
        self._hold_expired = False

    async def _discard_pending_end_of_turn(self) -> None:
        await super()._discard_pending_end_of_turn()
        self._hold_expired = False
        if self._hold_task is not None:
            await self.task_manager.cancel_task(self._hold_task)
            self._hold_task = None

    async def cleanup(self) -> None:
        if self._hold_task is not None:
            await self.task_manager.cancel_task(self._hold_task)
            self._hold_task = None
        await super().cleanup()

    async def _maybe_trigger_user_turn_stopped(self) -> None:
        if self._turn_complete and not self._hold_expired and ends_unfinished(self._text):
            if self._hold_task is None:
                self._hold_task = self.task_manager.create_task(self._release_hold(), f"{self}::_release_hold")
            return
        await super()._maybe_trigger_user_turn_stopped()

    async def _release_hold(self) -> None:
        try:
            await asyncio.sleep(self._stop_seconds)
        except asyncio.CancelledError:
            return
        finally:
            self._hold_task = None
        self._hold_expired = True
        await self._maybe_trigger_user_turn_stopped()


class SpeculativeTranscriptAwareTurnStop(SpeculativeReply, TranscriptAwareTurnStop):
    """TranscriptAwareTurnStop whose reply starts on the final transcript (SPECULATIVE_REPLY)."""

    def worth_speculating(self, text: str) -> bool:
        # A line ending mid-phrase is held open anyway, and its words will change.
        return not ends_unfinished(text)


def vad_analyzer(settings: Settings) -> SharedSileroVADAnalyzer:
    """The call's VAD on the process's one Silero session (voice_worker/vad_analyzer.py)."""
    return SharedSileroVADAnalyzer(params=VADParams(stop_secs=settings.vad_stop_seconds))


def user_turn_strategies(settings: Settings) -> UserTurnStrategies:
    if settings.smart_turn:
        analyzer = SharedSmartTurnAnalyzer(params=SmartTurnParams(stop_secs=settings.smart_turn_stop_seconds))
        stop_class = SpeculativeTranscriptAwareTurnStop if settings.speculative_reply else TranscriptAwareTurnStop
        return UserTurnStrategies(stop=[stop_class(turn_analyzer=analyzer, stop_seconds=settings.smart_turn_stop_seconds)])
    return UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=settings.user_speech_timeout_seconds)])
