"""Load POST /calls on loopback and report latency percentiles.

    python -m scripts.bench_post_calls --count 250 --concurrency 10

It starts its own server on a free 127.0.0.1 port (TELEPHONY_PROVIDER=none, so nothing dials and
no audio runs; the rate limit raised for the run; a fresh SQLite database), sends `--count`
requests with distinct valid numbers from `--concurrency` clients, stops at `--max-seconds`
whatever happens, and prints the figures and then one JSON line. Each request does the real
work of a call request: validation, the outreach policy and its stored decision, and the call
attempt row (202); the in-process queue places each call meanwhile in the same server. The outreach policy caps one workspace at 300 calls a day, so a run stays
below that. Pass `--redis-url` to measure with the Redis session store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST

# The demo's booking request; each benchmark call gets its own number.
REQUEST = {k: v for k, v in DEMO_REQUEST.items() if k not in ("phone", "constraints")}
MAX_COUNT = 290  # the outreach policy's daily budget for one workspace is 300 calls
WARMUP = 5


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def load(base_url: str, count: int, concurrency: int, max_seconds: float) -> dict:
    phones = iter(f"+14152{n:06d}" for n in range(WARMUP + count))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        for _ in range(WARMUP):
            await http.post("/calls", json={**REQUEST, "phone": next(phones)})
        queue: asyncio.Queue[str] = asyncio.Queue()
        for _ in range(count):
            queue.put_nowait(next(phones))
        deadline = time.monotonic() + max_seconds

        async def client() -> None:
            while time.monotonic() < deadline:
                try:
                    phone = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    answer = await http.post("/calls", json={**REQUEST, "phone": phone})
                    statuses[answer.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1
                    continue
                if answer.status_code == 202:
                    latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - began

    ordered = sorted(latencies)
    figures = {
        "requests": sum(statuses.values()),
        "created": len(ordered),
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "concurrency": concurrency,
        "wall_seconds": round(wall, 3),
        "throughput_per_second": round(sum(statuses.values()) / wall, 1) if wall else None,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=250, help=f"measured requests (at most {MAX_COUNT})")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop sending after this long")
    parser.add_argument("--redis-url", default=None, help="use a Redis session store (loopback only)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL on loopback (default: a fresh SQLite file)")
    parser.add_argument(
        "--queue",
        choices=["in_process", "celery"],
        default="in_process",
        help="in_process: this server also places the calls; celery (needs --redis-url): only enqueued, as a web process in production",
    )
    args = parser.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if args.redis_url and not args.redis_url.startswith(("redis://127.", "redis://localhost")):
        parser.error("--redis-url must point at loopback")
    if args.queue == "celery" and not args.redis_url:
        parser.error("--queue celery needs --redis-url")

    workdir = Path(tempfile.mkdtemp(prefix="bench-post-calls-"))
    env = {
        "TELEPHONY_PROVIDER": "none",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "ENFORCE_CALLING_HOURS": "false",
        # The server's own queue places the calls (context, session, row) while the load runs, as
        # the single-process set-up does; with Celery that work moves to the queue processes.
        "QUEUE_RUNNER": args.queue,
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'bench.db'}",
        "SECRET_KEY": "bench-secret-key",
        "LOG_LEVEL": "INFO",
    }
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    with running_server(env, log_path=workdir / "server.log") as base_url:
        figures = asyncio.run(load(base_url, args.count, args.concurrency, args.max_seconds))
    figures |= {
        "endpoint": "POST /calls",
        "session_store": "redis" if args.redis_url else "memory",
        "database": "postgresql" if args.database_url else "sqlite",
        "queue": args.queue,
        "server": "1 uvicorn worker on 127.0.0.1",
        "target_p95_ms": 20,
    }
    print(
        f"POST /calls x{figures['requests']} at concurrency {args.concurrency} on loopback "
        f"({figures['session_store']} store, {figures['database']}, queue {args.queue}):"
    )
    if "p50_ms" in figures:
        print(
            f"  p50 {figures['p50_ms']} ms   p95 {figures['p95_ms']} ms   p99 {figures['p99_ms']} ms   max {figures['max_ms']} ms"
        )
    print(f"  {figures['throughput_per_second']} requests/s over {figures['wall_seconds']} s; statuses {figures['statuses']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
