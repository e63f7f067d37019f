"""Load POST /calls on loopback and report latency percentiles, as one JSON line.

    python -m scripts.bench_post_calls --count 250 --concurrency 10                       # SQLite, in-process queue
    python -m scripts.bench_post_calls --count 250 --start-postgres --start-redis --queue celery
    python -m scripts.bench_post_calls --count 250 --start-postgres --start-redis --queue celery --workers 2

It starts its own server on a free 127.0.0.1 port (TELEPHONY_PROVIDER=none, so nothing dials and
no audio runs; the rate limit raised for the run; a fresh SQLite database unless told otherwise),
sends `--count` requests with distinct valid numbers from `--concurrency` clients on keep-alive
connections, stops at `--max-seconds` whatever happens, and prints the figures and then one JSON
line: p50/p95/p99, concurrency, the configuration, and the server's CPU time per request (all its
processes), which bounds what one core can serve. Each request does the real work of a call
request: validation, the rate limit, the outreach policy and its stored decision, and the call
attempt row, committed before the 202. With `--queue in_process` the same server places each call
meanwhile (context, session, call row), as the single-process set-up does; with `--queue celery` the
web process only enqueues (no Celery worker runs: nothing else competes for the CPU).

The client is a few lines of HTTP/1.1 on asyncio streams rather than httpx: on a small machine the
client shares the cores with the server, and httpx's own CPU time per request (about 1 ms) would be
counted in the server's latency. The outreach policy caps one workspace at 300 calls a day, so a
run stays below that. `--start-postgres` runs a throwaway PostgreSQL with fsync off (as the tests
do): its commit latency is not measured, only the round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

from models.enums import BudgetTier
from models.outreach_policy import DAILY_CALL_BUDGET
from scripts.local_server import PostgresServer, RedisServer, free_port, running_server
from scripts.simulate_call import DEMO_REQUEST

# The demo's booking request; each benchmark call gets its own number.
REQUEST = {k: v for k, v in DEMO_REQUEST.items() if k not in ("phone", "constraints")}
# The outreach policy's daily budget for one workspace (300 calls) bounds a run, warm-up included.
DAILY_BUDGET = DAILY_CALL_BUDGET[BudgetTier.GREEN]
MAX_COUNT = 280
# Warm-up requests per client connection, sent before the measured ones in the same closed loop: the
# server opens its database connections then, as a server in steady use has them open already.
WARMUP_ROUNDS = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the status and the body.

    Kept cheap (the request bytes built before the clock starts, the head read in one call): the
    clients share the machine's cores with the server they measure."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, path: str, body: dict) -> bytes:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload

    async def send(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length, closing = 0, False
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                closing = True
        await self.reader.readexactly(length)
        if closing:
            await self.close()
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _server_tree() -> list[int]:
    """The uvicorn process this script started, and its worker processes."""
    roots = [pid for pid in _children(os.getpid()) if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    tree = list(roots)
    for pid in roots:
        tree += _children(pid)
    return tree


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


async def load(base_url: str, count: int, concurrency: int, max_seconds: float) -> dict:
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    phones = iter(f"+14152{n:06d}" for n in range(WARMUP_ROUNDS * concurrency + count))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    connections = [Connection(host, port) for _ in range(concurrency)]
    # Warm-up and measured requests go through the same closed loop, the warm-up first: the clients
    # start together (a burst of ten at once that a server in steady use never sees), and have
    # drifted apart by the time the measured requests begin.
    warmup = WARMUP_ROUNDS * concurrency
    queue: asyncio.Queue[tuple[bool, bytes]] = asyncio.Queue()
    for n in range(warmup + count):
        queue.put_nowait((n >= warmup, connections[0].request("/calls", {**REQUEST, "phone": next(phones)})))
    deadline = time.monotonic() + max_seconds
    server = _server_tree()
    window: dict[str, float] = {}  # from the first measured request on

    async def client(connection: Connection) -> None:
        while time.monotonic() < deadline:
            try:
                measured, request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if measured and not window:
                window.update(began=time.perf_counter(), cpu=_cpu_seconds(server))
            started = time.perf_counter()
            try:
                status = await connection.send(request)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = 0
                await connection.close()
            if not measured:
                continue
            statuses[status] += 1
            if status == 202:
                latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(client(connection) for connection in connections))
    wall = time.perf_counter() - window.get("began", time.perf_counter())
    server_cpu = _cpu_seconds(server) - window.get("cpu", 0.0)
    for connection in connections:
        await connection.close()

    ordered = sorted(latencies)
    requests = sum(statuses.values())
    figures: dict = {
        "requests": requests,
        "created": len(ordered),
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "concurrency": concurrency,
        "wall_seconds": round(wall, 3),
        "throughput_per_second": round(requests / wall, 1) if wall else None,
        "server_cpu_ms_per_request": round(server_cpu * 1000 / requests, 2) if requests else None,
    }
    if ordered:
        figures |= {
            "p50_ms": round(percentile(ordered, 0.50), 2),
            "p95_ms": round(percentile(ordered, 0.95), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2),
            "mean_ms": round(statistics.fmean(ordered), 2),
            "max_ms": round(ordered[-1], 2),
        }
    return figures


@contextlib.contextmanager
def backing_services(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str | None, str | None]]:
    """The database URL and Redis URL to use: given, started here, or none (SQLite, memory store)."""
    with contextlib.ExitStack() as stack:
        database_url, redis_url = args.database_url, args.redis_url
        if args.start_postgres:
            workdir.chmod(0o755)  # as root, postgres runs as its own user, who must reach its directory
            postgres = PostgresServer(free_port(), workdir / "postgres")
            postgres.workdir.mkdir()
            postgres.start()
            stack.callback(postgres.stop)
            database_url = postgres.url(postgres.create_database())
        if args.start_redis:
            redis_server = RedisServer(free_port(), workdir / "redis")
            redis_server.workdir.mkdir()
            redis_server.start()
            stack.callback(redis_server.stop)
            redis_url = redis_server.url
        yield database_url, redis_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=250, help=f"measured requests (at most {MAX_COUNT})")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop sending after this long")
    parser.add_argument("--redis-url", default=None, help="use a Redis session store (loopback only)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL on loopback (default: a fresh SQLite file)")
    parser.add_argument("--start-redis", action="store_true", help="start a throwaway redis-server for the run")
    parser.add_argument("--start-postgres", action="store_true", help="start a throwaway PostgreSQL (fsync off) for the run")
    parser.add_argument("--workers", type=int, default=1, help="web processes behind the one port (uvicorn --workers)")
    parser.add_argument(
        "--queue",
        choices=["in_process", "celery"],
        default="in_process",
        help="in_process: this server also places the calls; celery (needs Redis): only enqueued, as a web process in production",
    )
    args = parser.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if args.count + WARMUP_ROUNDS * args.concurrency > DAILY_BUDGET:
        parser.error(
            f"--count plus {WARMUP_ROUNDS} warm-up requests per client must stay within the daily budget ({DAILY_BUDGET})"
        )
    if args.redis_url and not args.redis_url.startswith(("redis://127.", "redis://localhost")):
        parser.error("--redis-url must point at loopback")
    if args.queue == "celery" and not (args.redis_url or args.start_redis):
        parser.error("--queue celery needs --redis-url or --start-redis")
    if args.workers > 1 and args.queue == "in_process" and not (args.database_url or args.start_postgres):
        parser.error(
            "--workers > 1 with the in-process queue needs PostgreSQL: each process would run its own queue on one SQLite file"
        )

    workdir = Path(tempfile.mkdtemp(prefix="bench-post-calls-"))
    with backing_services(args, workdir) as (database_url, redis_url):
        env = {
            "TELEPHONY_PROVIDER": "none",
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "ENFORCE_CALLING_HOURS": "false",
            "QUEUE_RUNNER": args.queue,
            "DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.db'}",
            "SECRET_KEY": "bench-secret-key",
            "LOG_LEVEL": "INFO",
        }
        if redis_url:
            env["REDIS_URL"] = redis_url
        load_before = os.getloadavg()[0]
        with running_server(env, log_path=workdir / "server.log", workers=args.workers) as base_url:
            # uvloop, as the server runs on: the clients' own loop costs less of the shared cores.
            figures = uvloop.run(load(base_url, args.count, args.concurrency, args.max_seconds))
    database = "postgresql" if database_url else "sqlite"
    store = "redis" if redis_url else "memory"
    figures |= {
        "endpoint": "POST /calls",
        "configuration": f"{database}, {store} store, {args.queue} queue, {args.workers} web process(es)",
        "session_store": store,
        "database": database,
        "queue": args.queue,
        "server": f"uvicorn, {args.workers} worker(s) on 127.0.0.1",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
        },
        "target_p95_ms": 20,
    }
    print(f"POST /calls x{figures['requests']} at concurrency {args.concurrency} on loopback ({figures['configuration']}):")
    if "p50_ms" in figures:
        print(
            f"  p50 {figures['p50_ms']} ms   p95 {figures['p95_ms']} ms   p99 {figures['p99_ms']} ms   max {figures['max_ms']} ms"
        )
    print(
        f"  {figures['throughput_per_second']} requests/s over {figures['wall_seconds']} s; "
        f"server CPU {figures['server_cpu_ms_per_request']} ms/request; statuses {figures['statuses']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
