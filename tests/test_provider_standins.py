"""The provider stand-ins under the real Pipecat services and the real vendor clients, and a whole call on them.

The delays are checked only from below (a stand-in must never answer before its configured delay);
how much later it answers depends on the machine, and is the benchmark's business.
"""

from __future__ import annotations

import asyncio
import audioop
import json
import time

import httpx
import numpy as np
import pytest
import websockets
from pipecat.frames.frames import (
    FunctionCallResultProperties,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.tests.utils import SleepFrame, run_test

from models.call_request import CallRequest
from prompts.context_builder import build_context
from scripts.local_server import running_server
from scripts.simulate_call import simulate
from scripts.standins.app import DUMMY_KEY, StandinDelays, Standins, running_standins
from tests.support import BOOK_MEETING_REQUEST, server_env
from voice_worker.providers.espeak_synth import resample_pcm16, synthesize
from voice_worker.providers.openai_llm import CALL_TOOLS
from voice_worker.providers.selection import cartesia_websocket_url

# Different from every default, so a test cannot pass on a default by accident.
DELAYS = StandinDelays(stt_final_s=0.15, llm_first_token_s=0.2, llm_tokens_per_second=40.0, tts_first_audio_s=0.12)
FRAME = 320  # 20 ms of 8 kHz 16-bit audio


@pytest.fixture(scope="module")
def standins():
    with running_standins(Standins(DELAYS)) as server:
        yield server


@pytest.fixture()
def observed(standins):
    standins.standins.observed.reset()
    return standins.standins.observed


def phone_speech(text: str) -> bytes:
    """A callee's line as the worker hands it to STT: 8 kHz PCM that went through mu-law."""
    pcm, rate = synthesize(text, "en-us", 165, 30, reproducible=True)
    return audioop.ulaw2lin(audioop.lin2ulaw(resample_pcm16(pcm, rate, 8000), 2), 2)


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt((samples**2).mean())) if samples.size else 0.0


def call_context():
    return build_context(CallRequest.model_validate(BOOK_MEETING_REQUEST))


# --- Deepgram -----------------------------------------------------------------------------------


async def test_deepgram_service_turns_spoken_words_into_interim_then_final_transcripts(standins, observed):
    stt = DeepgramSTTService(api_key=DUMMY_KEY, base_url=standins.base_url.replace("http", "ws"), sample_rate=8000)
    speech = phone_speech("tuesday at three pm works for me") + bytes(8000)  # and half a second of line silence
    frames = []
    for i in range(0, len(speech), FRAME):  # paced as a phone line delivers it
        frames += [InputAudioRawFrame(audio=speech[i : i + FRAME], sample_rate=8000, num_channels=1), SleepFrame(sleep=0.02)]
    down, _ = await run_test(
        stt,
        frames_to_send=[*frames, SleepFrame(sleep=0.5)],
        pipeline_params=PipelineParams(audio_in_sample_rate=8000),
        start_timeout=10.0,
    )

    interims = [f.text for f in down if isinstance(f, InterimTranscriptionFrame)]
    finals = " ".join(f.text for f in down if isinstance(f, TranscriptionFrame)).lower()
    assert interims, "no interim result while the caller spoke"
    assert "tuesday" in finals and "three" in finals
    assert min(observed.values("stt_final")) >= DELAYS.stt_final_s


