"""Texts to a workspace's number: stored in the lead's SMS thread and answered, STOP and HELP, a person taking over."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from after_call.sms_followup import send_followup
from control_api.main import create_app
from control_api.telephony.sms_conversation import agent_may_reply
from models.call_job import CallJob
from models.call_request import CallRequest
from models.database import init_db, make_engine
from models.domain import ChatMessage, Lead, Meeting, Workspace
from models.enums import CallOutcome, CallStatus, DeliveryStatus, LeadStage, OptOutSource, SenderType
from models.session_store import MemorySessionStore
from models.settings import Settings
from models.tables import Call
from prompts.context_builder import build_context
from services.twilio_account import TwilioAccount
from tests.support import (
    ALWAYS_CLOSED,
    BOOK_MEETING_REQUEST,
    BUSINESS_NUMBER,
    INBOUND_CALLERS,
    INBOUND_PUBLIC_URL,
    TWILIO_FROM_NUMBER,
    InboundTwilio,
    make_settings,
    services_for,
    serving,
)


def replies(inbound) -> list[str]:
    return [m["body"] for m in inbound.texts_to()]


def test_a_text_is_stored_and_answered_by_the_rule_based_agent_from_the_number_texted(inbound):
    inbound.business(ALWAYS_CLOSED)

    answer = inbound.text("Hi, my kitchen sink is leaking")

    assert answer.text.strip().endswith("<Response />")  # the reply went out over REST, not in the TwiML
    [sent] = inbound.texts_to()
    assert sent["from"] == BUSINESS_NUMBER
    assert "Acme Plumbing" in sent["body"] and "name" in sent["body"]
    received, reply = inbound.sms_thread()
    assert (received.sender_type, received.content, received.delivery_status) == (
        SenderType.LEAD,
        "Hi, my kitchen sink is leaking",
        DeliveryStatus.RECEIVED,
    )
    assert (reply.sender_type, reply.external_message_id, reply.delivery_status) == (
        SenderType.AGENT,
        sent["sid"],
        DeliveryStatus.QUEUED,
    )
    assert reply.model_used == "rules" and reply.response_time_ms is not None
    assert inbound.lead().stage is LeadStage.ENGAGED and inbound.lead().consent is False  # answering is not consent to be called


def test_a_conversation_walks_from_the_need_to_the_name_to_a_booked_visit(inbound):
    inbound.business(ALWAYS_CLOSED)

    inbound.text("my boiler stopped working")
    inbound.text("my name is alex")
    inbound.text("tuesday at 3pm please")

    texts = replies(inbound)
    assert len(texts) == 3
    assert "day and time" in texts[1] and "tuesday at 3pm" in texts[2]
    lead = inbound.lead()
    assert (lead.name, lead.stage) == ("Alex", LeadStage.OUTCOME_APPOINTMENT)
    with Session(inbound.engine) as db:
        assert [m.slot_text for m in db.exec(select(Meeting).where(Meeting.lead_id == lead.id))] == ["tuesday at 3pm please"]
    steps = [m.message_metadata.get("step") for m in inbound.sms_thread() if m.sender_type is SenderType.AGENT]
    assert steps == ["ask_name", "ask_time", "booked"]


def test_stop_suppresses_the_lead_for_good_and_is_confirmed_once(inbound):
    key = inbound.business(ALWAYS_CLOSED)
    inbound.text("hello")

    inbound.text("STOP")
    inbound.text("stop")
    inbound.text("actually can you come tomorrow at 10am")

    texts = replies(inbound)
    assert len(texts) == 2 and "unsubscribed" in texts[1]
    lead = inbound.lead()
    assert (lead.stage, lead.opt_out_source) == (LeadStage.SUPPRESSED, OptOutSource.SMS) and lead.opted_out_at is not None
    assert len(inbound.sms_thread()) == 6  # every text from the lead is kept, only two were answered
    moved = inbound.client.patch(f"/leads/{lead.id}", json={"stage": "ENGAGED"}, headers=key)
    assert moved.status_code == 409 and "stage" in moved.json()["detail"]
    blocked = inbound.client.post(f"/leads/{lead.id}/messages", json={"content": "Are you sure?"}, headers=key)
    assert blocked.status_code == 409 and len(replies(inbound)) == 2


def test_help_answers_with_the_business_name(inbound):
    inbound.business(ALWAYS_CLOSED)

    inbound.text("HELP")

    [text] = replies(inbound)
    assert text.startswith("Acme Plumbing") and "STOP" in text
    assert inbound.lead().stage is not LeadStage.SUPPRESSED


def test_forged_and_replayed_texts_are_refused_and_twilios_retry_is_not_answered_twice(inbound):
    inbound.business(ALWAYS_CLOSED)
    params = inbound.text_params("my sink is leaking")
    signature = RequestValidator(inbound.emulator.auth_token).compute_signature(INBOUND_PUBLIC_URL + "/twilio/sms", params)

    forged = inbound.post("/twilio/sms", params, token="not-the-auth-token")
    other_body = inbound.client.post("/twilio/sms", data={**params, "Body": "STOP"}, headers={"X-Twilio-Signature": signature})
    first = inbound.client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
    retried = inbound.client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})

    assert (forged.status_code, other_body.status_code, first.status_code, retried.status_code) == (403, 403, 200, 200)
    assert len(replies(inbound)) == 1 and len(inbound.sms_thread()) == 2
    assert inbound.lead().stage is not LeadStage.SUPPRESSED


def test_a_text_to_a_number_nobody_registered_is_not_found(inbound):
    inbound.business(ALWAYS_CLOSED)

    answer = inbound.post("/twilio/sms", inbound.text_params("hi", To="+14155550111"))

    assert answer.status_code == 404 and replies(inbound) == []


def test_a_person_takes_over_and_the_agent_stays_silent_while_they_handle_it(inbound):
    key = inbound.business(ALWAYS_CLOSED, ai_takeover_delay_seconds=3600)
    inbound.text("my sink is leaking")
    lead_id = inbound.lead().id

    moved = inbound.client.patch(f"/leads/{lead_id}", json={"stage": "TAKE_OVER"}, headers=key)
    sent = inbound.client.post(
        f"/leads/{lead_id}/messages",
        json={"content": "Hi, this is Dana from Acme. When can we come?", "sender_name": "Dana"},
        headers=key,
    )
    inbound.text("tomorrow morning works")

    assert moved.status_code == 200 and moved.json()["stage"] == "TAKE_OVER" and moved.json()["taken_over_at"]
    assert sent.status_code == 201 and sent.json()["sender_type"] == "human" and sent.json()["sender_name"] == "Dana"
    texts = inbound.texts_to()
    assert [t["body"] for t in texts][1:] == ["Hi, this is Dana from Acme. When can we come?"]  # the agent said nothing more
    assert texts[1]["from"] == BUSINESS_NUMBER
    human = [m for m in inbound.sms_thread() if m.sender_type is SenderType.HUMAN]
    assert [(m.content, m.external_message_id) for m in human] == [(texts[1]["body"], texts[1]["sid"])]
    assert inbound.lead().stage is LeadStage.TAKE_OVER
    history = inbound.client.get(f"/leads/{lead_id}/history", headers=key).json()["history"]
    assert [m["role"] for m in history] == ["user", "assistant", "assistant", "user"]


def test_the_agent_steps_back_in_once_the_person_has_been_silent_for_the_takeover_delay(inbound):
    key = inbound.business(ALWAYS_CLOSED, ai_takeover_delay_seconds=0)
    inbound.text("my sink is leaking")
    lead_id = inbound.lead().id
    inbound.client.patch(f"/leads/{lead_id}", json={"stage": "TAKE_OVER"}, headers=key)

    inbound.text("hello? anyone there")

    assert len(replies(inbound)) == 2
    lead = inbound.lead()
    assert (lead.stage, lead.taken_over_at) == (LeadStage.ENGAGED, None)


def test_patch_lead_refuses_an_unknown_stage_naming_the_field(inbound):
    key = inbound.business(ALWAYS_CLOSED)
    inbound.text("hi")

    answer = inbound.client.patch(f"/leads/{inbound.lead().id}", json={"stage": "PARTY"}, headers=key)

    assert answer.status_code == 422 and "stage" in answer.text


def test_the_replys_delivery_status_follows_twilios_callbacks(inbound):
    inbound.business(ALWAYS_CLOSED)
    inbound.text("my sink is leaking")
    [sent] = inbound.texts_to()
    report = {
        "AccountSid": inbound.emulator.account_sid,
        "MessageSid": sent["sid"],
        "To": inbound.caller,
        "From": BUSINESS_NUMBER,
    }

    inbound.post("/twilio/message-status", {**report, "MessageStatus": "delivered"})
    late = inbound.post("/twilio/message-status", {**report, "MessageStatus": "sent"})  # out of order: ignored

    assert late.json()["delivery_status"] == "delivered"
    with Session(inbound.engine) as db:
        reply = db.exec(select(ChatMessage).where(ChatMessage.external_message_id == sent["sid"])).one()
        assert reply.delivery_status is DeliveryStatus.DELIVERED


class FakeChatCompletions:
    """OpenAI's chat completions endpoint on loopback: records each request, answers one short text."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        self.requests.append(await request.json())
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "gpt-test-sms",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Sorry about the leak! What's your name?"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333},
            }
        )


