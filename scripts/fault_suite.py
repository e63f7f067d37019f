"""Faults against a running deployment while simulated calls are live; one JSON line per fault.

    python -m scripts.fault_suite                                   # Redis, PostgreSQL and the server on loopback
    python -m scripts.fault_suite --faults redis_restart,ws_drop --calls 1
    python -m scripts.fault_suite --base-url http://127.0.0.1:8000  # only the faults that need no server control

For each fault it places `--calls` calls (POST /calls with a workspace key, one lead each; the callee
is simulator/callee.py speaking real audio over /ws), injects the fault while they are live, lets it
clear, waits for the after-call path (the outcome journal replays what an outage left) and reports:
calls live when the fault hit, calls completed (the callee heard the call end), outcomes stored (the
database row is final), after-call effects applied (the lead updated: stage, tags, messages, an
opt-out), the longest silence a callee heard while waiting for the agent, and whether the server
answered /health afterwards. Target: nothing lost, no silence over 3 s, except for `process_kill`.

Faults: db_locked (PostgreSQL's call table locked), db_down (PostgreSQL stopped, then started),
redis_restart (without persistence: every session key is gone), provider_error and provider_hang
(an OpenAI-compatible stand-in on loopback answers 500 / never answers: a second server process uses
it through OPENAI_BASE_URL), ws_drop (the callee's connection cut mid-utterance, no close frame),
hangup_last_sentence (the callee hangs up during the agent's goodbye), process_kill (the server
SIGKILLed mid-call, then started again).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg

from models.context import ContextInstance
from scripts.local_server import PostgresServer, RedisServer, free_port
from scripts.simulate_call import DEMO_REQUEST, wait_until_placed
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script

FAULTS = (
    "db_locked",
    "db_down",
    "redis_restart",
    "provider_error",
    "provider_hang",
    "ws_drop",
    "hangup_last_sentence",
    "process_kill",
)
# These need the suite to own the servers (stop, restart, kill them) or the provider stand-in.
NEEDS_OWN_DEPLOYMENT = frozenset({"db_locked", "db_down", "redis_restart", "provider_error", "provider_hang", "process_kill"})
PROVIDER_FAULTS = frozenset({"provider_error", "provider_hang"})
SILENCE_TARGET_S = 3.0
# When the fault hits: the agent's opening is playing, the call is live.
FAULT_AT_S = 3.0
SETTLE_TIMEOUT_S = 90.0
SCENARIOS = ("opt_out", "not_interested", "happy")


class _StandInOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that fails: 500 in `error` mode, never answers in `hang` mode."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.server.mode == "hang":  # type: ignore[attr-defined]
            self.server.released.wait(60)  # type: ignore[attr-defined]
        try:
            self.send_response(500)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "stand-in failure", "type": "server_error"}}).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a hanging request: that was the point

    def log_message(self, *_args) -> None:
        pass


class StandInProvider:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInOpenAI)
        self.server.mode = "error"  # type: ignore[attr-defined]
        self.server.released = threading.Event()  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def set_mode(self, mode: str) -> None:
        self.server.released.set() if mode != "hang" else self.server.released.clear()  # type: ignore[attr-defined]
        self.server.mode = mode  # type: ignore[attr-defined]

    def close(self) -> None:
        self.server.released.set()  # type: ignore[attr-defined]
        self.server.shutdown()


@dataclass
class ServerProcess:
    """The app in a child process on a fixed port, so it can be killed and started again at the same address."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115  (the child writes it)
        command = [sys.executable, "-m", "uvicorn", "--factory", "control_api.main:app_factory", "--host", "127.0.0.1"]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), "--log-level", "warning"],
            env={**os.environ, "PUBLIC_BASE_URL": self.base_url, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode} (log: {self.log_path})")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s (log: {self.log_path})")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Deployment:
    base_url: str
    provider_base_url: str | None = None
    database_url: str | None = None
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    server: ServerProcess | None = None
    provider_server: ServerProcess | None = None
    provider: StandInProvider | None = None

    def close(self) -> None:
        for server in (self.server, self.provider_server):
            if server is not None:
                server.stop()
        if self.provider is not None:
            self.provider.close()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
            shutil.rmtree(self.postgres.workdir, ignore_errors=True)