async def test_deepgram_wire_protocol_finalize_utterance_end_and_metadata(standins):
    url = (
        standins.base_url.replace("http", "ws")
        + "/v1/listen?encoding=mulaw&sample_rate=8000&channels=1&interim_results=true&utterance_end_ms=1000&vad_events=true"
    )
    speech = audioop.lin2ulaw(phone_speech("stop calling me"), 2)
    received: list[tuple[float, dict]] = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Token {DUMMY_KEY}"}) as ws:

        async def listen():
            async for raw in ws:
                received.append((time.monotonic(), json.loads(raw)))

        listener = asyncio.create_task(listen())
        await ws.send(json.dumps({"type": "KeepAlive"}))
        last_voice_sent = 0.0
        for i in range(0, len(speech), 160):
            await ws.send(speech[i : i + 160])
            if rms(audioop.ulaw2lin(speech[i : i + 160], 2)) > 300:
                last_voice_sent = time.monotonic()
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)  # past the final and the utterance end
        await ws.send(json.dumps({"type": "Finalize"}))  # nothing open: an empty flush answer
        await asyncio.sleep(0.3)
        await ws.send(json.dumps({"type": "CloseStream"}))
        await asyncio.wait_for(listener, 10)
        close_code = ws.close_code

    kinds = [m["type"] for _, m in received]
    assert kinds[0] == "SpeechStarted"
    finals = [
        (t, m) for t, m in received if m["type"] == "Results" and m["is_final"] and m["channel"]["alternatives"][0]["transcript"]
    ]
    assert finals and all(m["speech_final"] for _, m in finals)
    assert {"stop", "calling"} <= set(" ".join(m["channel"]["alternatives"][0]["transcript"] for _, m in finals).split())
    assert finals[-1][1]["channel"]["alternatives"][0]["words"][0]["start"] >= 0
    assert finals[-1][0] - last_voice_sent >= DELAYS.stt_final_s
    assert "UtteranceEnd" in kinds
    flushed = [m for _, m in received if m["type"] == "Results" and m.get("from_finalize")]
    assert flushed and flushed[0]["channel"]["alternatives"][0]["transcript"] == ""
    assert kinds[-1] == "Metadata" and received[-1][1]["duration"] == pytest.approx(len(speech) / 8000, abs=0.02)
    assert close_code == 1000


async def test_deepgram_refuses_a_stream_without_credentials_or_with_unsupported_audio(standins):
    base = standins.base_url.replace("http", "ws") + "/v1/listen"
    with pytest.raises(websockets.InvalidStatus) as missing_key:
        async with websockets.connect(f"{base}?encoding=linear16&sample_rate=8000"):
            pass
    with pytest.raises(websockets.InvalidStatus) as bad_audio:
        async with websockets.connect(f"{base}?encoding=opus&sample_rate=8000", additional_headers={"Authorization": "Token k"}):
            pass
    assert missing_key.value.response.status_code == 401
    assert bad_audio.value.response.status_code == 400


# --- OpenAI -------------------------------------------------------------------------------------


async def test_openai_service_streams_the_rule_agent_reply_and_calls_end_call(standins, observed):
    context = call_context()
    llm = OpenAILLMService(
        api_key=DUMMY_KEY, base_url=f"{standins.base_url}/v1", settings=OpenAILLMService.Settings(model="gpt-4o-mini")
    )
    calls: list[dict] = []

    async def end_call(params: FunctionCallParams) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"ended": True}, properties=FunctionCallResultProperties(run_llm=False))

    llm.register_function("end_call", end_call)
    messages = [{"role": "system", "content": context.agent_instructions}, {"role": "user", "content": "Stop calling me."}]
    down, _ = await run_test(
        llm, frames_to_send=[LLMContextFrame(LLMContext(messages=messages, tools=CALL_TOOLS)), SleepFrame(sleep=2.0)]
    )

    text = "".join(f.text for f in down if isinstance(f, LLMTextFrame))
    assert "won't be called again" in text
    assert calls == [{"outcome": "opted_out", "summary": "The call ended as opted_out."}]
    assert min(observed.values("llm_first_token")) >= DELAYS.llm_first_token_s


async def test_openai_client_sees_chunks_tool_call_deltas_and_usage_at_the_configured_pace(standins):
    from openai import AsyncOpenAI

    context = call_context()
    client = AsyncOpenAI(api_key=DUMMY_KEY, base_url=f"{standins.base_url}/v1", max_retries=0)
    messages = [
        {"role": "system", "content": context.agent_instructions},
        {"role": "user", "content": "yes sure i have a minute"},
        {"role": "assistant", "content": context.qualification_questions[0]},
        {"role": "user", "content": "we have about twenty employees"},
    ]
    tools = [{"type": "function", "function": {"name": "record_answer", "parameters": {"type": "object", "properties": {}}}}]
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=tools, stream=True, stream_options={"include_usage": True}
    )
    arrivals, content, tool_args, finish, usage = [], "", "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            arrivals.append(time.monotonic() - started)
            content += delta.content
        for call in delta.tool_calls or []:
            assert call.function.name in (None, "record_answer")
            tool_args += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    unstreamed = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    await client.close()

    assert content.startswith(context.qualification_questions[1].split()[0]) or context.qualification_questions[1] in content
    assert json.loads(tool_args) == {"question": context.qualification_questions[0], "answer": "we have about twenty employees"}
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens >= len(content.split())
    assert arrivals[0] >= DELAYS.llm_first_token_s
    # One token per 1/tokens_per_second after the first: the last is no earlier than that pace allows.
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / DELAYS.llm_tokens_per_second - 0.005
    assert unstreamed.choices[0].message.content == content


