"""Call a running worker as a simulated callee, over Twilio's Media Streams protocol.

    python -m scripts.simulate_call --base-url http://127.0.0.1:8000 --scenario happy

It creates the call through the control API (the server must run with
TELEPHONY_PROVIDER=none so that it hands out the stream's call_id and token),
plays the scripted callee in real time, and writes the two-sided audio (WAV,
callee left, agent right) and a JSON report: transcript, outcome, per-turn latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

import httpx

from models.context import ContextInstance
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import SCENARIOS, caller_script

DEMO_REQUEST = {
    "phone": "+14155550123",
    "name": "Alex",
    "product": "Brightside solar panels",
    "offer_pricing": "installation from 49 dollars a month, first month free",
    "target": "sme",
    "goal": "book_meeting",
    "style": "friendly",
    "booking_link": "https://example.com/book/brightside",
    "constraints": "Do not promise installation dates.",
    "consent": True,
}


def summarize(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"median_ms": None, "worst_ms": None, "count": 0}
    return {"median_ms": round(statistics.median(latencies), 1), "worst_ms": max(latencies), "count": len(latencies)}


async def wait_until_placed(
    http: httpx.AsyncClient, call_id: str, timeout: float = 30.0, headers: dict[str, str] | None = None
) -> dict:
    """POST /calls answers before the queue places the call: wait until its session is saved (the
    call shows its context), which is when a media stream for it is admitted."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        shown = (await http.get(f"/calls/{call_id}", headers=headers)).json()
        if shown.get("context_id") or shown.get("status") == "failed":
            return shown
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"call {call_id} was not placed within {timeout:.0f} s: {shown}")
        await asyncio.sleep(0.05)


async def simulate(base_url: str, scenario: str, out_dir: Path, request: dict, headers: dict[str, str]) -> dict:
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        created = await http.post("/calls", json=request)
        if created.status_code != 202:
            raise SystemExit(f"POST /calls answered {created.status_code}: {created.text}")
        call = created.json()
        if not call.get("stream"):
            raise SystemExit("the server did not hand out stream parameters: run it with TELEPHONY_PROVIDER=none")
        if call["status"] == "scheduled":
            raise SystemExit(f"the call is scheduled for {call['scheduled_for']} (the outreach policy's time rules)")
        placed = await wait_until_placed(http, call["id"])
        if placed.get("status") == "failed":
            raise SystemExit(f"the call could not be placed: {placed.get('error')}")
        context = ContextInstance.model_validate((await http.get(f"/contexts/{placed['context_id']}")).json())
        stream = call["stream"]
        ws_url = stream.get("url") or base_url.replace("http", "ws", 1).rstrip("/") + "/ws"
        caller = SimulatedCaller(ws_url, stream["call_id"], stream["token"], caller_script(scenario, context))
        caller_report = await caller.run()

        final = {}
        for _ in range(100):  # the outcome is written right after the stream closes
            final = (await http.get(f"/calls/{call['id']}")).json()
            if final.get("status") in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)

    out_dir.mkdir(parents=True, exist_ok=True)
    wav = caller.write_wav(out_dir / f"call-{call['id']}.wav")
    latencies = [t.latency_ms for t in caller_report.turns if t.latency_ms is not None]
    report = {
        "call_id": call["id"],
        "scenario": scenario,
        "status": final.get("status"),
        "outcome": final.get("outcome"),
        "end_reason": final.get("end_reason"),
        "duration_seconds": caller_report.duration_s,
        "transcript": final.get("transcript", []),
        "answers": final.get("answers", {}),
        "latency_caller_end_of_speech_to_first_agent_audio": summarize(latencies),
        "caller": caller_report.as_dict(),
        "server_turn_metrics": final.get("turn_metrics", []),
        "wav": str(wav),
    }
    report_path = out_dir / f"call-{call['id']}.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    report["report"] = str(report_path)
    return report


def print_summary(report: dict) -> None:
    print(f"call {report['call_id']}: {report['status']} / {report['outcome']} ({report['end_reason']})")
    for entry in report["transcript"]:
        timing = entry.get("timing") or {}
        suffix = f"   [audio out +{timing['first_audio_sent_ms']:.0f} ms]" if "first_audio_sent_ms" in timing else ""
        print(f"  {entry['role']:>6}: {entry['text']}{suffix}")
    lat = report["latency_caller_end_of_speech_to_first_agent_audio"]
    print(
        f"latency (caller end of speech -> first agent audio): median {lat['median_ms']} ms, worst {lat['worst_ms']} ms over {lat['count']} turns"
    )
    print(f"audio:  {report['wav']}")
    print(f"report: {report['report']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--scenario", choices=SCENARIOS, default="happy")
    parser.add_argument("--goal", choices=["qualify_interest", "book_meeting", "collect_info", "confirm_order"])
    parser.add_argument("--out", type=Path, default=Path("artifacts"))
    parser.add_argument("--api-key", default=None, help="X-API-Key, when the server requires one")
    args = parser.parse_args(argv)
    request = {**DEMO_REQUEST, **({"goal": args.goal} if args.goal else {})}
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    report = asyncio.run(simulate(args.base_url, args.scenario, args.out, request, headers))
    print_summary(report)
    return 0 if report["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
