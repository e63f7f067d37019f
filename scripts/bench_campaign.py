"""A campaign of N leads through the Twilio REST emulator: pace, delay, duplicates and losses.

    python -m scripts.bench_campaign --leads 1000 --calls-per-minute 600

It starts the Twilio emulator (tests/support/twilio_rest_emulator.py) on loopback and a server with
TELEPHONY_PROVIDER=twilio aimed at it (its own SQLite database, the in-process queue), imports N
consented leads (in workspaces of 250: the outreach policy's daily budget is 300 calls a
workspace), starts a campaign in each, the configured rate shared between them, and waits until every lead has been dialed once (or
`--max-seconds`). The emulated phones answer, ring out or are busy in the given shares (an answering
phone hangs up after a second on the media stream: the bench measures the queue, not conversations).
The strategy's follow-up spacing keeps retries out of the run, so each lead is dialed exactly once.

Printed as one JSON line: dials per minute against the configured rate, due-to-dialed delay
p50/p95/p99 (the attempts are due when the campaign starts), duplicates (numbers dialed more than
once: must be 0), lost (leads never dialed: must be 0), wall time.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx

from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST
from tests.support.twilio_rest_emulator import Callee, CalleeBehavior, TwilioRestEmulator, running_emulator

FROM_NUMBER = "+15005550006"
LEADS_PER_WORKSPACE = 250
TEMPLATE = {k: v for k, v in DEMO_REQUEST.items() if k not in ("phone", "consent", "name", "constraints")}


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return round(sorted_values[min(rank, len(sorted_values)) - 1], 3)


def phones(count: int) -> list[str]:
    return [f"+1415{2000000 + n:07d}" for n in range(count)]


def run(args: argparse.Namespace) -> dict:
    numbers = phones(args.leads)
    rng = random.Random(args.seed)
    behaviors = rng.choices(
        [CalleeBehavior.ANSWER, CalleeBehavior.NO_ANSWER, CalleeBehavior.BUSY],
        weights=[args.answered, args.no_answer, args.busy],
        k=len(numbers),
    )
    emulator = TwilioRestEmulator()
    for phone, behavior in zip(numbers, behaviors, strict=True):
        emulator.set_callee(phone, Callee(behavior, ring_seconds=0.2, max_stream_seconds=1.0))
    workdir = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    with running_emulator(emulator) as twilio:
        env = {
            "TELEPHONY_PROVIDER": "twilio",
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            **twilio.env(),
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "SECRET_KEY": "bench-secret-key",
            "ENFORCE_CALLING_HOURS": "false",
            "QUEUE_RUNNER": "in_process",
            "QUEUE_POLL_SECONDS": "0.5",
            "SILENCE_TIMEOUT_SECONDS": "2",
            "LOG_LEVEL": "WARNING",
        }
        with (
            running_server(env, log_path=workdir / "server.log") as base_url,
            httpx.Client(base_url=base_url, timeout=60) as http,
        ):
            # The outreach policy caps a workspace at 300 calls a day (budget tier GREEN): the leads are
            # spread over workspaces of at most LEADS_PER_WORKSPACE, one campaign each, sharing the rate.
            groups = [numbers[i : i + LEADS_PER_WORKSPACE] for i in range(0, len(numbers), LEADS_PER_WORKSPACE)]
            rate = max(1, args.calls_per_minute // len(groups))
            campaigns, imported_total = [], 0
            for n, group in enumerate(groups):
                created = http.post("/workspaces", json={"name": f"Bench {n}"}).json()
                workspace_id, key = created["workspace"]["id"], {"Authorization": f"Bearer {created['api_key']}"}
                strategy = http.post("/strategies", json={"followup_preset": "BALANCED"}, headers=key).json()
                http.post(f"/strategies/{strategy['id']}/activate", headers=key)
                csv = "phone,consent\n" + "".join(f"{phone},true\n" for phone in group)
                imported = http.post("/leads/import", content=csv, headers={**key, "Content-Type": "text/csv"}).json()
                if imported.get("created") != len(group):
                    raise SystemExit(f"the lead import failed: {json.dumps(imported)[:500]}")
                campaigns.append((workspace_id, key))
                imported_total += imported["created"]
            body = {
                "name": "bench",
                "stages": ["NEW"],
                "calls_per_minute": rate,
                "max_concurrent_calls": max(1, args.max_concurrent // len(groups)),
                "call": TEMPLATE,
            }
            began = time.monotonic()
            started = []
            for workspace_id, key in campaigns:
                answer = http.post(f"/workspaces/{workspace_id}/campaigns", json=body, headers=key)
                if answer.status_code != 201:
                    raise SystemExit(f"the campaign was refused: {answer.status_code} {answer.text[:500]}")
                started.append((answer.json(), key))
            due_at = min(datetime.fromisoformat(campaign["created_at"]) for campaign, _ in started)
            deadline = began + args.max_seconds
            while time.monotonic() < deadline:
                if len({c.to for c in emulator.calls()}) >= len(numbers):
                    break
                time.sleep(0.5)
            wall = time.monotonic() - began
            counts: Counter[str] = Counter()
            for campaign, key in started:
                shown = http.get(f"/campaigns/{campaign['id']}", headers=key).json()["counts"]
                counts.update({name: value for name, value in shown.items() if isinstance(value, int)})

    dials = sorted(emulator.calls(), key=lambda c: c.date_created)
    per_number = Counter(c.to for c in dials)
    delays = sorted((c.date_created - due_at).total_seconds() for c in dials)
    span = (dials[-1].date_created - dials[0].date_created).total_seconds() if len(dials) > 1 else 0.0
    return {
        "leads": len(numbers),
        "imported": imported_total,
        "mix": dict(Counter(b.value for b in behaviors)),
        "dials": len(dials),
        "configured_calls_per_minute": args.calls_per_minute,
        "max_concurrent_calls": args.max_concurrent,
        "dials_per_minute": round((len(dials) - 1) / span * 60, 1) if span else None,
        "due_to_dialed_seconds": {
            "p50": percentile(delays, 0.5),
            "p95": percentile(delays, 0.95),
            "p99": percentile(delays, 0.99),
        },
        "duplicates": sum(n - 1 for n in per_number.values() if n > 1),
        "lost": len(set(numbers) - set(per_number)),
        "campaigns": len(started),
        "campaign_counts": dict(counts),
        "wall_seconds": round(wall, 2),
        "server": "1 uvicorn worker, in-process queue, SQLite, Twilio emulator on loopback",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--calls-per-minute", type=int, default=600)
    parser.add_argument("--max-concurrent", type=int, default=50)
    parser.add_argument("--answered", type=float, default=0.2, help="share of phones that answer")
    parser.add_argument("--no-answer", type=float, default=0.4, help="share of phones that ring out")
    parser.add_argument("--busy", type=float, default=0.4, help="share of busy phones")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    if not 1 <= args.leads <= 10_000:
        parser.error("--leads must be between 1 and 10000 (one CSV import)")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
