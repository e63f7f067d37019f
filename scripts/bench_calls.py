"""Hold N concurrent simulated calls against a deployment and report the latency the callers hear.

    python -m scripts.bench_calls --calls 8 --providers standin
    python -m scripts.bench_calls --sweep --providers standin --plot artifacts/bench-standin.png
    python -m scripts.bench_calls --sweep --providers standin --workers 2   # a voice pool of 2 processes
    python -m scripts.bench_calls --calls 4 --providers local --base-url http://127.0.0.1:8000

Each call is the project's simulated callee (control_api/telephony/simulated_caller.py) on `/ws`:
the demo's call request, a scripted line of real synthesized speech per turn, paced 20 ms a frame,
the agent's audio played back in real time as Twilio plays it. Without `--base-url` a server is
started on a free loopback port (TELEPHONY_PROVIDER=none, a fresh SQLite database, limits raised for
the run) with, for `--providers standin`, the provider stand-ins (scripts/standins/) in a process of
their own and the server's Deepgram, OpenAI and Cartesia pointed at them; for `local`, the offline
providers. With `--base-url` the deployment is used as it is: run it with TELEPHONY_PROVIDER=none,
and pass `--standins-url` so the stand-ins' configured delays and served delays can be read, and
`--server-pid` (repeatable) for each process serving /ws whose CPU is to be counted.

`--workers K` runs the media streams in a voice pool instead, as the Procfile's `voice` process does:
a redis-server, the API process (REDIS_URL, VOICE_PUBLIC_URL naming the pool, the in-process queue)
and K voice processes on one port (`uvicorn --workers K`); the callers get the pool's /ws from
POST /calls. The CPU figures are then the pool's (the API process's are reported apart), and the
per-core figures divide by K.

A run with `--calls N` measures N=1 first (the baseline), then N. `--sweep` measures N = 1, 2, 4, 8, ...
until the heard p95 is more than 50 ms above N=1's or a call fails, that is ends otherwise than
completed with the scenario's outcome (or `--max-calls`), and plots the
latency against N. The calls of one round start `--stagger` seconds apart (real calls are not in
lockstep, and POST /calls holds a database connection while the context is generated: 16 requests at
once exhaust the pool and stall the server); a run repeats its round until it has held `--min-calls`
calls (N=1: four calls in a row, so that a p95 is not just the worst of five turns). It prints one JSON
document (below); per run:

- `heard_ms`: the caller's end of speech to the first agent audio reaching the phone, p50/p95/p99;
- `played_ms`: to that audio being played (the phone's playback buffer, what Twilio's `mark` echoes
  report; the worker sends no mark per turn, so the simulated phone reports it itself);
- `worker_share_ms`: heard minus the stand-ins' configured delays (STT final + LLM first token + TTS
  first audio; 0 for local providers). It still contains the LLM's streaming up to the end of the
  first sentence (TTS speaks whole sentences), shown as `llm_first_sentence_stream_ms`;
- `outbound_frame_gap_ms`: time between the agent's consecutive media messages within an utterance
  (p50/p99/max) and `outbound_frame_jitter_p99_ms`, that gap less the audio the previous message held;
- `completed_calls` (status completed, out of `calls` x `rounds`) and `expected_outcome_calls`; `cpu_seconds_per_call_minute` of
  the server process (/proc/<pid>/stat) over the calls' minutes; the server's own per-stage figures;
  the delays the stand-ins actually served; `caller_loop_lag_p99_ms`, this process's own event loop
  lag (when it is high the callers themselves are late and the figures are not to be trusted).

- `voice_cpu_cores_busy`: the CPU seconds of the processes serving /ws over the run's wall time, and
  `calls_per_core_by_cpu`, 60 / CPU seconds per call-minute: the calls one core's CPU could hold at
  this run's cost (an upper bound: it ignores latency); `cpu_seconds_by_process` shows the balance.
- `callers_cpu_seconds`: this process's own CPU (the simulated callers, on the same machine): when it
  nears a core over the run's wall time, the callers, not the worker, set the limit.

Top level: `largest_n_within_50ms_of_n1`, the largest N whose heard p95 stays within 50 ms of N=1's
(with all its calls completed with the scenario's outcome), `per_core` (that N divided by the voice
processes, and the best run's calls per core by CPU), and `result`, the run of the requested N (the
last one for a sweep).
"""

