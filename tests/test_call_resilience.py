"""Faults around a live call: Redis restarting, a failing LLM, garbage on the stream, the duration cap."""

import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import websockets

from models.context import ContextInstance
from scripts.local_server import running_server
from scripts.simulate_call import simulate, wait_until_placed
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import CallerLine, caller_script
from tests.support import BOOK_MEETING_REQUEST, server_env


async def _create(base: str, phone: str) -> tuple[dict, ContextInstance]:
    async with httpx.AsyncClient(base_url=base) as http:
        created = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone))
        assert created.status_code == 202, created.text
        call = created.json()
        placed = await wait_until_placed(http, call["id"])
        context = ContextInstance.model_validate((await http.get(f"/contexts/{placed['context_id']}")).json())
    return call, context


async def _final(base: str, call_id: str) -> dict:
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(100):
            shown = (await http.get(f"/calls/{call_id}")).json()
            if shown.get("status") in ("completed", "failed"):
                return shown
            await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id} never reached an end: {shown}")


async def test_redis_restart_mid_call_does_not_lose_the_outcome(redis_live_server, redis_server):
    call, context = await _create(redis_live_server, "+14155550150")
    caller = SimulatedCaller(
        redis_live_server.replace("http", "ws") + "/ws",
        call["stream"]["call_id"],
        call["stream"]["token"],
        caller_script("happy", context),
    )
    running = asyncio.create_task(caller.run())
    await asyncio.sleep(8)  # mid-call: the opening has played, the callee is answering
    await asyncio.to_thread(redis_server.restart)  # no persistence: every session key is gone
    report = await asyncio.wait_for(running, 150)

    assert report.hung_up_by == "agent"
    final = await _final(redis_live_server, call["id"])
    assert final["status"] == "completed"
    assert final["outcome"] == "meeting_booked"
    assert any(entry["role"] == "caller" for entry in final["transcript"])


class _BrokenOpenAI(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"error": {"message": "upstream exploded", "type": "server_error"}}).encode())

    def log_message(self, *_args):
        pass


@pytest.fixture()
def broken_openai():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


async def test_failing_llm_is_replaced_by_the_rule_based_agent_within_the_turn(tmp_path, broken_openai):
    env = server_env(
        tmp_path,
        LLM_PROVIDER="openai",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=broken_openai,
        LLM_FIRST_TOKEN_TIMEOUT_SECONDS="4",
    )
    with running_server(env, log_path=tmp_path / "server.log") as base:
        report = await simulate(base, "happy", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550151"), {})

    assert report["outcome"] == "meeting_booked"
    # Every caller turn was answered, the first one included.
    assert all(turn["latency_ms"] is not None for turn in report["caller"]["turns"])
    assert report["transcript"][-1]["role"] == "agent"


async def test_garbage_on_the_stream_is_dropped_and_the_call_goes_on(live_server):
    call, _context = await _create(live_server, "+14155550152")
    url = live_server.replace("http", "ws") + "/ws"
    caller = SimulatedCaller(url, call["stream"]["call_id"], call["stream"]["token"], [CallerLine("stop calling me")])
    running = asyncio.create_task(caller.run())
    await asyncio.sleep(3)
    garbage = [
        "not json",
        json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 33).decode()}}),
        json.dumps({"event": "media", "media": {"payload": "%%% not base64 %%%"}}),
        json.dumps({"event": "media"}),
        json.dumps({"event": "dtmf", "dtmf": {"digit": 7}}),
        json.dumps({"event": "surprise"}),
        json.dumps([1, 2, 3]),
    ]
    for message in garbage:
        await caller._ws.send(message)
    report = await asyncio.wait_for(running, 90)

    final = await _final(live_server, call["id"])
    assert final["outcome"] == "opted_out"
    assert report.hung_up_by == "agent"
    metrics = httpx.get(f"{live_server}/metrics").text
    for reason in (
        "not_json",
        "media_wrong_size",
        "media_bad_base64",
        "media_without_payload",
        "dtmf_malformed",
        "unknown_event",
    ):
        assert f'voice_media_messages_rejected_total{{reason="{reason}"}}' in metrics


async def test_keypad_zero_opts_out(live_server):
    call, _ = await _create(live_server, "+14155550153")
    async with websockets.connect(live_server.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"event": "connected"}))
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "streamSid": "MZ" + "2" * 32,
                    "start": {"streamSid": "MZ" + "2" * 32, "callSid": "CA" + "2" * 32, "customParameters": call["stream"]},
                }
            )
        )
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send(
            json.dumps({"event": "dtmf", "streamSid": "MZ" + "2" * 32, "dtmf": {"track": "inbound_track", "digit": "0"}})
        )
        # Echo marks like Twilio so the agent can hang up once its goodbye has played.
        async for raw in ws:
            message = json.loads(raw)
            if message["event"] == "mark":
                await ws.send(raw)
    final = await _final(live_server, call["id"])
    assert (final["outcome"], final["end_reason"]) == ("opted_out", "opt_out")


async def test_agent_wraps_up_at_the_maximum_call_duration(tmp_path):
    env = server_env(tmp_path, MAX_CALL_SECONDS="6", SILENCE_TIMEOUT_SECONDS="30")
    with running_server(env, log_path=tmp_path / "server.log") as base:
        report = await simulate(base, "happy", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550154"), {})
    assert report["end_reason"] == "max_duration"
    assert "wrap up" in report["transcript"][-1]["text"]
    assert report["duration_seconds"] < 40
