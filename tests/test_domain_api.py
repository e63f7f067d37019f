"""The workspace, strategy and lead API, and POST /calls under the outreach policy, on both databases."""

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from control_api.main import create_app
from models.domain import Lead, PolicyDecision, StrategyVersion, WorkspaceApiKey
from models.tables import Call
from tests.support import CALL_REQUEST, DomainApi, RecordingDialer, end_call, make_settings, place_call

# --- workspaces and keys -------------------------------------------------------------------------------


def test_a_workspace_key_is_shown_once_and_only_its_hash_is_stored(api):
    created = api.client.post("/workspaces", json={"name": "Acme", "timezone": "America/New_York"}).json()

    key = created["api_key"]
    with Session(api.engine) as db:
        stored = db.exec(select(WorkspaceApiKey)).all()
    assert [row.key_hash for row in stored] == [hashlib.sha256(key.encode()).hexdigest()]
    assert all(key not in (row.key_prefix, row.key_hash, row.name) for row in stored)
    shown = api.client.get(f"/workspaces/{created['workspace']['id']}", headers={"Authorization": f"Bearer {key}"}).json()
    assert "api_key" not in shown and shown["timezone"] == "America/New_York"


def test_missing_wrong_or_revoked_keys_are_refused(api):
    workspace_id, key = api.workspace()
    second = api.client.post(f"/workspaces/{workspace_id}/api-keys", json={"name": "ci"}, headers=key).json()
    second_key = {"Authorization": f"Bearer {second['api_key']}"}

    assert api.client.get("/leads").status_code == 401
    assert api.client.get("/leads", headers={"Authorization": "Bearer wsk_not-a-key"}).status_code == 401
    assert api.client.get("/leads", headers=second_key).status_code == 200
    assert api.client.delete(f"/workspaces/{workspace_id}/api-keys/{second['key']['id']}", headers=key).status_code == 200
    assert api.client.get("/leads", headers=second_key).status_code == 401
    assert api.client.get("/leads", headers=key).status_code == 200


