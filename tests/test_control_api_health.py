"""Observability: /health/ready, /health/info, /metrics, and the structured logs of a real server."""

import json

import httpx
from sqlmodel import create_engine

from scripts.local_server import free_port, running_server
from tests.support import BOOK_MEETING_REQUEST, place_call, server_env

SECRETS = {
    "api_key": "api-key-that-must-not-show",
    "twilio_auth_token": "twilio-token-that-must-not-show",
    "openai_api_key": "sk-openai-that-must-not-show",
    "turnstile_secret": "turnstile-that-must-not-show",
}


def test_ready_when_store_and_database_answer(api_client):
    answer = api_client().get("/health/ready")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"session_store": "ok", "database": "ok"}, "down": []}


def test_ready_answers_503_naming_a_redis_that_is_down(api_client):
    client = api_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    answer = client.get("/health/ready")
    assert answer.status_code == 503
    assert answer.json()["down"] == ["session_store"]
    assert answer.json()["checks"]["database"] == "ok"


def test_ready_answers_503_naming_a_database_that_is_down(api_client):
    client = api_client()
    services = client.app.state.services
    services.engine = create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none", connect_args={"connect_timeout": 1}
    )
    answer = client.get("/health/ready")
    assert answer.status_code == 503
    assert answer.json()["down"] == ["database"]


def test_info_names_version_and_providers_and_shows_no_secret(api_client):
    client = api_client(
        **SECRETS, twilio_account_sid="AC" + "1" * 32, twilio_from_number="+15005550006", telephony_provider="none"
    )
    answer = client.get("/health/info", headers={"X-API-Key": SECRETS["api_key"]})

    assert answer.status_code == 200
    info = answer.json()
    assert info["version"]
    assert info["providers"] == {
        "stt": "local",
        "llm": "openai",
        "tts": "local",
        "telephony": "none",
        "context": "openai",
        "sms": "twilio",
    }
    assert info["settings"]["api_key_required"] is True and info["settings"]["turnstile_enabled"] is True
    for secret in SECRETS.values():
        assert secret not in answer.text


def test_metrics_show_call_requests_stages_and_the_worker(api_client):
    client = api_client()
    place_call(client, dict(BOOK_MEETING_REQUEST, phone="+14155550171"))
    text = client.get("/metrics").text

    for name in (
        'control_calls_created_total{telephony="none"}',
        'control_contexts_generated_total{source="template"}',
        'control_call_request_stage_seconds_bucket{le="0.005",stage="context"}',
        'control_call_request_stage_seconds_count{stage="dial"}',
        "control_rate_limit_refusals_total",
        "control_active_calls",
        "voice_streams_rejected_total",
        "voice_active_calls",
        "voice_turn_stage_latency_seconds",
    ):
        assert name in text, name


def test_server_logs_are_json_with_the_call_id_and_no_phone_number_or_secret(tmp_path):
    log_path = tmp_path / "server.log"
    env = server_env(
        tmp_path,
        API_KEY=SECRETS["api_key"],
        OPENAI_API_KEY=SECRETS["openai_api_key"],
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        OPENAI_CONTEXT_TIMEOUT_SECONDS="1",
    )
    with running_server(env, log_path=log_path) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        call_id = place_call(client, dict(BOOK_MEETING_REQUEST, phone="+14155550172"), headers={"X-API-Key": SECRETS["api_key"]})[
            "id"
        ]

    text = log_path.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    created_event = next(e for e in events if e.get("event") == "call_dialed")
    assert created_event["call_id"] == call_id
    assert created_event["phone"] == "+14*******72"
    # The OpenAI endpoint is down here: the fallback is logged, and the call went ahead on templates.
    assert created_event["context_source"] == "template"
    assert any(e.get("event") == "openai_context_fallback" for e in events)
    assert "+14155550172" not in text
    for secret in SECRETS.values():
        assert secret not in text
