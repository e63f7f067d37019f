"""One stream token, one pipeline: `start`s racing for the same call leave exactly one winner."""

import asyncio
import json
import re

import httpx
import pytest
import websockets

from scripts.simulate_call import wait_until_placed
from tests.support import BOOK_MEETING_REQUEST

RACERS = 10


def _counter(metrics_text: str, name: str, label_filter: str = "") -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") and label_filter in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _start(call: dict, n: int) -> str:
    sid = "MZ" + f"{n:032d}"
    return json.dumps(
        {"event": "start", "streamSid": sid, "start": {"streamSid": sid, "callSid": "CA" + f"{n:032d}", "customParameters": call}}
    )


async def _race_one(url: str, stream: dict, n: int, go: asyncio.Event) -> str:
    """Connect, wait for the others, send `start`; 'admitted' when agent audio arrives, else the close reason."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"event": "connected"}))
        await go.wait()
        await ws.send(_start(stream, n))
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message.get("event") == "media":
                    return "admitted"  # closing now is the caller hanging up: the call ends with an outcome
        except websockets.ConnectionClosed:
            return f"closed:{ws.close_code}:{ws.close_reason}"


@pytest.mark.parametrize("server", ["live_server", "redis_live_server"])
@pytest.mark.parametrize("round_", range(3))  # a cold server (the first call) races less: several rounds
async def test_racing_starts_with_one_token_admit_exactly_one_pipeline(request, server, round_):
    base = request.getfixturevalue(server)
    phone = f"+1415555016{round_}" if server == "live_server" else f"+1415555017{round_}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone))
        assert created.status_code in (201, 202), created.text
        call = created.json()
        await wait_until_placed(http, call["id"])  # the queue saves the session after the 202
        before = (await http.get("/metrics")).text

        go = asyncio.Event()
        url = base.replace("http://", "ws://") + "/ws"
        racers = [asyncio.create_task(_race_one(url, call["stream"], n, go)) for n in range(RACERS)]
        await asyncio.sleep(0.5)  # every socket connected and waiting
        go.set()
        results = await asyncio.gather(*racers)

        for _ in range(100):
            shown = (await http.get(f"/calls/{call['id']}")).json()
            if shown.get("status") in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # a second pipeline, if one ran, would have recorded by now too
        after = (await http.get("/metrics")).text

    assert results.count("admitted") == 1, results
    assert sorted(r for r in results if r != "admitted") == ["closed:1008:call_already_streamed"] * (RACERS - 1)
    rejected = 'reason="call_already_streamed"'
    assert (
        _counter(after, "voice_streams_rejected_total", rejected) - _counter(before, "voice_streams_rejected_total", rejected)
        == RACERS - 1
    )
    assert _counter(after, "voice_calls_finished_total") - _counter(before, "voice_calls_finished_total") == 1
    assert shown["status"] in ("completed", "failed")
    assert re.fullmatch(r"[a-z_]+", shown["outcome"] or "")