def test_creating_a_workspace_needs_the_server_api_key_when_one_is_set(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(make_settings(db_url, api_key="server-secret"), dialer=RecordingDialer())) as client:
        assert client.post("/workspaces", json={"name": "Acme"}).status_code == 401
        assert client.post("/workspaces", json={"name": "Acme"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/workspaces", json={"name": "Acme"}, headers={"X-API-Key": "server-secret"}).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "A", "budget_tier": "PURPLE"}, "budget_tier"),
        ({"name": "A", "business_hours": {"mon": [["18:00", "09:00"]]}}, "business_hours"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_workspace_fields_are_refused_by_name(api, body, field):
    answer = api.client.post("/workspaces", json=body)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == field


# --- isolation between workspaces ----------------------------------------------------------------------


def test_one_workspace_key_can_neither_read_nor_change_another_workspace(api):
    a_id, a_key = api.workspace("A")
    b_id, b_key = api.workspace("B")
    b_lead = api.lead(b_key, phone="+14155550177", name="Bea", tags=["POSITIVE"])
    b_strategy = api.client.post("/strategies", json={"tone": "warm"}, headers=b_key).json()
    b_keys = api.client.get(f"/workspaces/{b_id}/api-keys", headers=b_key).json()
    lead_url = f"/leads/{b_lead['id']}"

    refused = [
        api.client.get(f"/workspaces/{b_id}", headers=a_key),
        api.client.patch(f"/workspaces/{b_id}", json={"name": "taken"}, headers=a_key),
        api.client.get(f"/workspaces/{b_id}/api-keys", headers=a_key),
        api.client.post(f"/workspaces/{b_id}/api-keys", json={}, headers=a_key),
        api.client.delete(f"/workspaces/{b_id}/api-keys/{b_keys[0]['id']}", headers=a_key),
        api.client.delete(f"/workspaces/{a_id}/api-keys/{b_keys[0]['id']}", headers=a_key),
        api.client.post(f"/workspaces/{b_id}/attestations", json={"operator_id": "x"}, headers=a_key),
        api.client.post(f"/workspaces/{a_id}/attestations", json={"operator_id": "x", "lead_id": b_lead["id"]}, headers=a_key),
        api.client.get(lead_url, headers=a_key),
        api.client.get(f"{lead_url}/decisions", headers=a_key),
        api.client.get(f"{lead_url}/history", headers=a_key),
        api.client.post(f"{lead_url}/history", json={"history": [{"user": "STOP"}]}, headers=a_key),
        api.client.post(f"{lead_url}/opt-out", headers=a_key),
        api.client.get(f"/strategies/{b_strategy['id']}", headers=a_key),
        api.client.patch(f"/strategies/{b_strategy['id']}", json={"tone": "cold"}, headers=a_key),
        api.client.post(f"/strategies/{b_strategy['id']}/activate", headers=a_key),
    ]

    assert [answer.status_code for answer in refused] == [404] * len(refused)
    assert api.client.get("/leads", headers=a_key).json() == []
    assert api.client.get("/leads", params={"tag": "POSITIVE"}, headers=a_key).json() == []
    assert api.client.get("/strategies", headers=a_key).json() == []
    # B's data is as B left it.
    assert api.client.get(f"/workspaces/{b_id}", headers=b_key).json()["name"] == "B"
    assert api.client.get(f"/strategies/{b_strategy['id']}", headers=b_key).json()["status"] == "DRAFT"
    b_view = api.client.get(lead_url, headers=b_key).json()
    assert (b_view["stage"], b_view["opted_out_at"], b_view["threads"]) == ("NEW", None, [])
    assert api.client.get(f"/workspaces/{b_id}/api-keys", headers=b_key).json()[0]["revoked_at"] is None
    # A call placed with A's key for B's lead's number is A's own lead, not B's.
    assert api.client.post("/calls", json={**CALL_REQUEST, "phone": b_lead["phone"]}, headers=a_key).status_code == 202
    with Session(api.engine) as db:
        leads = db.exec(select(Lead).where(Lead.phone == b_lead["phone"]).order_by(Lead.workspace_id)).all()
        assert [(lead.workspace_id, lead.id == b_lead["id"]) for lead in leads] == [(a_id, False), (b_id, True)]
        assert db.exec(select(PolicyDecision).where(PolicyDecision.lead_id == b_lead["id"])).all() == []


# --- strategies ------------------------------------------------------------------------------------------


def test_strategy_versions_are_numbered_and_activating_one_rolls_the_previous_back(api):
    _, key = api.workspace()
    first = api.client.post("/strategies", json={"tone": "warm", "followup_preset": "GENTLE"}, headers=key).json()
    second = api.client.post(
        "/strategies", json={"tone": "brisk", "interval_overrides": {"intervals_hours": [4, 24]}}, headers=key
    ).json()

    assert (first["version_number"], second["version_number"]) == (1, 2)
    assert api.client.post(f"/strategies/{first['id']}/activate", headers=key).json()["status"] == "ACTIVE"
    activated = api.client.post(f"/strategies/{second['id']}/activate", headers=key).json()
    listed = api.client.get("/strategies", headers=key).json()

    assert activated["status"] == "ACTIVE" and activated["activated_at"]
    assert [(s["version_number"], s["status"]) for s in listed] == [(2, "ACTIVE"), (1, "ROLLED_BACK")]


def test_an_active_or_retired_version_cannot_be_edited_but_a_draft_can(api):
    _, key = api.workspace()
    draft = api.client.post("/strategies", json={"tone": "warm"}, headers=key).json()
    edited = api.client.patch(f"/strategies/{draft['id']}", json={"tone": "warmer"}, headers=key)
    api.client.post(f"/strategies/{draft['id']}/activate", headers=key)

    refused = api.client.patch(f"/strategies/{draft['id']}", json={"tone": "cold"}, headers=key)
    api.client.post(f"/strategies/{api.client.post('/strategies', json={}, headers=key).json()['id']}/activate", headers=key)
    retired = api.client.patch(f"/strategies/{draft['id']}", json={"objectives": "more"}, headers=key)

    assert edited.json()["tone"] == "warmer"
    assert refused.status_code == 409 and "create a new version" in refused.json()["detail"]
    assert retired.status_code == 409
    assert api.client.get(f"/strategies/{draft['id']}", headers=key).json()["tone"] == "warmer"


def test_bad_interval_overrides_are_refused(api):
    _, key = api.workspace()
    answer = api.client.post("/strategies", json={"interval_overrides": {"intervals_hours": [0]}}, headers=key)

    assert answer.status_code == 422
    assert "intervals_hours" in answer.json()["detail"][0]["loc"]


# --- leads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"phone": "0415 555 0123"}, "phone", "E.164"),
        ({"stage": "WON"}, "stage", "unknown stage 'WON'"),
        ({"tags": ["HAPPY"]}, "tags", "unknown tag 'HAPPY'"),
        ({"tags": ["T" * 10_000]}, "tags", "(10000 characters)"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ],
)
def test_bad_lead_fields_are_refused_naming_the_field(api, fields, field, message):
    _, key = api.workspace()
    answer = api.client.post("/leads", json={"phone": "+14155550123", **fields}, headers=key)

    assert answer.status_code == 422
    error = answer.json()["detail"][0]
    assert error["loc"][-1] == field
    assert message in error["msg"]
    assert len(error["msg"]) < 400  # the message quotes a long value only in part


def test_a_phone_is_one_lead_per_workspace(api):
    _, key = api.workspace()
    api.lead(key)

    assert api.client.post("/leads", json={"phone": "+14155550123"}, headers=key).status_code == 409


def test_an_import_stores_the_good_rows_and_reports_each_bad_one_by_row_and_field(api):
    _, key = api.workspace()
    api.lead(key, phone="+14155550100")
    csv_text = "\n".join(
        [
            "phone,name,consent,stage,tags,timezone",
            "+14155550101,Ann,yes,NEW,POSITIVE;INTENT_APPOINTMENT,",
            "0415 555 0102,Bad phone,,,,",
            "+14155550103,Bad stage,,WON,,",
            f"+14155550104,Long tag,,,{'X' * 10_000},",
            "+14155550105,Dan,no,CONTACTED,NO_RESPONSE,America/Chicago",
            "+14155550100,Existing,,,,",
            "+14155550101,Repeated,,,,",
            "+14155550106,Bad zone,,,,Mars/Olympus",
            "+14155550107,Do not call,,SUPPRESSED,,",
        ]
    )

    answer = api.client.post("/leads/import", content=csv_text, headers={**key, "Content-Type": "text/csv"})

    report = answer.json()
    assert answer.status_code == 200
    assert report["created"] == 3
    assert [(e["row"], e["field"]) for e in report["errors"]] == [
        (2, "phone"),
        (3, "stage"),
        (4, "tags"),
        (6, "phone"),
        (7, "phone"),
        (8, "timezone"),
    ]
    assert "(10000 characters)" in report["errors"][2]["error"]
    stored = {lead["phone"]: lead for lead in api.client.get("/leads", headers=key).json()}
    assert set(stored) == {"+14155550100", "+14155550101", "+14155550105", "+14155550107"}
    assert stored["+14155550101"]["tags"] == ["INTENT_APPOINTMENT", "POSITIVE"] and stored["+14155550101"]["consent"] is True
    assert stored["+14155550105"]["timezone"] == "America/Chicago"
    assert stored["+14155550107"]["opted_out_at"] is not None  # a do-not-call row is an opt-out


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [("name\nAnn", "phone column"), ("phone,colour\n+14155550101,red", "unknown column 'colour'")],
)
def test_an_import_with_a_bad_header_stores_nothing(api, csv_text, message):
    _, key = api.workspace()
    answer = api.client.post("/leads/import", content=csv_text, headers={**key, "Content-Type": "text/csv"})

    assert answer.status_code == 422 and message in answer.json()["detail"]
    assert api.client.get("/leads", headers=key).json() == []


def test_leads_are_listed_by_stage_and_by_tag(api):
    _, key = api.workspace()
    api.lead(key, phone="+14155550101", tags=["POSITIVE", "INTENT_PURCHASE"])
    api.lead(key, phone="+14155550102", stage="CONTACTED", tags=["NO_RESPONSE"])
    api.lead(key, phone="+14155550103", stage="CONTACTED", tags=["POSITIVE"])

    def phones(**params) -> list[str]:
        return [lead["phone"] for lead in api.client.get("/leads", params=params, headers=key).json()]

    assert phones(stage="CONTACTED") == ["+14155550102", "+14155550103"]
    assert phones(tag="POSITIVE") == ["+14155550101", "+14155550103"]
    assert phones(stage="CONTACTED", tag="POSITIVE") == ["+14155550103"]
    assert phones(tag="INTENT_APPOINTMENT") == []
    assert api.client.get("/leads", params={"stage": "WON"}, headers=key).status_code == 422
    assert api.client.get("/leads", params={"tag": "HAPPY"}, headers=key).status_code == 422


# --- history and opt-out --------------------------------------------------------------------------------


def test_history_written_as_turns_reads_back_as_messages_or_turns_without_loss(api):
    _, key = api.workspace()
    lead = api.lead(key)
    turns = [{"agent": "Hi, is this Alex?"}, {"user": "Yes.", "agent": "Great."}, {"user": "Call me Tuesday."}]

    written = api.client.post(f"/leads/{lead['id']}/history", json={"channel": "sms", "history": turns}, headers=key)
    as_messages = api.client.get(f"/leads/{lead['id']}/history", headers=key).json()["history"]
    as_turns = api.client.get(f"/leads/{lead['id']}/history", params={"format": "turns"}, headers=key).json()["history"]

    assert written.status_code == 201
    assert as_messages == [
        {"role": "assistant", "content": "Hi, is this Alex?"},
        {"role": "user", "content": "Yes."},
        {"role": "assistant", "content": "Great."},
        {"role": "user", "content": "Call me Tuesday."},
    ]
    assert as_turns == turns
    detail = api.client.get(f"/leads/{lead['id']}", headers=key).json()
    assert [(t["channel"], len(t["messages"])) for t in detail["threads"]] == [("sms", 4)]


def test_bad_history_items_are_refused_by_index(api):
    _, key = api.workspace()
    lead = api.lead(key)
    answer = api.client.post(
        f"/leads/{lead['id']}/history", json={"history": [{"user": "hi"}, {"role": "robot", "content": "x"}]}, headers=key
    )

    assert answer.status_code == 422 and "history[1].role" in answer.json()["detail"]
    assert api.client.get(f"/leads/{lead['id']}/history", headers=key).json()["history"] == []


@pytest.mark.parametrize("how", ["sms_stop", "api"])
def test_an_opt_out_by_sms_stop_or_api_is_final(api, how):
    _, key = api.workspace()
    lead = api.lead(key)
    if how == "sms_stop":
        answer = api.client.post(
            f"/leads/{lead['id']}/history", json={"channel": "sms", "history": [{"role": "user", "content": "STOP"}]}, headers=key
        )
        assert answer.json()["opted_out"] is True
    else:
        api.client.post(f"/leads/{lead['id']}/opt-out", headers=key)

    call = api.client.post("/calls", json=CALL_REQUEST, headers=key)
    later = api.client.post("/calls", json=CALL_REQUEST, headers=key)
    reimport = api.client.post(
        "/leads/import", content="phone,stage\n+14155550123,NEW", headers={**key, "Content-Type": "text/csv"}
    )

    assert (call.status_code, call.json()["reason_code"], call.json()["next_allowed_at"]) == (422, "opted_out", None)
    assert later.status_code == 422
    assert reimport.json()["created"] == 0
    shown = api.client.get(f"/leads/{lead['id']}", headers=key).json()
    assert shown["stage"] == "SUPPRESSED" and shown["opt_out_source"] == ("sms" if how == "sms_stop" else "api")
    assert api.dialer.dialed == []


# --- POST /calls under the policy -----------------------------------------------------------------------


def test_a_web_form_call_is_decided_and_recorded_before_it_is_dialed(api):
    placed = place_call(api.client, CALL_REQUEST)

    assert api.dialer.decision_stored_first == [True]
    with Session(api.engine) as db:
        call = db.get(Call, placed["id"])
        lead = db.get(Lead, call.lead_id)
        decisions = db.exec(select(PolicyDecision).where(PolicyDecision.lead_id == call.lead_id)).all()
        decision = db.exec(select(PolicyDecision).where(PolicyDecision.call_id == call.id)).one()
    assert (lead.phone, lead.consent, lead.consent_source) == (CALL_REQUEST["phone"], True, "web_form")
    # Decided twice: when the request came, and again right before the dial (the one linked to the call).
    assert [d.allow_send for d in decisions] == [True, True] and decision.id == max(d.id for d in decisions)
    assert decision.allow_send and decision.reason_code == "allowed"
    assert [rule["rule"] for rule in decision.rule_trace] == ["opt_out", "consent", "follow_up", "budget", "calling_hours"]


def test_a_call_outside_the_callee_hours_is_scheduled_for_the_window(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = datetime.now(UTC)
    # Some whole-hour zone where it is now between 01:00 and 06:59: outside 8:00-21:00 for hours.
    night = next(f"Etc/GMT{-o:+d}" for o in range(-12, 15) if 1 <= (now + timedelta(hours=o)).hour <= 6)
    dialer = RecordingDialer()
    with TestClient(create_app(make_settings(db_url, enforce_calling_hours=True), dialer=dialer)) as client:
        dialer.engine = client.app.state.services.engine
        api = DomainApi(client, dialer)
        _, key = api.workspace()
        lead = api.lead(key, timezone=night)
        answer = client.post("/calls", json=CALL_REQUEST, headers=key)
        decisions = client.get(f"/leads/{lead['id']}/decisions", headers=key).json()

    body = answer.json()
    next_at = datetime.fromisoformat(body["scheduled_for"])
    assert (answer.status_code, body["status"]) == (202, "scheduled")
    assert next_at.astimezone(ZoneInfo(night)).time().isoformat() == "08:00:00"
    assert timedelta(0) < next_at - now < timedelta(hours=8)
    assert [(d["allow_send"], d["reason_code"]) for d in decisions] == [(False, "outside_calling_hours")]
    assert dialer.dialed == []


def test_a_follow_up_too_soon_is_refused_and_both_decisions_are_kept(api):
    _, key = api.workspace()
    strategy = api.client.post("/strategies", json={"followup_preset": "BALANCED"}, headers=key).json()
    api.client.post(f"/strategies/{strategy['id']}/activate", headers=key)
    lead = api.lead(key)

    first = place_call(api.client, CALL_REQUEST, headers=key)
    end_call(api.client, first["id"])
    second = api.client.post("/calls", json=CALL_REQUEST, headers=key)
    decisions = api.client.get(f"/leads/{lead['id']}/decisions", headers=key).json()

    assert (second.status_code, second.json()["status"]) == (202, "scheduled")
    with Session(api.engine) as db:
        created_at = db.get(Call, first["id"]).created_at
    assert datetime.fromisoformat(second.json()["scheduled_for"]) == created_at + timedelta(hours=24)
    # The request's decision, the one right before the dial, and the follow-up's.
    assert [(d["allow_send"], d["reason_code"]) for d in decisions] == [
        (False, "followup_too_soon"),
        (True, "allowed"),
        (True, "allowed"),
    ]
    assert decisions[1]["call_id"] == first["id"]
    with Session(api.engine) as db:
        call = db.get(Call, first["id"])
        assert (call.workspace_id, call.lead_id, call.strategy_version_id) == (
            lead_workspace(db, lead["id"]),
            lead["id"],
            strategy["id"],
        )


def lead_workspace(db: Session, lead_id: int) -> int:
    return db.get(Lead, lead_id).workspace_id


def test_a_red_budget_refuses_calls(api):
    workspace_id, key = api.workspace(budget_tier="RED")
    api.lead(key)

    answer = api.client.post("/calls", json=CALL_REQUEST, headers=key)

    assert (answer.status_code, answer.json()["reason_code"], answer.json()["next_allowed_at"]) == (429, "budget_paused", None)
    api.client.patch(f"/workspaces/{workspace_id}", json={"budget_tier": "GREEN"}, headers=key)
    assert api.client.post("/calls", json=CALL_REQUEST, headers=key).json()["status"] == "queued"


def test_a_workspace_call_records_the_operator_attestation(api):
    workspace_id, key = api.workspace()
    lead = api.lead(key, consent=False)

    assert api.client.post("/calls", json=CALL_REQUEST, headers=key).status_code == 202
    attestations = api.client.get(f"/workspaces/{workspace_id}/attestations", headers=key).json()
    assert [(a["lead_id"], a["granted"], a["operator_id"].startswith("api_key:wsk_")) for a in attestations] == [
        (lead["id"], True, True)
    ]


def test_the_next_call_is_given_the_earlier_conversation(api):
    _, key = api.workspace()
    lead = api.lead(key)
    earlier = [{"user": "We spoke last week about the panels on the barn roof.", "agent": "Yes, I remember."}]
    api.client.post(f"/leads/{lead['id']}/history", json={"channel": "sms", "history": earlier}, headers=key)

    placed = place_call(api.client, CALL_REQUEST, headers=key)
    context = api.dialer.context_of(placed["id"])
    assert "panels on the barn roof" in context.agent_instructions
    assert "earlier conversation" in context.agent_instructions.lower()


def test_the_one_active_version_rule_is_kept_by_the_database_itself(api):
    workspace_id, _ = api.workspace()
    with Session(api.engine) as db:
        db.add(StrategyVersion(workspace_id=workspace_id, version_number=1, status="ACTIVE"))
        db.add(StrategyVersion(workspace_id=workspace_id, version_number=2, status="ACTIVE"))
        with pytest.raises(sa.exc.IntegrityError):
            db.commit()