from __future__ import annotations

import argparse
import asyncio
import audioop
import contextlib
import itertools
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

from models.context import ContextInstance
from scripts.local_server import RedisServer, free_port, running_server, running_voice_pool
from scripts.simulate_call import DEMO_REQUEST, wait_until_placed
from scripts.standins.app import StandinDelays, provider_env, standins_process
from scripts.standins.observed import percentile
from simulator.callee import VOICE_RMS, SimulatedCaller
from simulator.caller_scripts import caller_script

EXPECTED_OUTCOME = {
    "happy": "meeting_booked",
    "barge_in": "meeting_booked",
    "opt_out": "opted_out",
    "not_interested": "not_interested",
}
# The agent speaks in bursts; a pause this long between two of its media messages is the caller's turn.
UTTERANCE_GAP_S = 1.0
BREAK_MARGIN_MS = 50.0
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law


# --- the simulated phone, recording what it receives and plays -------------------------------------


class _RecordingPlayback(deque):
    """The simulated phone's playback buffer, noting when agent audio arrives and when it is played."""

    def __init__(self, caller: BenchCaller) -> None:
        super().__init__()
        self._caller = caller

    def append(self, item: bytes | str) -> None:
        if isinstance(item, bytes):
            self._caller.note_received(item)
        super().append(item)

    def popleft(self) -> bytes | str:
        item = super().popleft()
        if isinstance(item, bytes):
            self._caller.note_played(item)
        return item


class BenchCaller(SimulatedCaller):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._playback = _RecordingPlayback(self)
        # [arrival time, frames] per media message: its frames are appended in one go.
        self.messages: list[list[float]] = []
        self.voiced_played_at: list[float] = []

    def note_received(self, frame: bytes) -> None:
        now = self._now()
        if self.messages and now - self.messages[-1][0] < 0.001:
            self.messages[-1][1] += 1
        else:
            self.messages.append([now, 1])

    def note_played(self, frame: bytes) -> None:
        if audioop.rms(audioop.ulaw2lin(frame, 2), 2) > VOICE_RMS:
            self.voiced_played_at.append(self._now())

    def played_after(self, t: float) -> float | None:
        return next((p for p in self.voiced_played_at if p > t), None)

    def frame_gaps(self) -> tuple[list[float], list[float]]:
        """Gaps between consecutive media messages within the agent's utterances, and those gaps less
        the audio the earlier message carried (how late the next one was), in seconds."""
        gaps, lateness = [], []
        for (t0, frames0), (t1, _frames1) in itertools.pairwise(self.messages):
            gap = t1 - t0
            if gap < UTTERANCE_GAP_S:
                gaps.append(gap)
                lateness.append(gap - frames0 * FRAME_BYTES / 8000)
        return gaps, lateness


# --- one call, one run ------------------------------------------------------------------------------


@dataclass
class CallResult:
    status: str | None
    outcome: str | None
    duration_s: float
    heard_ms: list[float] = field(default_factory=list)
    played_ms: list[float] = field(default_factory=list)
    unanswered_turns: int = 0
    gaps_s: list[float] = field(default_factory=list)
    lateness_s: list[float] = field(default_factory=list)
    server_turns: list[dict] = field(default_factory=list)
    agent_replies: list[str] = field(default_factory=list)
    error: str | None = None


def _phones() -> Iterator[str]:
    # A fresh block per invocation: a deployment that already called a number spaces out the next call.
    # A valid US exchange: 200-999, not N11.
    block = random.choice([x for x in range(200, 1000) if x % 100 != 11])
    for n in range(10_000):
        yield f"+1415{block}{n:04d}"