def test_with_openai_configured_the_reply_is_written_from_the_whole_history_and_its_usage_recorded(
    tmp_path, monkeypatch, twilio_emulator
):
    monkeypatch.chdir(tmp_path)
    fake = FakeChatCompletions()
    with serving(fake.app) as openai_url:
        settings = make_settings(
            f"sqlite:///{tmp_path / 'sms-openai.db'}",
            public_base_url=INBOUND_PUBLIC_URL,
            twilio_from_number=TWILIO_FROM_NUMBER,
            openai_api_key="sk-test",
            openai_base_url=f"{openai_url}/v1",
            llm_provider="openai",
            **{name.lower(): value for name, value in twilio_emulator.env().items()},
        )
        with TestClient(create_app(settings)) as client:
            inbound = InboundTwilio(client, twilio_emulator.emulator)
            inbound.business(ALWAYS_CLOSED)
            inbound.text("my kitchen sink is leaking")
            inbound.text("it's getting worse")

    assert replies(inbound) == ["Sorry about the leak! What's your name?"] * 2
    second = fake.requests[1]["messages"]
    assert second[0]["role"] == "system" and "Acme Plumbing" in second[0]["content"]
    assert [(m["role"], m["content"]) for m in second[1:]] == [
        ("user", "my kitchen sink is leaking"),
        ("assistant", "Sorry about the leak! What's your name?"),
        ("user", "it's getting worse"),
    ]
    reply = [m for m in inbound.sms_thread() if m.sender_type is SenderType.AGENT][-1]
    assert reply.model_used == "gpt-test-sms" and reply.response_time_ms is not None
    assert reply.token_usage["total_tokens"] == 333


