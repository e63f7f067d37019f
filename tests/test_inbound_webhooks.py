"""Leads and messages from another system, signed with the workspace's webhook secret; replies kept for it to deliver."""

import json
import time

import pytest
from fastapi import HTTPException

from control_api.webhook_signature import WEBHOOK_TOLERANCE_SECONDS, check_signature, webhook_signature

LEAD = {
    "external_id": "yelp-lead-1",
    "phone": "+14155550180",
    "name": "Sarah Williams",
    "source": "yelp",
    "message": "I need a quote for a kitchen renovation",
    "external_conversation_id": "yelp-conv-1",
}


class Webhooks:
    def __init__(self, api) -> None:
        self.api = api
        self.workspace_id, self.key = api.workspace()
        issued = api.client.post(f"/workspaces/{self.workspace_id}/webhook-secret", headers=self.key)
        assert issued.status_code == 201
        self.secret = issued.json()["webhook_secret"]

    def headers(self, raw: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            "X-Workspace-Id": str(self.workspace_id),
            "X-Webhook-Timestamp": stamp,
            "X-Webhook-Signature": webhook_signature(secret or self.secret, stamp, raw),
        }

    def send(self, method: str, path: str, payload: dict | None = None, **signing):
        raw = json.dumps(payload).encode() if payload is not None else b""
        return self.api.client.request(method, path, content=raw, headers=self.headers(raw, **signing))


@pytest.fixture()
def hooks(api) -> Webhooks:
    return Webhooks(api)


def test_a_signed_lead_is_created_with_the_agents_first_reply_pending(hooks):
    answer = hooks.send("POST", "/webhooks/leads", LEAD)

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["created"] is True
    reply = body["response"]
    assert reply["delivery_status"] == "pending" and reply["external_platform"] == "yelp"
    assert reply["external_conversation_id"] == "yelp-conv-1" and "name" not in reply["content"].lower()  # the name is known
    lead = hooks.api.client.get(f"/leads/{body['lead_id']}", headers=hooks.key).json()
    assert (lead["external_id"], lead["name"], lead["phone"]) == ("yelp-lead-1", "Sarah Williams", "+14155550180")
    [thread] = lead["threads"]
    assert thread["channel"] == "external"
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant"]


def test_the_same_lead_twice_changes_nothing(hooks):
    first = hooks.send("POST", "/webhooks/leads", LEAD)
    again = hooks.send("POST", "/webhooks/leads", LEAD)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"lead_id": first.json()["lead_id"], "created": False, "response": None}
    responses = hooks.send("GET", f"/webhooks/leads/{first.json()['lead_id']}/responses")
    assert len(responses.json()) == 1


def test_forged_stale_and_unsigned_webhooks_are_refused(hooks):
    raw = json.dumps(LEAD).encode()
    forged = hooks.send("POST", "/webhooks/leads", LEAD, secret="whsec_not-the-secret")
    stale = hooks.send("POST", "/webhooks/leads", LEAD, timestamp=int(time.time()) - WEBHOOK_TOLERANCE_SECONDS - 60)
    other_body = hooks.api.client.post(
        "/webhooks/leads", content=json.dumps({**LEAD, "phone": "+14155550181"}).encode(), headers=hooks.headers(raw)
    )
    unsigned = hooks.api.client.post("/webhooks/leads", json=LEAD)
    another_workspace = hooks.api.client.post(
        "/webhooks/leads", content=raw, headers={**hooks.headers(raw), "X-Workspace-Id": str(hooks.workspace_id + 99)}
    )

    assert [r.status_code for r in (forged, stale, other_body, unsigned, another_workspace)] == [401] * 5
    assert "replay" in stale.json()["detail"]
    assert hooks.api.client.get("/leads", headers=hooks.key).json() == []


def test_a_signed_webhook_with_a_bad_field_is_refused_naming_it(hooks):
    answer = hooks.send("POST", "/webhooks/leads", {**LEAD, "phone": "555-0180"})

    assert answer.status_code == 422 and "phone" in answer.json()["detail"]


def test_messages_continue_the_conversation_once_per_external_id(hooks):
    lead_id = hooks.send("POST", "/webhooks/leads", {**LEAD, "name": None}).json()["lead_id"]
    message = {"external_id": "yelp-msg-2", "lead_external_id": "yelp-lead-1", "content": "my name is sarah"}

    first = hooks.send("POST", "/webhooks/messages", message)
    again = hooks.send("POST", "/webhooks/messages", message)

    assert (first.status_code, again.status_code) == (201, 200)
    assert "day and time" in first.json()["response"]["content"]
    assert hooks.api.client.get(f"/leads/{lead_id}", headers=hooks.key).json()["name"] == "Sarah"
    pending = hooks.send("GET", f"/webhooks/leads/{lead_id}/responses?delivery_status=pending").json()
    assert len(pending) == 2


def test_a_message_for_an_unknown_lead_is_not_found(hooks):
    answer = hooks.send("POST", "/webhooks/messages", {"external_id": "m", "lead_external_id": "nobody", "content": "hi"})

    assert answer.status_code == 404 and "nobody" in answer.json()["detail"]


def test_the_other_system_reports_delivery_and_it_only_moves_forward(hooks):
    created = hooks.send("POST", "/webhooks/leads", LEAD).json()
    response_id = created["response"]["id"]

    sent = hooks.send("PATCH", f"/webhooks/responses/{response_id}", {"delivery_status": "sent_to_external"})
    delivered = hooks.send("PATCH", f"/webhooks/responses/{response_id}", {"delivery_status": "delivered"})
    late = hooks.send("PATCH", f"/webhooks/responses/{response_id}", {"delivery_status": "sent_to_external"})

    assert [r.json()["delivery_status"] for r in (sent, delivered, late)] == ["sent_to_external", "delivered", "delivered"]
    assert hooks.send("GET", f"/webhooks/leads/{created['lead_id']}/responses?delivery_status=pending").json() == []


def test_stop_from_the_other_system_suppresses_the_lead(hooks):
    lead_id = hooks.send("POST", "/webhooks/leads", LEAD).json()["lead_id"]

    stop = hooks.send(
        "POST", "/webhooks/messages", {"external_id": "m-stop", "lead_external_id": "yelp-lead-1", "content": "STOP"}
    )
    after = hooks.send(
        "POST", "/webhooks/messages", {"external_id": "m-after", "lead_external_id": "yelp-lead-1", "content": "hello?"}
    )

    assert "unsubscribed" in stop.json()["response"]["content"]
    assert after.json()["response"] is None
    assert hooks.api.client.get(f"/leads/{lead_id}", headers=hooks.key).json()["stage"] == "SUPPRESSED"


def test_the_signature_check_with_a_set_clock():
    body, stamp = b'{"a": 1}', "1700000000"
    signature = webhook_signature("whsec_x", stamp, body)

    check_signature("whsec_x", stamp, body, signature, now=1_700_000_000 + WEBHOOK_TOLERANCE_SECONDS)
    with pytest.raises(HTTPException):
        check_signature("whsec_x", stamp, body, signature, now=1_700_000_000 + WEBHOOK_TOLERANCE_SECONDS + 1)
    with pytest.raises(HTTPException):
        check_signature("whsec_x", stamp, body + b" ", signature, now=1_700_000_000)
    with pytest.raises(HTTPException):
        check_signature(None, stamp, body, signature, now=1_700_000_000)