def start_deployment(workdir: Path, with_provider: bool) -> Deployment:
    redis_server = RedisServer(free_port(), workdir / "redis")
    (workdir / "redis").mkdir(parents=True, exist_ok=True)
    redis_server.start()
    # Not under workdir's parent when that is private to root: postgres runs as its own user.
    postgres = PostgresServer(free_port(), Path(tempfile.mkdtemp(prefix="fault-pg-")))
    postgres.start()
    database_url = postgres.url(postgres.create_database())
    env = {
        "TELEPHONY_PROVIDER": "none",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "SECRET_KEY": secrets.token_hex(32),
        "RATE_LIMIT_PER_MINUTE": "10000",
        "ENFORCE_CALLING_HOURS": "false",
        "OUTCOME_JOURNAL_REPLAY_SECONDS": "2",
        "LOG_JSON": "true",
        # One web process that also runs the call queue (no separate Celery worker in this deployment).
        "QUEUE_RUNNER": "in_process",
    }
    deployment = Deployment(base_url="", database_url=database_url, redis=redis_server, postgres=postgres)
    try:
        deployment.server = ServerProcess({**env, "OUTCOME_JOURNAL_DIR": str(workdir / "journal")}, workdir / "server.log")
        deployment.server.start()
        deployment.base_url = deployment.server.base_url
        if with_provider:
            deployment.provider = StandInProvider()
            deployment.provider_server = ServerProcess(
                {
                    **env,
                    "OUTCOME_JOURNAL_DIR": str(workdir / "journal-provider"),
                    "LLM_PROVIDER": "openai",
                    "OPENAI_API_KEY": "sk-fault-suite",
                    "OPENAI_BASE_URL": deployment.provider.url,
                    # The rule-based agent takes the turn after this much LLM silence.
                    "LLM_FIRST_TOKEN_TIMEOUT_SECONDS": "1.5",
                },
                workdir / "server-provider.log",
            )
            deployment.provider_server.start()
            deployment.provider_base_url = deployment.provider_server.base_url
    except BaseException:
        deployment.close()
        raise
    return deployment


_phones = itertools.count(100)


@dataclass
class LiveCall:
    call_id: str
    lead_id: int
    scenario: str
    caller: SimulatedCaller
    task: asyncio.Task | None = None
    caller_left: bool = False


async def _workspace_key(http: httpx.AsyncClient) -> dict[str, str]:
    answer = await http.post("/workspaces", json={"name": f"fault suite {secrets.token_hex(3)}"})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['api_key']}"}


async def _place_call(http: httpx.AsyncClient, key: dict[str, str], scenario: str) -> LiveCall:
    phone = f"+1415555{next(_phones) % 10000:04d}"
    lead = await http.post("/leads", json={"phone": phone, "consent": True, "name": "Alex"}, headers=key)
    lead.raise_for_status()
    created = await http.post("/calls", json=dict(DEMO_REQUEST, phone=phone), headers=key)
    if created.status_code not in (201, 202) or not created.json().get("stream"):
        raise RuntimeError(f"POST /calls answered {created.status_code}: {created.text[:300]}")
    call = created.json()
    placed = await wait_until_placed(http, call["id"], headers=key)
    if placed.get("status") == "failed":
        raise RuntimeError(f"the call could not be placed: {placed.get('error')}")
    context = ContextInstance.model_validate((await http.get(f"/contexts/{placed['context_id']}", headers=key)).json())
    stream = call["stream"]
    ws_url = str(http.base_url).rstrip("/").replace("http", "ws", 1) + "/ws"
    caller = SimulatedCaller(ws_url, stream["call_id"], stream["token"], caller_script(scenario, context), max_seconds=120)
    return LiveCall(call["id"], lead.json()["id"], scenario, caller)


def _stored_outcomes(database_url: str, call_ids: list[str]) -> dict[str, tuple[str, str | None, int]]:
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=3) as db:
        rows = db.execute(
            "SELECT id, status, outcome, transcript FROM call WHERE id = ANY(%s) AND status IN ('COMPLETED', 'FAILED', "
            "'completed', 'failed')",
            (call_ids,),
        ).fetchall()
    return {row[0]: (row[1], row[2], len(row[3] or [])) for row in rows}