async def one_call(http: httpx.AsyncClient, base_url: str, phone: str, scenario: str, start_after: float) -> CallResult:
    await asyncio.sleep(start_after)
    try:
        created = await http.post("/calls", json={**DEMO_REQUEST, "phone": phone})
        if created.status_code != 202:
            return CallResult(None, None, 0.0, error=f"POST /calls answered {created.status_code}: {created.text[:200]}")
        call = created.json()
        stream = call.get("stream")
        if not stream:
            return CallResult(None, None, 0.0, error="no stream parameters: run the server with TELEPHONY_PROVIDER=none")
        placed = await wait_until_placed(http, call["id"])
        if placed.get("status") == "failed":
            return CallResult(None, None, 0.0, error=f"the call could not be placed: {placed.get('error')}")
        context = ContextInstance.model_validate((await http.get(f"/contexts/{placed['context_id']}")).json())
        ws_url = stream.get("url") or base_url.replace("http", "ws", 1).rstrip("/") + "/ws"
        caller = BenchCaller(ws_url, stream["call_id"], stream["token"], caller_script(scenario, context))
        report = await caller.run()
        final: dict = {}
        for _ in range(100):  # the outcome is written right after the stream closes
            final = (await http.get(f"/calls/{call['id']}")).json()
            if final.get("status") in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
    except (httpx.HTTPError, OSError) as exc:
        return CallResult(None, None, 0.0, error=f"{type(exc).__name__}: {exc}")
    result = CallResult(final.get("status"), final.get("outcome"), report.duration_s)
    for turn in report.turns:
        if turn.latency_ms is None:
            result.unanswered_turns += 1
            continue
        result.heard_ms.append(turn.latency_ms)
        played = caller.played_after(turn.speech_end_s)
        if played is not None:
            # To the ms, as the caller stamps arrival: a frame played the moment it arrived is not
            # reported as played before it was heard (800.9 against 801.0).
            result.played_ms.append(round((round(played, 3) - turn.speech_end_s) * 1000, 1))
    result.gaps_s, result.lateness_s = caller.frame_gaps()
    result.server_turns = final.get("turn_metrics") or []
    transcript = final.get("transcript") or []
    result.agent_replies = [
        nxt["text"] for cur, nxt in itertools.pairwise(transcript) if cur["role"] == "caller" and nxt["role"] == "agent"
    ]
    return result


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat; [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_listening_on(port: int) -> int | None:
    """The process with a listening TCP socket on `port` (this machine only), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
    return None


def _dist(values: list[float], *, digits: int = 1) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "p50": round(percentile(values, 0.5), digits) if values else None,
        "p95": round(percentile(values, 0.95), digits) if values else None,
        "p99": round(percentile(values, 0.99), digits) if values else None,
    }


async def _loop_lag(samples: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        asleep_at = loop.time()
        await asyncio.sleep(0.05)
        samples.append(max(0.0, loop.time() - asleep_at - 0.05))


@dataclass
class Deployment:
    base_url: str
    # The processes serving /ws: the server, or a voice pool's workers.
    server_pids: list[int]
    providers: str
    delays: StandinDelays | None
    standins_url: str | None = None
    standins_pid: int | None = None
    # With a voice pool: the API process, whose CPU is counted apart.
    api_pid: int | None = None
    workers: int = 1
    phones: Iterator[str] = field(default_factory=_phones)


@dataclass
class Measured:
    results: list[CallResult]
    wall_s: float
    server_cpu_s: float | None
    standins_cpu_s: float | None
    standins_served: dict | None
    caller_loop_lag_s: list[float]
    cpu_by_process: dict[int, float] = field(default_factory=dict)
    api_cpu_s: float | None = None
    callers_cpu_s: float | None = None


def _cpu_of(pids: list[int]) -> dict[int, float | None]:
    return {pid: _cpu_seconds(pid) for pid in pids}


def _cpu_spent(before: dict[int, float | None], after: dict[int, float | None]) -> dict[int, float]:
    return {pid: spent for pid in before if (spent := _spent(before[pid], after.get(pid))) is not None}


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def run_calls(
    deployment: Deployment, n: int, scenario: str, stagger_s: float, api_key: str | None, min_calls: int = 1
) -> dict:
    """N concurrent calls, in as many rounds as it takes to hold at least `min_calls` calls."""
    headers = {"X-API-Key": api_key} if api_key else {}
    rounds = -(-min_calls // n)
    lag: list[float] = []
    async with httpx.AsyncClient(base_url=deployment.base_url, headers=headers, timeout=60) as http:
        if deployment.standins_url:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"{deployment.standins_url}/standins")
        cpu_before, standin_cpu_before = _cpu_of(deployment.server_pids), _cpu_seconds(deployment.standins_pid)
        api_cpu_before = _cpu_seconds(deployment.api_pid)
        callers_cpu_before = time.process_time()
        lag_task = asyncio.create_task(_loop_lag(lag))
        began = time.monotonic()
        results: list[CallResult] = []
        for _ in range(rounds):
            calls = (one_call(http, deployment.base_url, next(deployment.phones), scenario, i * stagger_s) for i in range(n))
            results += await asyncio.gather(*calls)
        wall_s = time.monotonic() - began
        lag_task.cancel()
        by_process = _cpu_spent(cpu_before, _cpu_of(deployment.server_pids))
        server_cpu = sum(by_process.values()) if by_process else None
        standins_cpu = _spent(standin_cpu_before, _cpu_seconds(deployment.standins_pid))
        api_cpu = _spent(api_cpu_before, _cpu_seconds(deployment.api_pid))
        callers_cpu = time.process_time() - callers_cpu_before
        served = None
        if deployment.standins_url:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                served = (await http.get(f"{deployment.standins_url}/standins")).json().get("observed")
    measured = Measured(results, wall_s, server_cpu, standins_cpu, served, lag, by_process, api_cpu, callers_cpu)
    return summarize(deployment, n, scenario, measured)


def summarize(deployment: Deployment, n: int, scenario: str, measured: Measured) -> dict:
    results = measured.results
    heard = [ms for r in results for ms in r.heard_ms]
    played = [ms for r in results for ms in r.played_ms]
    delays = deployment.delays
    configured_ms = 0.0 if delays is None else (delays.stt_final_s + delays.llm_first_token_s + delays.tts_first_audio_s) * 1000
    first_sentence_ms = []
    if delays is not None:
        for r in results:
            for reply in r.agent_replies:
                sentence = re.split(r"(?<=[.!?])\s", reply.strip(), maxsplit=1)[0]
                # Complete when the token after it arrives (the first token comes at the first-token delay).
                first_sentence_ms.append(len(re.findall(r"\s*\S+", sentence)) / delays.llm_tokens_per_second * 1000)
    gaps = [g * 1000 for r in results for g in r.gaps_s]
    lateness = [g * 1000 for r in results for g in r.lateness_s]
    call_minutes = sum(r.duration_s for r in results) / 60
    stages: dict[str, list[float]] = {}
    for r in results:
        for turn in r.server_turns:
            for key, value in turn.items():
                if key.endswith("_ms"):
                    stages.setdefault(key.removesuffix("_ms"), []).append(value)
    expected = EXPECTED_OUTCOME.get(scenario)
    cpu, lag = measured.server_cpu_s, measured.caller_loop_lag_s
    cpu_per_call_minute = cpu / call_minutes if cpu is not None and call_minutes else None
    return {
        "calls": n,
        "rounds": len(results) // n,
        "completed_calls": sum(r.status == "completed" for r in results),
        "expected_outcome_calls": sum(r.outcome == expected for r in results) if expected else None,
        "outcomes": {o: sum(str(r.outcome) == o for r in results) for o in sorted({str(r.outcome) for r in results})},
        "errors": [r.error for r in results if r.error][:5],
        "turns": len(heard),
        "unanswered_turns": sum(r.unanswered_turns for r in results),
        "heard_ms": _dist(heard),
        "played_ms": _dist(played),
        "worker_share_ms": _dist([ms - configured_ms for ms in heard]),
        "llm_first_sentence_stream_ms": _dist(first_sentence_ms),
        "outbound_frame_gap_ms": {**_dist(gaps), "max": round(max(gaps), 1) if gaps else None},
        "outbound_frame_jitter_p99_ms": round(percentile(lateness, 0.99), 1) if lateness else None,
        "cpu_seconds_per_call_minute": round(cpu_per_call_minute, 2) if cpu_per_call_minute else None,
        "server_cpu_seconds": round(cpu, 2) if cpu is not None else None,
        "voice_cpu_cores_busy": round(cpu / measured.wall_s, 2) if cpu is not None and measured.wall_s else None,
        "calls_per_core_by_cpu": round(60 / cpu_per_call_minute, 1) if cpu_per_call_minute else None,
        "cpu_seconds_by_process": {str(pid): round(spent, 2) for pid, spent in measured.cpu_by_process.items()},
        "api_cpu_seconds": round(measured.api_cpu_s, 2) if measured.api_cpu_s is not None else None,
        # The simulated callers run in this process, on the same cores: when it nears a core they are late.
        "callers_cpu_seconds": round(measured.callers_cpu_s, 2) if measured.callers_cpu_s is not None else None,
        "standins_cpu_seconds": round(measured.standins_cpu_s, 2) if measured.standins_cpu_s is not None else None,
        "call_minutes": round(call_minutes, 2),
        "wall_seconds": round(measured.wall_s, 1),
        "server_stages_ms": {stage: _dist(values) for stage, values in sorted(stages.items())},
        "standins_served": measured.standins_served,
        "caller_loop_lag_p99_ms": round(percentile(lag, 0.99) * 1000, 1) if lag else None,
        # The machine's load when the run ended: the bench's own processes and anyone else's.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def passes(run: dict, baseline: dict) -> bool:
    """Every call of the run completed with the scenario's outcome, and its p95 is within 50 ms of N=1's."""
    held = run["calls"] * run.get("rounds", 1)
    if run["completed_calls"] < held or run.get("expected_outcome_calls") not in (None, held):
        return False
    if run["heard_ms"]["p95"] is None or baseline["heard_ms"]["p95"] is None:
        return False
    return run["heard_ms"]["p95"] <= baseline["heard_ms"]["p95"] + BREAK_MARGIN_MS


def largest_n_within(runs: list[dict]) -> int | None:
    baseline = next((r for r in runs if r["calls"] == 1), None)
    if baseline is None or not passes(baseline, baseline):
        return None
    best = 1
    for run in sorted(runs, key=lambda r: r["calls"]):
        if not passes(run, baseline):
            break
        best = run["calls"]
    return best


def per_core(runs: list[dict], workers: int) -> dict:
    """Capacity per voice process (one core each at most: a process's calls share one GIL)."""
    largest = largest_n_within(runs)
    held = [r for r in runs if largest is not None and r["calls"] <= largest]
    best = held[-1] if held else None
    return {
        "voice_processes": workers,
        "calls_within_50ms_of_n1_per_process": round(largest / workers, 1) if largest else None,
        "calls_per_core_by_cpu_at_that_n": best["calls_per_core_by_cpu"] if best else None,
        "outbound_frame_gap_p99_ms_at_that_n": best["outbound_frame_gap_ms"]["p99"] if best else None,
        "outbound_frame_jitter_p99_ms_at_that_n": best["outbound_frame_jitter_p99_ms"] if best else None,
    }


def plot(runs: list[dict], baseline_p95: float | None, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["calls"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^--")):
        ax.plot(ns, [r["heard_ms"][key] for r in runs], style, label=f"heard {key}")
    ax.plot(ns, [r["worker_share_ms"]["p95"] for r in runs], "x:", label="worker share p95")
    if baseline_p95 is not None:
        ax.axhline(baseline_p95 + BREAK_MARGIN_MS, color="grey", linewidth=0.8, label="N=1 p95 + 50 ms")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("concurrent calls (N)")
    ax.set_ylabel("caller's end of speech to agent audio (ms)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else ""
    # Others' work on the machine shows in the figures; the load says how much there was.
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_average_1m": round(os.getloadavg()[0], 2)}


@contextlib.contextmanager
def deployment_for(args: argparse.Namespace, workdir: Path) -> Iterator[Deployment]:
    delays = (
        StandinDelays(
            stt_final_s=args.stt_final_ms / 1000,
            llm_first_token_s=args.llm_first_token_ms / 1000,
            llm_tokens_per_second=args.llm_tokens_per_second,
            tts_first_audio_s=args.tts_first_audio_ms / 1000,
        )
        if args.providers == "standin"
        else None
    )
    if args.base_url:
        port = urlparse(args.base_url).port
        found = pid_listening_on(port) if port else None
        pids = args.server_pid or ([found] if found else [])
        if delays is not None and args.standins_url:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                configured = httpx.get(f"{args.standins_url}/standins", timeout=5).json()["delays"]
                delays = StandinDelays(**configured)
        yield Deployment(args.base_url, pids, args.providers, delays, args.standins_url, workers=max(len(pids), 1))
        return
    env = {
        "TELEPHONY_PROVIDER": "none",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "SECRET_KEY": "bench-secret-key",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "ENFORCE_CALLING_HOURS": "false",
        "LOG_LEVEL": "INFO",
        "OUTCOME_JOURNAL_DIR": str(workdir / "journal"),
        "RECORDINGS_DIR": str(workdir / "recordings"),
    }
    with contextlib.ExitStack() as stack:
        standins_url = standins_pid = None
        if delays is not None:
            standins_url, standins_pid = stack.enter_context(standins_process(delays, log_path=workdir / "standins.log"))
            env |= provider_env(standins_url)
        else:
            env |= {"STT_PROVIDER": "local", "LLM_PROVIDER": "local", "TTS_PROVIDER": "local"}
        if not args.workers:
            base_url = stack.enter_context(running_server(env, log_path=workdir / "server.log"))
            pid = pid_listening_on(urlparse(base_url).port or 0)
            yield Deployment(base_url, [pid] if pid else [], args.providers, delays, standins_url, standins_pid)
            return
        redis_server = RedisServer(free_port(), workdir)
        redis_server.start()
        stack.callback(redis_server.stop)
        env |= {"REDIS_URL": redis_server.url, "QUEUE_RUNNER": "in_process"}
        pool = stack.enter_context(running_voice_pool(env, args.workers, log_path=workdir / "voice.log"))
        base_url = stack.enter_context(
            running_server({**env, "VOICE_PUBLIC_URL": pool.base_url}, log_path=workdir / "server.log")
        )
        api_pid = pid_listening_on(urlparse(base_url).port or 0)
        yield Deployment(
            base_url, pool.worker_pids, args.providers, delays, standins_url, standins_pid, api_pid=api_pid, workers=args.workers
        )


def _progress(run: dict) -> None:
    heard, held = run["heard_ms"], run["calls"] * run["rounds"]
    print(
        f"N={run['calls']}: heard p50/p95 {heard['p50']}/{heard['p95']} ms, {run['completed_calls']}/{held} completed",
        file=sys.stderr,
    )


async def bench(args: argparse.Namespace, deployment: Deployment) -> list[dict]:
    runs: list[dict] = []
    if args.sweep:
        n = 1
        while n <= args.max_calls:
            runs.append(await run_calls(deployment, n, args.scenario, args.stagger, args.api_key, args.min_calls))
            _progress(runs[-1])
            if not passes(runs[-1], runs[0]) and not args.through:
                break
            n *= 2
    else:
        for n in sorted({1, args.calls}):
            runs.append(await run_calls(deployment, n, args.scenario, args.stagger, args.api_key, args.min_calls))
            _progress(runs[-1])
    return runs


def main(argv: list[str] | None = None) -> int:
    defaults = StandinDelays()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1, help="concurrent calls (N); N=1 is measured too, as the baseline")
    parser.add_argument("--providers", choices=("standin", "local"), default="standin")
    parser.add_argument("--sweep", action="store_true", help="N = 1, 2, 4, ... until p95 rises 50 ms above N=1 or a call fails")
    parser.add_argument("--max-calls", type=int, default=64, help="the sweep stops here whatever happens")
    parser.add_argument(
        "--through",
        action="store_true",
        help="with --sweep: measure every N up to --max-calls, past the first that breaks (one noisy run does not end it)",
    )
    parser.add_argument("--base-url", default=None, help="a running deployment (TELEPHONY_PROVIDER=none); default: start one")
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=None,
        help="a process serving /ws, for the CPU figures; repeat it for each process of a pool (default: found by port)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run /ws in a voice pool of this many processes beside the API (Redis); 0: the one server serves it",
    )
    parser.add_argument("--standins-url", default=None, help="with --base-url: the stand-ins it uses, for their delays")
    parser.add_argument("--api-key", default=None, help="X-API-Key, when the deployment requires one")
    parser.add_argument("--scenario", choices=sorted(EXPECTED_OUTCOME), default="happy")
    parser.add_argument("--stagger", type=float, default=0.25, help="seconds between two call starts in a round")
    parser.add_argument(
        "--min-calls",
        type=int,
        default=4,
        help="calls per run at least: N concurrent calls are repeated in rounds (N=1: 4 calls in a row)",
    )
    parser.add_argument("--stt-final-ms", type=float, default=defaults.stt_final_s * 1000)
    parser.add_argument("--llm-first-token-ms", type=float, default=defaults.llm_first_token_s * 1000)
    parser.add_argument("--llm-tokens-per-second", type=float, default=defaults.llm_tokens_per_second)
    parser.add_argument("--tts-first-audio-ms", type=float, default=defaults.tts_first_audio_s * 1000)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of latency against N (default with --sweep: artifacts/)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.max_calls < 1:
        parser.error("--calls and --max-calls must be at least 1")
    if args.workers < 0 or (args.workers and args.base_url):
        parser.error("--workers starts a pool of its own: at least 0, and not with --base-url")
    if args.base_url and urlparse(args.base_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--base-url must be on loopback")

    workdir = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    machine = _machine()
    with deployment_for(args, workdir) as deployment:
        runs = asyncio.run(bench(args, deployment))
    plot_path = args.plot or (Path("artifacts") / f"bench-calls-{args.providers}.png" if args.sweep else None)
    if plot_path is not None:
        pool = f", voice pool of {args.workers}" if args.workers else ""
        title = f"{args.providers} providers, {machine['cpus']} CPUs{pool}, scenario {args.scenario}"
        plot(runs, runs[0]["heard_ms"]["p95"], plot_path, title)
    report = {
        "providers": args.providers,
        "scenario": args.scenario,
        "machine": {**machine, "load_average_1m_after": round(os.getloadavg()[0], 2)},
        "deployment": args.base_url or f"started on loopback (logs in {workdir})",
        "standin_delays_ms": None
        if deployment.delays is None
        else {
            "stt_final": round(deployment.delays.stt_final_s * 1000, 1),
            "llm_first_token": round(deployment.delays.llm_first_token_s * 1000, 1),
            "llm_tokens_per_second": deployment.delays.llm_tokens_per_second,
            "tts_first_audio": round(deployment.delays.tts_first_audio_s * 1000, 1),
        },
        "workers": deployment.workers,
        "largest_n_within_50ms_of_n1": largest_n_within(runs),
        "per_core": per_core(runs, deployment.workers),
        "result": runs[-1],
        "runs": runs,
        "plot": str(plot_path) if plot_path else None,
    }
    print(json.dumps(report, indent=2))
    return 0 if all(r["completed_calls"] == r["calls"] * r["rounds"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