async def test_openai_refuses_a_request_without_a_key(standins):
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{standins.base_url}/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"


# --- Cartesia -----------------------------------------------------------------------------------


async def test_cartesia_service_speaks_real_audio_with_word_timestamps(standins, observed):
    tts = CartesiaTTSService(
        api_key=DUMMY_KEY,
        url=cartesia_websocket_url(standins.base_url),
        sample_rate=8000,
        settings=CartesiaTTSService.Settings(voice="a0e99841-438c-4a64-b679-ae501e7d6091"),
    )
    down, _ = await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame("Hello, this is the stand in speaking."), SleepFrame(sleep=2.0)],
        pipeline_params=PipelineParams(audio_out_sample_rate=8000),
        start_timeout=10.0,
    )

    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert len(audio) / 2 / 8000 > 1.0  # about two seconds of speech
    assert rms(audio) > 500  # speech, not silence
    words = [f.text.strip(" .,").lower() for f in down if isinstance(f, TTSTextFrame)]
    assert "stand" in words and "speaking" in words  # from the word timestamps
    assert min(observed.values("tts_first_audio")) >= DELAYS.tts_first_audio_s


async def test_cartesia_client_contexts_flush_done_and_mulaw_output(standins):
    from cartesia import AsyncCartesia

    client = AsyncCartesia(api_key=DUMMY_KEY, websocket_base_url=standins.base_url.replace("http", "ws"))
    events = []
    async with client.tts.websocket_connect() as connection:
        context = connection.context(
            model_id="sonic-3",
            voice={"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"},
            output_format={"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
        )
        sent = time.monotonic()
        await context.push("Thanks for your time.", flush=True)
        await context.push("Goodbye.")
        await context.no_more_inputs()
        async for event in context.receive():
            events.append((time.monotonic() - sent, event))
    await client.close()

    chunks = [(t, e) for t, e in events if e.type == "chunk"]
    audio = audioop.ulaw2lin(b"".join(e.audio for _, e in chunks), 2)
    assert chunks[0][0] >= DELAYS.tts_first_audio_s
    assert rms(audio) > 500
    assert [e.type for _, e in events if e.type in ("flush_done", "done")] == ["flush_done", "done"]


# --- A whole call -------------------------------------------------------------------------------


async def test_call_on_deepgram_openai_and_cartesia_standins_books_the_meeting(standins, observed, tmp_path):
    env = server_env(tmp_path, SILENCE_TIMEOUT_SECONDS="6", **standins.env())
    with running_server(env, log_path=tmp_path / "server.log") as base_url:
        report = await simulate(base_url, "happy", tmp_path, dict(BOOK_MEETING_REQUEST), {})

    assert report["status"] == "completed"
    assert report["outcome"] == "meeting_booked"
    caller_lines = " ".join(e["text"] for e in report["transcript"] if e["role"] == "caller").lower()
    assert "tuesday" in caller_lines  # recognized by the Deepgram stand-in from the callee's audio
    served = observed.summary()
    assert {"stt_final", "llm_first_token", "tts_first_audio"} <= served.keys()
    assert all(t["latency_ms"] is not None for t in report["caller"]["turns"])
    # Deepgram finalizes before the VAD reports the stop; every answered turn is still timed, stage by stage.
    timed = [
        m for m in report["server_turn_metrics"] if {"stt_final_ms", "llm_first_token_ms", "first_audio_sent_ms"} <= m.keys()
    ]
    assert len(timed) >= len(report["caller"]["turns"]) - 1
