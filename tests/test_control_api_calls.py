"""POST /calls, GET /calls/{id}, GET /contexts/{id}, GET /health: the call request as a user sends it."""

from uuid import uuid4

import pytest
from sqlmodel import Session

from models.session_store import MemorySessionStore
from models.tables import Call
from tests.support import BOOK_MEETING_REQUEST, is_placed, place_call, wait_for_call


def request_for(phone: str, **changes) -> dict:
    return {**BOOK_MEETING_REQUEST, "phone": phone, **changes}


def test_call_request_is_accepted_then_placed_by_the_queue_with_its_context(api_client):
    client = api_client()

    answer = client.post("/calls", json=request_for("+14155550161"))

    assert answer.status_code == 202
    call = answer.json()
    assert call["status"] == "queued" and call["status_url"].endswith(f"/calls/{call['id']}")
    # TELEPHONY_PROVIDER=none hands out what a client needs to open the media stream itself.
    assert call["stream"]["call_id"] == call["id"] and len(call["stream"]["token"]) == 64
    shown = wait_for_call(client, call["id"], is_placed)
    assert shown["id"] == call["id"] and shown["status"] == "pending"
    assert shown["phone"] != "+14155550161" and "*" in shown["phone"]  # masked
    assert 590 < shown["seconds_until_expiry"] <= 600
    context = client.get(f"/contexts/{shown['context_id']}").json()
    assert context["phone"] == "+14*******61" and context["goal"] == "book_meeting"  # masked, like the call's
    assert context["source"] == "template"  # no OPENAI_API_KEY here
    assert set(context["objection_handlers"]) == {"price", "timing", "competitor", "trust", "not_interested", "send_info"}


def test_phone_number_is_stored_in_canonical_e164(api_client):
    client = api_client()
    call = place_call(client, request_for(" +1 415 555 0162 "))
    with Session(client.app.state.services.engine) as db:
        assert db.get(Call, call["id"]).phone == "+14155550162"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "0415 555 0123"),  # national format, no country code
        ("phone", "+1415555"),  # too short to be a number
        ("phone", "+99912345678"),  # no such country code
        ("consent", False),
        ("target", "everyone"),
        ("goal", "sell_everything"),
        ("style", "shouty"),
        ("product", "x" * 201),
        ("offer_pricing", ""),
        ("name", "n" * 101),
        ("constraints", "c" * 1001),
        ("booking_link", "ftp://example.com/book"),
    ],
)
def test_invalid_call_request_is_refused_naming_the_field(api_client, field, value):
    answer = api_client().post("/calls", json={**request_for("+14155550163"), field: value})

    assert answer.status_code == 422
    problems = answer.json()["detail"]
    assert any(problem["loc"][-1] == field for problem in problems), problems


def test_missing_consent_and_unknown_fields_are_refused(api_client):
    client = api_client()
    without_consent = {k: v for k, v in request_for("+14155550164").items() if k != "consent"}
    assert client.post("/calls", json=without_consent).status_code == 422
    answer = client.post("/calls", json=request_for("+14155550164", callback_url="https://evil.example"))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "callback_url"


def test_unknown_ids_answer_404_and_malformed_ids_422(api_client):
    client = api_client()
    assert client.get(f"/calls/{uuid4()}").status_code == 404
    missing = client.get(f"/contexts/{uuid4()}")
    assert missing.status_code == 404 and "unknown or has expired" in missing.json()["detail"]
    assert client.get("/calls/not-a-uuid").status_code == 422


def test_expired_call_and_context_answer_404(api_client):
    client = api_client()
    now = [1000.0]
    # A store whose clock the test moves: the TTLs are the real ones.
    client.app.state.services.store = MemorySessionStore(clock=lambda: now[0])
    call = place_call(client, request_for("+14155550165"))
    assert client.get(call["context_url"]).status_code == 200

    now[0] += 601

    assert client.get(call["context_url"]).status_code == 404
    assert client.get(call["status_url"]).status_code == 404


def test_health_counts_the_calls_under_way(api_client):
    client = api_client()
    assert client.get("/health").json() == {"status": "ok", "active_calls": 0}

    for phone in ("+14155550166", "+14155550167"):
        place_call(client, request_for(phone))

    assert client.get("/health").json()["active_calls"] == 2


def test_a_number_already_being_called_answers_409(api_client):
    client = api_client()
    place_call(client, request_for("+14155550168"))

    again = client.post("/calls", json=request_for("+14155550168", product="Something else"))

    assert again.status_code == 409
    assert "already has a call under way" in again.json()["detail"]
