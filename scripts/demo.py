"""Hold a whole call locally: start the server on loopback, call it as a simulated callee.

    python -m scripts.demo [--scenario happy|barge_in|opt_out|not_interested|silent]

No keys and no network needed: local speech recognition (pocketsphinx), the
rule-based agent, local speech synthesis (eSpeak NG), SQLite and an in-process
session store. Prints the transcript, the per-turn latency and where the WAV
and the JSON report are.
"""

import argparse
import asyncio
import sys
from pathlib import Path

from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST, print_summary, simulate
from simulator.caller_scripts import SCENARIOS


def demo_env(out: Path) -> dict[str, str]:
    """The demo server's settings: one process, no Redis (its queue runs in-process), no cloud keys."""
    return {
        "TELEPHONY_PROVIDER": "none",
        "DATABASE_URL": f"sqlite:///{out / 'demo.db'}",
        "LOG_JSON": "true",
        # The demo calls a simulated callee on loopback, never a person: the calling-hours rule
        # (8:00-21:00 in the lead's zone) would only schedule its call for the morning. Every other
        # outreach rule (consent, opt-out, spacing, budget) still applies to the demo's call.
        "ENFORCE_CALLING_HOURS": "false",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=SCENARIOS, default="happy")
    parser.add_argument("--out", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = demo_env(args.out)
    server_log = args.out / "server.log"
    print(f"starting the server (log: {server_log}) ...", flush=True)
    with running_server(env, log_path=server_log) as base_url:
        print(f"server on {base_url}; calling it as a simulated callee ({args.scenario}) ...", flush=True)
        report = asyncio.run(simulate(base_url, args.scenario, args.out, dict(DEMO_REQUEST), {}))
    print_summary(report)
    return 0 if report["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
