"""The abuse limits: per-address rate limit (shared through Redis), Turnstile, API_KEY, the form's view token."""

from urllib.parse import parse_qs

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scripts.local_server import free_port
from tests.support import BOOK_MEETING_REQUEST, serving


def request_for(phone: str, **changes) -> dict:
    return {**BOOK_MEETING_REQUEST, "phone": phone, **changes}


def phones(start: int):
    return (f"+141555501{n:02d}" for n in range(start, 100))


# --- rate limit ----------------------------------------------------------------------------------


def refusals(client) -> float:
    # Counters are per process, and other tests share this one: compare before and after.
    line = next(
        line for line in client.get("/metrics").text.splitlines() if line.startswith("control_rate_limit_refusals_total ")
    )
    return float(line.split()[1])


def test_sixth_call_request_in_a_minute_is_refused_with_retry_after(api_client):
    client = api_client(rate_limit_per_minute=5)
    refused_before = refusals(client)
    numbers = phones(0)
    answers = [client.post("/calls", json=request_for(next(numbers))) for _ in range(5)]
    assert [a.status_code for a in answers] == [202] * 5

    refused = client.post("/calls", json=request_for(next(numbers)))

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "at most 5 call requests per 60 s" in refused.json()["detail"]
    # The form's submit draws from the same allowance.
    assert client.post("/form/calls", json=request_for(next(numbers))).status_code == 429
    assert refusals(client) == refused_before + 2


def test_rate_limit_is_shared_by_processes_through_redis(api_client, clean_redis):
    first = api_client(rate_limit_per_minute=2, redis_url=clean_redis.url)
    second = api_client(rate_limit_per_minute=2, redis_url=clean_redis.url)
    numbers = phones(10)

    assert first.post("/calls", json=request_for(next(numbers))).status_code == 202
    assert second.post("/calls", json=request_for(next(numbers))).status_code == 202
    refused = first.post("/calls", json=request_for(next(numbers)))

    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) <= 60


