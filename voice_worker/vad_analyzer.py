"""Silero VAD for many calls in one process: one ONNX session shared by all, run on the event loop.

Pipecat's SileroVADAnalyzer loads its own ONNX session per call and sends every 20 ms frame to a
thread of its own; with tens of calls the thread hand-offs (submit, wake, future, wake again) cost
more CPU than the inference they carry (~0.1 ms a 32 ms window), and each session costs a load at
call start, while other calls' audio waits. An ONNX session's `run` is stateless and thread-safe:
the model's recurrent state is an input and an output, kept per call by SileroOnnxModel. So each
call keeps its own state and VAD decisions, and all share the one session. The thresholds and
timings are the caller's VADParams, unchanged.
"""

from __future__ import annotations

import functools

import onnxruntime
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

MODEL_PACKAGE, MODEL_FILE = "pipecat.audio.vad.data", "silero_vad.onnx"


@functools.cache
def shared_silero_session() -> onnxruntime.InferenceSession:
    from importlib.resources import files

    options = onnxruntime.SessionOptions()
    # One thread per run: a window is too small to split, and the process's cores belong to its calls.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # No spinning worker threads waiting for the next run between frames.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = str(files(MODEL_PACKAGE).joinpath(MODEL_FILE))
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class _CallState(SileroOnnxModel):
    """SileroOnnxModel's per-call state around the process's shared session (no session of its own)."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session
        self.sample_rates = [8000, 16000]
        self.reset_states()


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        # SileroVADAnalyzer's own __init__ would load a session; the base analyzer's is all it needs besides.
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _CallState(shared_silero_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0

    async def analyze_audio(self, buffer: bytes) -> VADState:
        # On the loop: the inference is shorter than a hop to a thread and back.
        return self._run_analyzer(buffer)
