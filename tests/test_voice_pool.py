"""The voice pool: `/ws` served by voice processes apart from the API, several on one machine, sharing
the session store in Redis. A call created through the API streams through any of them and completes;
the one-stream claim holds across processes; each process journals its own outcomes (issue 8, item 3)."""

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import websockets

from models.context import ContextInstance
from models.outcome_journal import OutcomeJournal
from models.settings import Settings
from scripts.local_server import running_server, running_voice_pool
from scripts.simulate_call import DEMO_REQUEST, wait_until_placed
from services.stream_credential import ws_url
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script
from tests.support import server_env
from voice_worker.voice_app import VoicePoolNeedsRedis, create_voice_app


async def _place(api: httpx.AsyncClient, phone: str) -> tuple[dict, ContextInstance]:
    created = await api.post("/calls", json={**DEMO_REQUEST, "phone": phone})
    assert created.status_code == 202, created.text
    call = created.json()
    placed = await wait_until_placed(api, call["id"])
    return call, ContextInstance.model_validate((await api.get(f"/contexts/{placed['context_id']}")).json())


async def _finished(api: httpx.AsyncClient, call_id: str) -> dict:
    for _ in range(300):
        shown = (await api.get(f"/calls/{call_id}")).json()
        if shown["status"] in ("completed", "failed"):
            return shown
        await asyncio.sleep(0.1)
    raise AssertionError(f"the call never ended: {shown}")


async def _refused_second_stream(voice_url: str, stream: dict) -> int | None:
    """Open another stream for a call that already has one: the process must close it unadmitted."""
    async with websockets.connect(voice_url.replace("http", "ws", 1) + "/ws") as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {"streamSid": "MZ" + "9" * 32, "callSid": "CA" + "9" * 32, "customParameters": stream}
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": start["streamSid"]}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code if closed.value.rcvd else None


async def _calls_through(api_url: str, first: str, second: str) -> tuple[list[dict], list[dict], int | None]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as api:
        placed = [await _place(api, f"+1415555{n:04d}") for n in (101, 102, 103, 104)]
        # The API hands out the pool's /ws; a load balancer in front of the pool may pick either process.
        assert {call["stream"]["url"] for call, _ in placed} == {ws_url(Settings(voice_public_url=first))}
        callers = [
            SimulatedCaller(
                (first if i % 2 == 0 else second).replace("http", "ws", 1) + "/ws",
                call["stream"]["call_id"],
                call["stream"]["token"],
                caller_script("happy", context),
            )
            for i, (call, context) in enumerate(placed)
        ]
        runs = [asyncio.create_task(caller.run()) for caller in callers]
        await asyncio.sleep(3)  # every call's stream is claimed by now, each in its own process
        # The first call streams through the first process; the second process must refuse it.
        refused_code = await _refused_second_stream(second, placed[0][0]["stream"])
        await asyncio.gather(*runs)
        shown = [await _finished(api, call["id"]) for call, _ in placed]
        health = [(await api.get(url + "/health")).json() for url in (first, second)]
    return shown, health, refused_code


def _started_by_process(log: Path) -> dict[int, int]:
    started: dict[int, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"media_stream_started"' in line:
            pid = json.loads(line)["process"]
            started[pid] = started.get(pid, 0) + 1
    return started


def test_calls_stream_through_two_voice_processes_on_one_redis_and_complete(tmp_path, clean_redis, postgres_url):
    env = server_env(tmp_path, DATABASE_URL=postgres_url, REDIS_URL=clean_redis.url, SILENCE_TIMEOUT_SECONDS="3")
    with (
        running_voice_pool(env, workers=1, log_path=tmp_path / "voice-1.log") as first,
        running_voice_pool(env, workers=1, log_path=tmp_path / "voice-2.log") as second,
        running_server({**env, "VOICE_PUBLIC_URL": first.base_url}, log_path=tmp_path / "api.log") as api_url,
    ):
        shown, health, refused_code = asyncio.run(_calls_through(api_url, first.base_url, second.base_url))

    assert [(call["status"], call["outcome"]) for call in shown] == [("completed", "meeting_booked")] * 4, shown
    assert all(len(call["transcript"]) >= 4 for call in shown)
    # Two calls in each process, and nothing streamed through the API process.
    assert _started_by_process(tmp_path / "voice-1.log") == {first.worker_pids[0]: 2}
    assert _started_by_process(tmp_path / "voice-2.log") == {second.worker_pids[0]: 2}
    assert "media_stream_started" not in (tmp_path / "api.log").read_text(errors="replace")
    assert {h["pid"] for h in health} == {first.worker_pids[0], second.worker_pids[0]}
    assert refused_code == 1008  # the stream claim in Redis is one per call, across processes
    # Both processes journaled into one directory, under their own holders, and confirmed every outcome.
    assert OutcomeJournal(tmp_path / "journal").unconfirmed_count() == 0


def test_a_voice_pool_of_two_processes_serves_from_one_port(tmp_path, clean_redis):
    env = server_env(tmp_path, REDIS_URL=clean_redis.url)
    with running_voice_pool(env, workers=2, log_path=tmp_path / "voice.log") as pool:
        answers = {httpx.get(f"{pool.base_url}/health", timeout=5).json()["pid"] for _ in range(40)}
        metrics = httpx.get(f"{pool.base_url}/metrics", timeout=5).text

    assert len(pool.worker_pids) == 2 and pool.supervisor_pid not in pool.worker_pids
    assert answers <= set(pool.worker_pids)
    assert "voice_active_calls" in metrics


def test_the_voice_pool_refuses_to_start_without_redis():
    with pytest.raises(VoicePoolNeedsRedis, match="REDIS_URL"):
        create_voice_app(Settings(redis_url=None))


def test_media_streams_go_to_the_voice_pool_when_it_has_a_public_url():
    assert ws_url(Settings(public_base_url="https://api.example.com")) == "wss://api.example.com/ws"
    pooled = Settings(public_base_url="https://api.example.com", voice_public_url="https://voice.example.com/")
    assert ws_url(pooled) == "wss://voice.example.com/ws"


def test_a_voice_process_that_dies_is_started_again(tmp_path, clean_redis):
    env = server_env(tmp_path, REDIS_URL=clean_redis.url)
    with running_voice_pool(env, workers=2, log_path=tmp_path / "voice.log") as pool:
        killed = pool.worker_pids[0]
        os.kill(killed, signal.SIGKILL)
        answering: set[int] = set()
        deadline = time.monotonic() + 60
        while len(answering - {killed}) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                answering.add(httpx.get(f"{pool.base_url}/health", timeout=2).json()["pid"])
            time.sleep(0.05)

    assert killed not in answering
    assert len(answering) == 2 and pool.worker_pids[1] in answering  # the survivor, and the one started in its place
    assert f"voice process {killed} exited" in (tmp_path / "voice.log").read_text()