async def _effects_applied(
    http: httpx.AsyncClient, key: dict[str, str], call: LiveCall, outcome: str | None, transcript_turns: int
) -> bool:
    """The lead hook ran for this call: the lead was touched, every utterance kept once, an opt-out applied."""
    answer = await http.get(f"/leads/{call.lead_id}", headers=key)
    if answer.status_code != 200:
        return False
    lead = answer.json()
    messages = [m for thread in lead["threads"] for m in thread["messages"] if m["call_id"] == call.call_id]
    if lead["last_followup_at"] is None or len(messages) != transcript_turns:
        return False
    return (outcome or "").lower() != "opted_out" or (lead["stage"] == "SUPPRESSED" and lead["opted_out_at"] is not None)


async def _settle(deployment: Deployment, http: httpx.AsyncClient, key: dict[str, str], calls: list[LiveCall]) -> tuple[int, int]:
    """Wait for the after-call path (and the journal's replay); returns (outcomes stored, effects applied)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    stored: dict[str, tuple[str, str | None, int]] = {}
    applied = 0
    while time.monotonic() < deadline:
        try:
            if deployment.database_url:
                stored = await asyncio.to_thread(_stored_outcomes, deployment.database_url, [c.call_id for c in calls])
            else:
                stored = {}
                for c in calls:
                    shown = (await http.get(f"/calls/{c.call_id}", headers=key)).json()
                    if shown.get("status") in ("completed", "failed"):
                        stored[c.call_id] = (shown["status"], shown.get("outcome"), len(shown.get("transcript") or []))
            applied = 0
            for c in calls:
                if c.call_id in stored and await _effects_applied(http, key, c, stored[c.call_id][1], stored[c.call_id][2]):
                    applied += 1
            if len(stored) == len(calls) and applied == len(calls):
                break
        except (httpx.HTTPError, psycopg.Error):
            pass  # the fault is still clearing
        await asyncio.sleep(1)
    return len(stored), applied


async def _when(condition: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def _callers_done(calls: list[LiveCall]) -> None:
    await asyncio.gather(*(c.task for c in calls if c.task is not None), return_exceptions=True)


def _ended(call: LiveCall) -> bool:
    return call.task is None or call.task.done()


async def _drop_mid_utterance(call: LiveCall) -> None:
    caller = call.caller
    if await _when(lambda: bool(caller._mic) or _ended(call)) and not _ended(call):  # the callee is speaking
        await asyncio.sleep(0.3)
        call.caller_left = True
        caller._ws.transport.abort()  # no close frame, no stop: the line just goes dead


async def _hang_up_during_goodbye(call: LiveCall) -> None:
    caller = call.caller
    spoke_last = lambda: len(caller.report.turns) == len(caller.lines) and caller.report.turns[-1].first_agent_audio_s is not None  # noqa: E731
    if await _when(lambda: spoke_last() or _ended(call)) and not _ended(call):
        await asyncio.sleep(0.5)  # into the agent's last sentence
        call.caller_left = True
        await caller._send({"event": "stop", "streamSid": caller.stream_sid, "stop": {"callSid": caller.call_sid}})
        await caller._ws.close()


async def _inject(fault: str, deployment: Deployment, calls: list[LiveCall]) -> None:
    """Apply the fault while the calls are live and clear it once they ended."""
    if fault == "db_locked":
        url = (deployment.database_url or "").replace("postgresql+psycopg://", "postgresql://")
        lock = await psycopg.AsyncConnection.connect(url)
        await lock.execute("LOCK TABLE call IN ACCESS EXCLUSIVE MODE")
        await _callers_done(calls)
        await asyncio.sleep(3)
        await lock.rollback()
        await lock.close()
    elif fault == "db_down":
        assert deployment.postgres is not None
        await asyncio.to_thread(deployment.postgres.stop)
        try:
            await _callers_done(calls)
            await asyncio.sleep(3)
        finally:
            await asyncio.to_thread(deployment.postgres.start)
    elif fault == "redis_restart":
        assert deployment.redis is not None
        await asyncio.to_thread(deployment.redis.restart, 0.5)
    elif fault == "ws_drop":
        await asyncio.gather(*(_drop_mid_utterance(c) for c in calls))
    elif fault == "hangup_last_sentence":
        await asyncio.gather(*(_hang_up_during_goodbye(c) for c in calls))
    elif fault == "process_kill":
        assert deployment.server is not None
        await asyncio.to_thread(deployment.server.kill)
        for c in calls:
            c.caller_left = True
        await _callers_done(calls)
        await asyncio.to_thread(deployment.server.start)


def _scenario(fault: str, index: int) -> str:
    if fault == "hangup_last_sentence":
        return "opt_out"  # its one line is answered by the goodbye
    return SCENARIOS[index % len(SCENARIOS)]


async def run_fault(deployment: Deployment, fault: str, calls_per_fault: int) -> dict:
    base = deployment.provider_base_url if fault in PROVIDER_FAULTS else deployment.base_url
    assert base
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        key = await _workspace_key(http)
        calls = [await _place_call(http, key, _scenario(fault, i)) for i in range(calls_per_fault)]
        if fault in PROVIDER_FAULTS and deployment.provider is not None:
            deployment.provider.set_mode("error" if fault == "provider_error" else "hang")
        for c in calls:
            c.task = asyncio.create_task(c.caller.run())
        await asyncio.sleep(FAULT_AT_S)
        live = sum(1 for c in calls if c.task is not None and not c.task.done())
        await _inject(fault, deployment, calls)
        await _callers_done(calls)
        if deployment.provider is not None:
            deployment.provider.set_mode("error")
        reports = [c.task.result() if c.task and not c.task.exception() else None for c in calls]
        # The callee's line reached an end (the agent hung up, or the fault ended it) rather than hanging open.
        completed = sum(1 for r in reports if r is not None and r.hung_up_by != "caller_timeout")
        silences = [r.longest_wait_s(caller_left=c.caller_left) for c, r in zip(calls, reports, strict=True) if r is not None]
        stored, applied = await _settle(deployment, http, key, calls)
        try:
            alive = (await http.get("/health")).status_code == 200
        except httpx.HTTPError:
            alive = False
    result = {
        "fault": fault,
        "calls_live": live,
        "calls_completed": completed,
        "outcomes_stored": stored,
        "after_call_effects_applied": applied,
        "longest_silence_s": max(silences) if silences else None,
        "server_alive": alive,
    }
    lost = len(calls) - min(stored, applied)
    silence_ok = fault == "process_kill" or (result["longest_silence_s"] or 0) <= SILENCE_TARGET_S
    result["lost"] = lost
    result["target_met"] = lost == 0 and alive and silence_ok
    return result


def table(results: list[dict]) -> str:
    columns = (
        "fault",
        "calls_live",
        "calls_completed",
        "outcomes_stored",
        "after_call_effects_applied",
        "longest_silence_s",
        "server_alive",
        "target_met",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c)) for c in columns) + " |" for r in results]
    return "\n".join(lines)


async def run_suite(
    faults: list[str], calls: int, base_url: str | None, workdir: Path, emit: Callable[[str], None] = print
) -> list[dict]:
    if base_url:
        deployment = Deployment(base_url=base_url)
    else:
        deployment = await asyncio.to_thread(start_deployment, workdir, bool(PROVIDER_FAULTS & set(faults)))
    results = []
    try:
        for fault in faults:
            if base_url and fault in NEEDS_OWN_DEPLOYMENT:
                result: dict = {"fault": fault, "skipped": "needs the suite's own deployment (run without --base-url)"}
            else:
                result = await run_fault(deployment, fault, calls)
            results.append(result)
            emit(json.dumps(result))
    finally:
        deployment.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=None, help="a running deployment; unset: start one on loopback")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument("--calls", type=int, default=2, help="simulated calls live during each fault")
    parser.add_argument("--workdir", type=Path, default=None, help="where the servers' data and logs go (default: a temp dir)")
    parser.add_argument("--table", action="store_true", help="also print a Markdown table of the results at the end")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fault-suite-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run_suite(faults, args.calls, args.base_url, workdir, emit=lambda line: print(line, flush=True)))
    if args.table:
        print(table(results))
    return 0 if all(r.get("target_met", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
