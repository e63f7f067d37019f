"""A media stream is admitted only with the right token for a live, pending call; refusals happen
before any pipeline starts, are counted, and never disturb the worker."""

import asyncio
import json
import re
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
import websockets

from models.call_job import CALL_JOB_TTL_SECONDS, CallJob, utcnow
from models.session_store import call_key
from scripts.simulate_call import wait_until_placed
from services.stream_credential import stream_token
from tests.support import BOOK_MEETING_REQUEST

SECRET = "test-secret-key"


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


def start_message(call_id: str | None, token: str | None) -> str:
    params = {k: v for k, v in {"call_id": call_id, "token": token}.items() if v is not None}
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ" + "1" * 32,
            "start": {
                "streamSid": "MZ" + "1" * 32,
                "callSid": "CA" + "1" * 32,
                "accountSid": "AC" + "1" * 32,
                "customParameters": params,
            },
        }
    )


async def refused_with(base: str, *messages: str) -> tuple[int, str, int]:
    """Send messages, then read until the server closes; return (code, reason, media frames received)."""
    media = 0
    async with websockets.connect(ws_url(base)) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        for message in messages:
            await ws.send(message)
        try:
            async for raw in ws:
                media += json.loads(raw).get("event") == "media"
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, media


async def rejected_count(base: str, reason: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    found = re.search(rf'voice_streams_rejected_total\{{reason="{reason}"\}} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


async def new_call(base: str, phone: str) -> dict:
    async with httpx.AsyncClient(base_url=base) as http:
        answer = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone))
        assert answer.status_code == 202, answer.text
        await wait_until_placed(http, answer.json()["id"])
    return answer.json()


CASES = ("missing_token", "wrong_token", "token_of_another_call", "unknown_call", "malformed_call_id", "missing_call_id")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing_token", "missing_token"),
        ("wrong_token", "wrong_token"),
        ("token_of_another_call", "wrong_token"),
        ("unknown_call", "unknown_or_expired_call"),
        ("malformed_call_id", "malformed_call_id"),
        ("missing_call_id", "missing_call_id"),
    ],
)
async def test_stream_with_bad_credentials_is_closed_before_any_audio(redis_live_server, case, reason):
    # One number per case: a call never streamed stays live in the queue, and a number has one live call.
    call = await new_call(redis_live_server, f"+141555502{sorted(CASES).index(case):02d}")
    call_id, token = call["stream"]["call_id"], call["stream"]["token"]
    other = str(uuid.uuid4())
    start = {
        "missing_token": start_message(call_id, None),
        "wrong_token": start_message(call_id, "0" * 64),
        "token_of_another_call": start_message(call_id, stream_token(other, SECRET)),
        "unknown_call": start_message(other, stream_token(other, SECRET)),
        "malformed_call_id": start_message("not-a-uuid", token),
        "missing_call_id": start_message(None, token),
    }[case]
    before = await rejected_count(redis_live_server, reason)

    code, close_reason, media = await refused_with(redis_live_server, start)

    assert (code, close_reason, media) == (1008, reason, 0)
    assert await rejected_count(redis_live_server, reason) == before + 1


@pytest.fixture(autouse=True)
def _no_number_is_busy(redis_server):
    """Each test dials the same numbers afresh; a call left pending by the previous one must not 409."""
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter("phone:*"):
        client.delete(key)


async def test_stream_for_an_expired_call_is_refused(redis_live_server, redis_server):
    job = CallJob(
        context_id=uuid.uuid4(), phone="+14155550141", created_at=utcnow() - timedelta(seconds=CALL_JOB_TTL_SECONDS + 5)
    )
    # The key outlives the job here only to prove the expiry check does not rely on Redis alone.
    redis.Redis.from_url(redis_server.url).set(call_key(job.id), job.model_dump_json(), ex=60)

    code, reason, media = await refused_with(redis_live_server, start_message(str(job.id), stream_token(job.id, SECRET)))

    assert (code, reason, media) == (1008, "expired_call", 0)


async def test_stream_that_never_sends_start_is_closed_after_the_timeout(redis_live_server):
    before = await rejected_count(redis_live_server, "start_timeout")
    code, reason, _ = await refused_with(redis_live_server, "not json at all", json.dumps({"event": "media"}))
    assert (code, reason) == (1008, "start_timeout")
    assert await rejected_count(redis_live_server, "start_timeout") == before + 1


async def test_a_call_can_be_streamed_only_once(redis_live_server):
    call = await new_call(redis_live_server, "+14155550142")
    start = start_message(call["stream"]["call_id"], call["stream"]["token"])
    async with websockets.connect(ws_url(redis_live_server)) as first:
        await first.send(json.dumps({"event": "connected"}))
        await first.send(start)
        await asyncio.wait_for(first.recv(), 10)  # the agent starts talking: admitted
        code, reason, media = await refused_with(redis_live_server, start)
    assert (code, reason, media) == (1008, "call_already_streamed", 0)


async def test_refusals_do_not_disturb_a_call_in_progress(redis_live_server):
    call = await new_call(redis_live_server, "+14155550143")
    start = start_message(call["stream"]["call_id"], call["stream"]["token"])
    async with websockets.connect(ws_url(redis_live_server)) as live:
        await live.send(json.dumps({"event": "connected"}))
        await live.send(start)
        await asyncio.wait_for(live.recv(), 10)
        await asyncio.gather(*(refused_with(redis_live_server, start_message(str(uuid.uuid4()), "x" * 64)) for _ in range(5)))
        # Still served: more agent audio keeps arriving on the admitted stream.
        received = [json.loads(await asyncio.wait_for(live.recv(), 5)) for _ in range(5)]
    assert any(m["event"] == "media" for m in received)
