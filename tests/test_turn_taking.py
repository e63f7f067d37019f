"""Turn-taking settings reach the pipeline's VAD and turn strategies; the Smart Turn model is shared."""

from __future__ import annotations

import asyncio
import audioop
import time

import numpy as np
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.vad.vad_analyzer import VADState
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy
from pipecat.utils.asyncio.task_manager import TaskManager

from models.call_request import CallRequest
from models.settings import Settings
from prompts.context_builder import build_context
from simulator.callee import speech_frames
from simulator.caller_scripts import caller_script
from tests.support import BOOK_MEETING_REQUEST
from tests.support.turn_analyzers import ScriptedTurnAnalyzer
from voice_worker.providers.espeak_synth import resample_pcm16, synthesize
from voice_worker.turn_taking import (
    SharedSmartTurnAnalyzer,
    TranscriptAwareTurnStop,
    ends_unfinished,
    smart_turn_session,
    user_turn_strategies,
    vad_analyzer,
)


def test_vad_stop_setting_reaches_the_vad() -> None:
    assert vad_analyzer(Settings(vad_stop_seconds=0.15)).params.stop_secs == 0.15
    assert Settings().vad_stop_seconds == 0.25


def test_smart_turn_decides_the_turn_end_on_one_shared_model() -> None:
    settings = Settings(smart_turn=True, smart_turn_stop_seconds=1.5)
    first, second = user_turn_strategies(settings).stop, user_turn_strategies(settings).stop
    assert first and second
    assert isinstance(first[0], TranscriptAwareTurnStop) and isinstance(first[0], TurnAnalyzerUserTurnStopStrategy)
    analyzers = [s._turn_analyzer for s in (first[0], second[0])]  # type: ignore[attr-defined]
    assert all(isinstance(a, SharedSmartTurnAnalyzer) for a in analyzers)
    assert analyzers[0].params.stop_secs == 1.5
    # Two calls, one onnx session and one set of inference threads in the process.
    assert analyzers[0]._session is analyzers[1]._session is smart_turn_session()
    assert analyzers[0]._model_executor is analyzers[1]._model_executor


def test_without_smart_turn_a_silence_timeout_ends_the_turn() -> None:
    stop = user_turn_strategies(Settings(smart_turn=False, user_speech_timeout_seconds=0.45)).stop
    assert stop and isinstance(stop[0], SpeechTimeoutUserTurnStopStrategy)
    assert stop[0]._user_speech_timeout == 0.45  # type: ignore[attr-defined]


async def test_shared_smart_turn_judges_a_finished_sentence_complete() -> None:
    analyzer = SharedSmartTurnAnalyzer()
    analyzer.set_sample_rate(8000)
    pcm, rate = synthesize("yes sure i have a minute", voice="en-us+m3", rate_wpm=165, reproducible=True)
    speech = resample_pcm16(pcm, rate, 8000)
    for i in range(0, len(speech), 320):
        analyzer.append_audio(speech[i : i + 320], is_speech=True)
    analyzer.append_audio(bytes(1600), is_speech=False)  # the VAD's stop: 100 ms of silence
    state, metrics = await analyzer.analyze_end_of_turn()
    assert state == EndOfTurnState.COMPLETE
    assert metrics is not None and metrics.probability > 0.5  # type: ignore[attr-defined]
    assert np.isfinite(metrics.e2e_processing_time_ms)  # type: ignore[attr-defined]


async def _turn_stop_strategy(stopped: asyncio.Event) -> TranscriptAwareTurnStop:
    strategy = TranscriptAwareTurnStop(turn_analyzer=ScriptedTurnAnalyzer(), stop_seconds=0.3)
    setup = FrameProcessorSetup(
        clock=SystemClock(), pipeline_worker=None, task_manager=TaskManager(loop=asyncio.get_running_loop())
    )  # type: ignore[arg-type]
    await strategy.setup(setup)

    @strategy.event_handler("on_user_turn_stopped")
    async def on_stopped(*_args) -> None:
        stopped.set()

    return strategy


async def _pause(strategy: TranscriptAwareTurnStop, words: str) -> None:
    await strategy.process_frame(VADUserStartedSpeakingFrame())
    await strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2, timestamp=time.time()))
    frame = TranscriptionFrame(words, "", "")
    frame.finalized = True
    await strategy.process_frame(frame)


async def test_a_pause_after_an_unfinished_phrase_does_not_end_the_turn() -> None:
    stopped = asyncio.Event()
    strategy = await _turn_stop_strategy(stopped)
    await _pause(strategy, "tuesday at")
    await asyncio.sleep(0)
    assert not stopped.is_set()
    await _pause(strategy, "three pm works for me")  # the caller goes on: the same turn, now finished
    await asyncio.wait_for(stopped.wait(), timeout=5)
    await strategy.cleanup()


async def test_silence_after_an_unfinished_phrase_ends_the_turn_at_the_stop_seconds() -> None:
    stopped = asyncio.Event()
    strategy = await _turn_stop_strategy(stopped)
    await _pause(strategy, "we have about")
    await asyncio.wait_for(stopped.wait(), timeout=5)  # SMART_TURN_STOP_SECONDS later, nothing more said
    await strategy.cleanup()


def test_unfinished_endings() -> None:
    assert ends_unfinished("Tuesday at") and ends_unfinished("we have about,")
    assert not ends_unfinished("tuesday at three pm works for me") and not ends_unfinished("")


async def test_the_simulated_callees_lines_are_one_vad_segment_each_at_the_default_stop() -> None:
    """A VAD stop inside a line is a point where its turn could end: none at VAD_STOP_SECONDS."""
    context = build_context(CallRequest.model_validate({**BOOK_MEETING_REQUEST, "phone": "+14155550100"}))
    lines = {
        line.text for scenario in ("happy", "barge_in", "opt_out", "not_interested") for line in caller_script(scenario, context)
    }
    settings = Settings()
    for text in sorted(lines):
        pcm = bytes(16000) + b"".join(audioop.ulaw2lin(f, 2) for f in await speech_frames(text)) + bytes(16000)
        vad = vad_analyzer(settings)
        vad.set_sample_rate(8000)
        segments, speaking = 0, False
        for i in range(0, len(pcm), 320):
            state = await vad.analyze_audio(pcm[i : i + 320])
            if state == VADState.SPEAKING and not speaking:
                segments += 1
            if state in (VADState.SPEAKING, VADState.QUIET):
                speaking = state == VADState.SPEAKING
        assert segments == 1, f"{text!r} is {segments} VAD segments at stop {settings.vad_stop_seconds} s"
