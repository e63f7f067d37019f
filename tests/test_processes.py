"""The Procfile's processes together: two web processes, one queue worker, one Redis, one PostgreSQL.
A call created through one web process is dialed by the queue worker, streamed through the other web
process, and completes (issue 13, item 7)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from call_queue.celery_app import QUEUE_NAME
from models.context import ContextInstance
from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST, wait_until_placed
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script
from tests.support import server_env

PROJECT = Path(__file__).resolve().parent.parent
# No gossip, mingle or heartbeat between workers: one worker here, and they only slow its start.
QUIET = ("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO")


def start_queue_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "control_api.queue_worker", "worker", "--pool=solo", "-Q", QUEUE_NAME, *QUIET],
        cwd=PROJECT,
        env={**os.environ, **env},
        stdout=open(log_path, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
        time.sleep(0.1)
    return process


async def call_across(first: str, second: str) -> dict:
    async with httpx.AsyncClient(base_url=first, timeout=30) as api:
        created = await api.post("/calls", json=DEMO_REQUEST)
        assert created.status_code == 202, created.text
        call = created.json()
        placed = await wait_until_placed(api, call["id"])
        context = ContextInstance.model_validate((await api.get(f"/contexts/{placed['context_id']}")).json())
        # The media stream goes to the other web process, as a load balancer may send it.
        stream = call["stream"]
        caller = SimulatedCaller(
            second.replace("http", "ws", 1) + "/ws", stream["call_id"], stream["token"], caller_script("happy", context)
        )
        await caller.run()
        for _ in range(200):
            shown = (await api.get(f"/calls/{call['id']}")).json()
            if shown["status"] in ("completed", "failed"):
                return shown
            await asyncio.sleep(0.1)
    raise AssertionError(f"the call never ended: {shown}")


def test_a_call_created_through_one_web_process_is_streamed_through_another_and_completes(tmp_path, clean_redis, postgres_url):
    env = server_env(
        tmp_path,
        DATABASE_URL=postgres_url,
        REDIS_URL=clean_redis.url,
        QUEUE_RUNNER="celery",
        QUEUE_POLL_SECONDS="0.5",
        SILENCE_TIMEOUT_SECONDS="3",
    )
    worker = None
    try:
        with (
            running_server(env, log_path=tmp_path / "web-1.log") as first,
            running_server(env, log_path=tmp_path / "web-2.log") as second,
        ):
            worker = start_queue_worker(env, tmp_path / "queue.log")
            shown = asyncio.run(call_across(first, second))
            from_second = httpx.get(f"{second}/calls/{shown['id']}", timeout=30).json()
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)

    assert shown["status"] == "completed" and shown["outcome"] == "meeting_booked", shown
    assert from_second["status"] == "completed" and from_second["outcome"] == "meeting_booked"
    assert "call_dialed" in (tmp_path / "queue.log").read_text()  # the queue worker placed it, not a web process