async def test_the_follow_up_after_an_outbound_call_is_a_message_in_the_leads_sms_thread(tmp_path, twilio_emulator):
    settings = Settings(
        _env_file=None,
        twilio_account_sid=twilio_emulator.emulator.account_sid,
        twilio_auth_token=twilio_emulator.emulator.auth_token,
        twilio_from_number=TWILIO_FROM_NUMBER,
        twilio_api_base_url=twilio_emulator.base_url,
        public_base_url=INBOUND_PUBLIC_URL,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'followup.db'}")
    init_db(engine)
    phone = next(INBOUND_CALLERS)
    account = TwilioAccount(settings)
    services = services_for(settings, MemorySessionStore(), engine, account)
    try:
        with Session(engine) as db:
            lead = Lead(workspace_id=1, external_id=phone, phone=phone, consent=True)
            db.add(lead)
            db.commit()
            db.refresh(lead)
        context = build_context(CallRequest(**dict(BOOK_MEETING_REQUEST, phone=phone)))
        job = CallJob(context_id=context.id, phone=phone)
        await services.store.save_call(job, context)
        record = Call(
            id=str(job.id),
            context_id=str(context.id),
            phone=phone,
            goal=context.goal,
            status=CallStatus.COMPLETED,
            outcome=CallOutcome.MEETING_BOOKED,
            workspace_id=1,
            lead_id=lead.id,
        )
        with Session(engine) as db:
            db.add(record)
            db.commit()
            db.refresh(record)

        assert await send_followup(services, account, record) == "sent"
    finally:
        await account.aclose()
        await services.http.aclose()

    [sent] = [m for m in twilio_emulator.emulator.messages() if m["to"] == phone]
    with Session(engine) as db:
        [message] = db.exec(select(ChatMessage).where(ChatMessage.lead_id == lead.id)).all()
    assert (message.content, message.external_message_id, message.delivery_status) == (
        context.sms_message,
        sent["sid"],
        DeliveryStatus.QUEUED,
    )
    assert message.message_metadata == {"step": "call_followup", "call_id": record.id}
    engine.dispose()


def test_a_lead_who_texted_stop_gets_no_text_back_after_a_missed_call(inbound):
    inbound.business(ALWAYS_CLOSED)
    inbound.text("STOP")
    params = inbound.call_params()
    inbound.post("/twilio/voice", params)

    missed = inbound.post("/twilio/voice/status", {**params, "CallStatus": "completed"})

    assert missed.json()["missed"] is True
    assert len(replies(inbound)) == 1  # only STOP's confirmation


def test_the_takeover_delay_counts_from_the_persons_last_word_with_a_set_clock():
    taken_over = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    workspace = Workspace(id=1, name="Acme", ai_takeover_delay_seconds=60)
    lead = Lead(workspace_id=1, external_id="x", phone="+14155550123", stage=LeadStage.TAKE_OVER, taken_over_at=taken_over)
    last_human = taken_over + timedelta(seconds=30)

    assert not agent_may_reply(lead, workspace, None, taken_over + timedelta(seconds=59))
    assert agent_may_reply(lead, workspace, None, taken_over + timedelta(seconds=60))
    assert not agent_may_reply(lead, workspace, last_human, taken_over + timedelta(seconds=60))
    assert agent_may_reply(lead, workspace, last_human, last_human + timedelta(seconds=60))
    assert agent_may_reply(Lead(workspace_id=1, external_id="y", phone="+14155550124"), workspace, None, taken_over)
