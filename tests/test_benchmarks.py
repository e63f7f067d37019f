"""The benchmarks run and report (their figures go in README's performance section; no timed assertions)."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def run_script(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", *args], cwd=PROJECT, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_post_calls_reports_percentiles():
    figures = run_script("scripts.bench_post_calls", "--count", "20", "--concurrency", "10")

    assert figures["statuses"] == {"202": 20}
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert (figures["concurrency"], figures["configuration"]) == (10, "sqlite, memory store, in_process queue, 1 web process(es)")
    assert figures["server_cpu_ms_per_request"] > 0  # the server's processes were found and measured


def test_bench_campaign_dials_every_lead_once_and_reports():
    figures = run_script("scripts.bench_campaign", "--leads", "30", "--calls-per-minute", "120", "--max-seconds", "120")

    assert (figures["dials"], figures["duplicates"], figures["lost"]) == (30, 0, 0)
    assert set(figures["mix"]) == {"answer", "no-answer", "busy"}
    assert figures["dials_per_minute"] is not None and figures["due_to_dialed_seconds"]["p95"] is not None
