"""Calls to a workspace's own number: TwiML answers, signature checks, the record, and the missed-call text-back.

Twilio's posts are signed with the real RequestValidator against PUBLIC_BASE_URL (as Twilio signs
the URL it was given); texts go out through the real twilio client to the REST emulator.
"""

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator

from control_api.main import create_app
from models.database import make_engine
from models.domain import Lead
from models.enums import CallDirection, CallOutcome, CallStatus, DeliveryStatus, EndReason, LeadStage
from models.tables import Call
from services.stream_credential import stream_token
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import CallerLine
from tests.support import (
    ALWAYS_CLOSED,
    ALWAYS_OPEN,
    BUSINESS_NUMBER,
    BUSINESS_OWN_PHONE,
    INBOUND_CALLERS,
    INBOUND_PUBLIC_URL,
    TWILIO_FROM_NUMBER,
    make_settings,
    serving,
    stream_of,
    twiml,
)


def test_outside_business_hours_the_agent_answers_with_the_outbound_calls_stream_credential(inbound):
    inbound.business(ALWAYS_CLOSED)
    params = inbound.call_params()

    root = twiml(inbound.post("/twilio/voice", params))

    url, stream_params = stream_of(root)
    assert url == "ws://127.0.0.1:9/ws"
    call = inbound.call_row(params["CallSid"])
    assert stream_params == {"call_id": call.id, "token": stream_token(call.id, "test-secret")}
    assert (call.direction, call.status, call.phone, call.business_phone) == (
        CallDirection.INBOUND,
        CallStatus.PENDING,
        inbound.caller,
        BUSINESS_NUMBER,
    )
    assert (call.caller_city, call.caller_state, call.caller_country) == ("SAN FRANCISCO", "CA", "US")
    assert call.started_at is not None and call.lead_id == inbound.lead().id
    context = inbound.client.get(f"/contexts/{call.context_id}")
    assert context.status_code == 200
    assert "plumbing" in context.json()["opening_line"] and context.json()["opening_question"] == "caller need"


def test_a_number_without_forward_to_is_answered_by_the_agent_even_in_business_hours(inbound):
    inbound.business(ALWAYS_OPEN, forward_to=None)

    root = twiml(inbound.post("/twilio/voice", inbound.call_params()))

    assert root.find("./Connect/Stream") is not None and root.find("./Dial") is None


def test_within_business_hours_the_business_phone_rings_first_then_the_agent_takes_an_unanswered_call(inbound):
    inbound.business(ALWAYS_OPEN)
    params = inbound.call_params()

    dial = twiml(inbound.post("/twilio/voice", params)).find("./Dial")

    assert dial is not None and dial.find("Number").text == BUSINESS_OWN_PHONE
    assert dial.get("timeout") == "20" and dial.get("method") == "POST"
    action = urlsplit(dial.get("action"))
    call_id = parse_qs(action.query)["call_id"][0]
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{INBOUND_PUBLIC_URL}/twilio/voice/dial-result"

    result = {**params, "DialCallStatus": "no-answer", "CallStatus": "in-progress"}
    root = twiml(inbound.post(f"/twilio/voice/dial-result?call_id={call_id}", result))

    assert stream_of(root)[1]["call_id"] == call_id
    # Twilio retrying the voice webhook now must not ring the business a second time.
    assert twiml(inbound.post("/twilio/voice", params)).find("./Dial") is None


def test_a_call_the_business_answers_is_recorded_without_an_agent_outcome_or_text(inbound):
    inbound.business(ALWAYS_OPEN)
    params = inbound.call_params()
    call_id = parse_qs(urlsplit(twiml(inbound.post("/twilio/voice", params)).find("./Dial").get("action")).query)["call_id"][0]

    answer = inbound.post(
        f"/twilio/voice/dial-result?call_id={call_id}",
        {**params, "DialCallStatus": "completed", "DialCallDuration": "42", "CallStatus": "in-progress"},
    )

    assert twiml(answer).find("Hangup") is not None
    call = inbound.call_row(params["CallSid"])
    assert (call.status, call.outcome, call.telephony_status, call.duration_seconds) == (
        CallStatus.COMPLETED,
        None,
        "forwarded",
        42,
    )
    assert call.direction is CallDirection.INBOUND  # kept from the row written when the call came in
    assert inbound.texts_to() == []


def test_forged_and_replayed_voice_webhooks_are_refused(inbound):
    inbound.business(ALWAYS_CLOSED)
    params = inbound.call_params()
    signature = RequestValidator(inbound.emulator.auth_token).compute_signature(INBOUND_PUBLIC_URL + "/twilio/voice", params)

    forged = inbound.post("/twilio/voice", params, token="not-the-auth-token")
    unsigned = inbound.client.post("/twilio/voice", data=params)
    other_caller = inbound.client.post(
        "/twilio/voice", data={**params, "From": "+14155550199"}, headers={"X-Twilio-Signature": signature}
    )
    other_url = inbound.client.post(
        "/twilio/voice/status", data={**params, "CallStatus": "completed"}, headers={"X-Twilio-Signature": signature}
    )

    assert [r.status_code for r in (forged, unsigned, other_caller, other_url)] == [403, 403, 403, 403]
    with Session(inbound.engine) as db:
        assert db.exec(select(Call)).all() == []