def test_requests_with_the_api_key_are_not_rate_limited(api_client):
    client = api_client(rate_limit_per_minute=1, api_key="operator-key")
    numbers = phones(20)
    answers = [client.post("/calls", json=request_for(next(numbers)), headers={"X-API-Key": "operator-key"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]


# --- API key -------------------------------------------------------------------------------------


def test_api_key_is_required_everywhere_but_the_form_health_and_twilio(api_client):
    client = api_client(api_key="operator-key")
    numbers = phones(30)

    for method, path in [
        ("GET", "/calls/00000000-0000-4000-8000-000000000000"),
        ("GET", "/metrics"),
        ("GET", "/health/info"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 401, path
        assert "X-API-Key" in answer.json()["detail"]
    assert client.post("/calls", json=request_for(next(numbers))).status_code == 401
    assert client.post("/calls", json=request_for(next(numbers)), headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "operator-key"}).status_code == 200
    assert client.post("/calls", json=request_for(next(numbers)), headers={"X-API-Key": "operator-key"}).status_code == 202

    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/health/ready").status_code == 200
    assert client.post("/form/calls", json=request_for(next(numbers))).status_code == 202
    # Twilio's callbacks are checked by signature, not by key: refused here for the signature.
    twilio = client.post("/twilio/status?call_id=00000000-0000-4000-8000-000000000000", data={"CallStatus": "ringing"})
    assert twilio.status_code == 403 and "Twilio" in twilio.json()["detail"]


def test_form_call_can_be_followed_only_with_its_view_token(api_client):
    client = api_client(api_key="operator-key")
    created = client.post("/form/calls", json=request_for("+14155550141"))
    assert created.status_code == 202
    call = created.json()
    other = client.post("/form/calls", json=request_for("+14155550142")).json()

    shown = client.get(call["view_url"], headers={"X-Call-Token": call["view_token"]})
    assert shown.status_code == 200 and shown.json()["id"] == call["id"]
    assert client.get(call["view_url"]).status_code == 403
    assert client.get(call["view_url"], headers={"X-Call-Token": other["view_token"]}).status_code == 403
    # The view token is not the media stream's token: neither opens the other's door.
    assert call["view_token"] != call["stream"]["token"]


# --- Turnstile -----------------------------------------------------------------------------------


class SiteverifyStandIn:
    """Cloudflare's siteverify: `pass-token` succeeds, anything else fails as Cloudflare reports it."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/turnstile/v0/siteverify", self.verify, methods=["POST"])])

    async def verify(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.received.append(form)
        if form.get("secret") != "turnstile-secret":
            return JSONResponse({"success": False, "error-codes": ["invalid-input-secret"]})
        if form.get("response") == "pass-token":
            return JSONResponse(
                {"success": True, "error-codes": [], "hostname": "example.com", "challenge_ts": "2026-01-01T00:00:00Z"}
            )
        return JSONResponse({"success": False, "error-codes": ["invalid-input-response"]})


@pytest.fixture(scope="module")
def siteverify():
    stand_in = SiteverifyStandIn()
    with serving(stand_in.app) as base_url:
        yield stand_in, f"{base_url}/turnstile/v0/siteverify"


def test_form_submit_needs_a_turnstile_token_that_cloudflare_accepts(api_client, siteverify):
    stand_in, url = siteverify
    client = api_client(turnstile_secret="turnstile-secret", turnstile_verify_url=url)

    missing = client.post("/form/calls", json=request_for("+14155550151"))
    assert missing.status_code == 400 and "turnstile_token" in missing.json()["detail"]

    rejected = client.post("/form/calls", json=request_for("+14155550151", turnstile_token="forged"))
    assert rejected.status_code == 403
    assert "invalid-input-response" in rejected.json()["detail"]

    accepted = client.post("/form/calls", json=request_for("+14155550151", turnstile_token="pass-token"))
    assert accepted.status_code == 202
    checked = stand_in.received[-1]
    assert checked["secret"] == "turnstile-secret" and checked["response"] == "pass-token" and checked["remoteip"]


def test_post_calls_without_api_key_is_public_and_needs_turnstile_too(api_client, siteverify):
    _, url = siteverify
    client = api_client(turnstile_secret="turnstile-secret", turnstile_verify_url=url)
    assert client.post("/calls", json=request_for("+14155550152")).status_code == 400
    assert client.post("/calls", json=request_for("+14155550152", turnstile_token="pass-token")).status_code == 202


def test_the_operators_backend_with_the_api_key_skips_turnstile(api_client, siteverify):
    _, url = siteverify
    client = api_client(turnstile_secret="turnstile-secret", turnstile_verify_url=url, api_key="operator-key")
    answer = client.post("/calls", json=request_for("+14155550153"), headers={"X-API-Key": "operator-key"})
    assert answer.status_code == 202


def test_unreachable_siteverify_refuses_rather_than_lets_through(api_client):
    client = api_client(turnstile_secret="turnstile-secret", turnstile_verify_url=f"http://127.0.0.1:{free_port()}/siteverify")
    answer = client.post("/form/calls", json=request_for("+14155550154", turnstile_token="pass-token"))
    assert answer.status_code == 503
    assert "human check" in answer.json()["detail"]
    assert client.get("/health").json()["active_calls"] == 0  # nothing was created, nobody dialed


def test_form_page_loads_turnstile_only_when_a_site_key_is_set(api_client):
    plain = api_client().get("/")
    assert "challenges.cloudflare.com" not in plain.text
    assert "frame-src 'none'" in plain.headers["Content-Security-Policy"]

    with_key = api_client(turnstile_site_key='0x4AAAA"><script>').get("/")
    assert '<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script>' in with_key.text
    assert 'data-sitekey="0x4AAAA&quot;&gt;&lt;script&gt;"' in with_key.text  # escaped, not markup
    assert "https://challenges.cloudflare.com" in with_key.headers["Content-Security-Policy"]


def test_media_stream_needs_its_own_token_not_the_api_key(api_client):
    client = api_client(api_key="operator-key")
    call = client.post("/calls", json=request_for("+14155550155"), headers={"X-API-Key": "operator-key"}).json()
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ" + "0" * 32,
        "start": {
            "streamSid": "MZ" + "0" * 32,
            "accountSid": "AC" + "0" * 32,
            "callSid": "CA" + "0" * 32,
            "tracks": ["inbound"],
            "customParameters": {"call_id": call["id"], "token": "0" * 64},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }

    # No X-API-Key: the websocket is not refused at the door, it is judged by the stream token.
    with client.websocket_connect("/ws") as stream:
        stream.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        stream.send_json(start)
        closed = stream.receive()

    assert closed["type"] == "websocket.close"
    assert (closed["code"], closed["reason"]) == (1008, "wrong_token")
