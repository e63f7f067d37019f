"""The VAD shared by a process's calls decides exactly as pipecat's own Silero analyzer, call by call."""

import asyncio
import audioop
import itertools

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from models.twilio_media import SAMPLE_RATE
from simulator.callee import speech_frames
from voice_worker.vad_analyzer import SharedSileroVADAnalyzer, shared_silero_session

SILENCE_20MS = b"\x00\x00" * 160


async def _caller_audio(text: str) -> list[bytes]:
    """20 ms PCM frames as the worker gets them from Twilio: silence, the line spoken, silence."""
    speech = [audioop.ulaw2lin(frame, 2) for frame in await speech_frames(text)]
    return [SILENCE_20MS] * 25 + speech + [SILENCE_20MS] * 40 + speech + [SILENCE_20MS] * 40


async def _states(analyzers, frames_per_call) -> list[list[VADState]]:
    for analyzer in analyzers:
        analyzer.set_sample_rate(SAMPLE_RATE)
    states: list[list[VADState]] = [[] for _ in analyzers]
    # Interleaved frame by frame, as concurrent calls reach one process.
    for step in range(max(len(frames) for frames in frames_per_call)):
        for i, (analyzer, frames) in enumerate(zip(analyzers, frames_per_call, strict=True)):
            if step < len(frames):
                states[i].append(await analyzer.analyze_audio(frames[step]))
    return states


def test_shared_vad_decides_like_pipecats_for_each_of_two_interleaved_calls():
    params = VADParams(stop_secs=0.3)
    first = asyncio.run(_caller_audio("Yes, Tuesday at ten works for me."))
    second = asyncio.run(_caller_audio("No thanks, please do not call again."))

    shared = asyncio.run(_states([SharedSileroVADAnalyzer(params=params) for _ in range(2)], [first, second]))
    own = asyncio.run(_states([SileroVADAnalyzer(params=params), SileroVADAnalyzer(params=params)], [first, second]))

    assert shared == own
    for states in shared:  # each call's line is heard twice: from quiet to speaking (pauses between words aside)
        starts = sum(1 for a, b in itertools.pairwise(states) if a is VADState.STARTING and b is VADState.SPEAKING)
        assert starts == 2 and states[-1] is VADState.QUIET
    # One ONNX session for the whole process, however many calls.
    analyzers = [SharedSileroVADAnalyzer(params=params) for _ in range(3)]
    assert {id(a._model.session) for a in analyzers} == {id(shared_silero_session())}