def test_twilio_retrying_the_same_call_gets_the_same_call_not_a_second_one(inbound):
    inbound.business(ALWAYS_CLOSED)
    params = inbound.call_params()

    first = stream_of(twiml(inbound.post("/twilio/voice", params)))[1]
    again = stream_of(twiml(inbound.post("/twilio/voice", params)))[1]

    assert first == again
    with Session(inbound.engine) as db:
        assert len(db.exec(select(Call)).all()) == 1


def test_a_call_to_a_number_nobody_registered_is_not_found(inbound):
    inbound.business(ALWAYS_CLOSED)

    answer = inbound.post("/twilio/voice", inbound.call_params(To="+14155550111"))

    assert answer.status_code == 404 and "+14155550111" not in answer.text


def test_a_released_number_is_answered_no_more(inbound):
    key = inbound.business(ALWAYS_CLOSED)
    numbers_url = f"/workspaces/{inbound.workspace_id}/numbers"
    [number] = inbound.client.get(numbers_url, headers=key).json()
    inbound.client.patch(f"{numbers_url}/{number['id']}", json={"status": "released"}, headers=key)

    answer = inbound.post("/twilio/voice", inbound.call_params())

    assert answer.status_code == 404


def test_a_caller_who_hangs_up_while_the_business_rings_gets_the_auto_response_once(inbound):
    inbound.business(ALWAYS_OPEN, auto_response_message="Sorry we missed you at Acme! What do you need?")
    params = inbound.call_params()
    call_id = parse_qs(urlsplit(twiml(inbound.post("/twilio/voice", params)).find("./Dial").get("action")).query)["call_id"][0]
    hung_up = {**params, "DialCallStatus": "canceled", "CallStatus": "completed", "CallDuration": "7"}

    inbound.post(f"/twilio/voice/dial-result?call_id={call_id}", hung_up)
    inbound.post(f"/twilio/voice/dial-result?call_id={call_id}", hung_up)  # Twilio's retry
    inbound.post("/twilio/voice/status", {**params, "CallStatus": "completed"})

    texts = inbound.texts_to()
    assert [(t["from"], t["body"]) for t in texts] == [(BUSINESS_NUMBER, "Sorry we missed you at Acme! What do you need?")]
    call = inbound.call_row(params["CallSid"])
    assert (call.outcome, call.end_reason, call.sms_sent, call.duration_seconds) == (
        CallOutcome.NO_ANSWER,
        EndReason.CALLER_HUNG_UP,
        True,
        7,
    )
    [message] = inbound.sms_thread()
    assert (message.content, message.external_message_id) == ("Sorry we missed you at Acme! What do you need?", texts[0]["sid"])
    assert message.message_metadata["step"] == "missed_call_textback"
    assert inbound.lead().stage is LeadStage.CONTACTED


def test_a_caller_who_hangs_up_before_the_agent_picks_up_is_a_missed_call(inbound):
    inbound.business(ALWAYS_CLOSED)
    params = inbound.call_params()
    twiml(inbound.post("/twilio/voice", params))

    status = inbound.post("/twilio/voice/status", {**params, "CallStatus": "completed", "CallDuration": "3"})

    assert status.status_code == 200 and status.json()["missed"] is True
    assert [t["body"] for t in inbound.texts_to()] == ["Hi! Sorry we missed your call. How can we help?"]
    assert inbound.call_row(params["CallSid"]).status is CallStatus.COMPLETED


def test_no_text_back_when_the_business_turned_auto_response_off(inbound):
    inbound.business(ALWAYS_CLOSED, auto_response_enabled=False)
    params = inbound.call_params()
    twiml(inbound.post("/twilio/voice", params))

    inbound.post("/twilio/voice/status", {**params, "CallStatus": "completed"})

    assert inbound.texts_to() == []
    assert inbound.call_row(params["CallSid"]).outcome is CallOutcome.NO_ANSWER


def test_the_text_backs_delivery_status_follows_twilios_callbacks(inbound):
    inbound.business(ALWAYS_CLOSED)
    params = inbound.call_params()
    twiml(inbound.post("/twilio/voice", params))
    inbound.post("/twilio/voice/status", {**params, "CallStatus": "completed"})
    [text] = inbound.texts_to()

    delivered = {
        "AccountSid": inbound.emulator.account_sid,
        "MessageSid": text["sid"],
        "MessageStatus": "delivered",
        "To": inbound.caller,
        "From": BUSINESS_NUMBER,
    }
    answer = inbound.post("/twilio/message-status", delivered)

    assert answer.status_code == 200, answer.text
    [message] = inbound.sms_thread()
    assert message.delivery_status is DeliveryStatus.DELIVERED and message.delivered_at is not None
    forged = inbound.post("/twilio/message-status", {**delivered, "MessageStatus": "failed"}, token="forged")
    assert forged.status_code == 403
    assert inbound.sms_thread()[0].delivery_status is DeliveryStatus.DELIVERED


async def call_over_ws(
    tmp_path, emulator_server, lines: list[CallerLine], silence_seconds: float = 3
) -> tuple[dict, object, str, str]:
    """Ring the business number (signed like Twilio), then be the caller on /ws; returns the stored call as the API shows it."""
    settings = make_settings(
        f"sqlite:///{tmp_path / 'inbound-e2e.db'}",
        public_base_url=INBOUND_PUBLIC_URL,
        twilio_from_number=TWILIO_FROM_NUMBER,
        silence_timeout_seconds=silence_seconds,
        **{name.lower(): value for name, value in emulator_server.env().items()},
    )
    caller = next(INBOUND_CALLERS)
    with serving(create_app(settings)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            created = (await http.post("/workspaces", json={"name": "Acme Plumbing"})).json()
            key = {"Authorization": f"Bearer {created['api_key']}"}
            workspace_id = created["workspace"]["id"]
            await http.patch(
                f"/workspaces/{workspace_id}/business-settings",
                json={"business_hours": ALWAYS_CLOSED, "trade": "plumbing"},
                headers=key,
            )
            await http.post(f"/workspaces/{workspace_id}/numbers", json={"phone_number": BUSINESS_NUMBER}, headers=key)
            params = {
                "AccountSid": emulator_server.emulator.account_sid,
                "CallSid": "CA" + caller[1:].ljust(32, "0"),
                "From": caller,
                "To": BUSINESS_NUMBER,
                "CallStatus": "ringing",
                "FromCity": "OAKLAND",
            }
            signature = RequestValidator(emulator_server.emulator.auth_token).compute_signature(
                INBOUND_PUBLIC_URL + "/twilio/voice", params
            )
            answer = await http.post("/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})
            _, stream = stream_of(twiml(answer))

            report = await SimulatedCaller(
                base_url.replace("http", "ws", 1) + "/ws", stream["call_id"], stream["token"], lines, call_sid=params["CallSid"]
            ).run()

            call: dict = {}
            for _ in range(100):  # the outcome is written right after the stream closes
                call = (await http.get(f"/calls/{stream['call_id']}", headers=key)).json()
                if call.get("status") in ("completed", "failed"):
                    break
                await asyncio.sleep(0.1)
    return call, report, caller, settings.database_url


async def test_the_agent_answers_an_inbound_caller_over_ws_and_books_a_visit(tmp_path, monkeypatch, twilio_emulator):
    monkeypatch.chdir(tmp_path)
    lines = [
        CallerLine("my kitchen sink is leaking"),
        CallerLine("my name is alex"),
        CallerLine("tuesday at three pm works for me"),
    ]

    call, report, caller, database_url = await call_over_ws(tmp_path, twilio_emulator, lines)

    assert report.hung_up_by == "agent"
    assert (call["status"], call["outcome"]) == ("completed", "meeting_booked")
    agent_lines = [e["text"] for e in call["transcript"] if e["role"] == "agent"]
    assert "plumbing" in agent_lines[0]  # the greeting template, with the workspace's trade
    assert any("name" in line for line in agent_lines)
    assert set(call["answers"]) >= {"caller need", "May I have your name, please?", "meeting_time"}
    assert "tuesday" in call["answers"]["meeting_time"]
    engine = make_engine(database_url)
    with Session(engine) as db:
        row = db.get(Call, call["id"])
        assert (row.direction, row.caller_city, row.business_phone) == (CallDirection.INBOUND, "OAKLAND", BUSINESS_NUMBER)
        assert row.duration_seconds and row.duration_seconds > 0
        lead = db.get(Lead, row.lead_id)
        assert lead.stage is LeadStage.OUTCOME_APPOINTMENT
    engine.dispose()
    # Not a missed call: nobody gets the auto-response.
    assert [m for m in twilio_emulator.emulator.messages() if m["to"] == caller] == []


async def test_a_caller_who_says_nothing_to_the_agent_is_a_missed_call_and_gets_the_text_back(
    tmp_path, monkeypatch, twilio_emulator
):
    monkeypatch.chdir(tmp_path)

    call, _report, caller, _ = await call_over_ws(tmp_path, twilio_emulator, [], silence_seconds=1)

    assert (call["outcome"], call["end_reason"]) == ("no_answer", "silence_timeout")
    assert [m["body"] for m in twilio_emulator.emulator.messages() if m["to"] == caller] == [
        "Hi! Sorry we missed your call. How can we help?"
    ]
