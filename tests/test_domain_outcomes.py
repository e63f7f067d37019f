"""After a call: the lead's stage and tags, the meeting, the stored transcript, the next call's history."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from after_call.lead_updates import apply_call_outcome, call_tags, merged_tags, next_stage
from after_call.outcome_writer import record_finished_call
from models.call_job import utcnow
from models.conversation_history import as_messages, messages_to_turns, turns_to_messages
from models.domain import ChatMessage, ConversationThread, Lead, Meeting
from models.enums import CallOutcome, CallStatus, EndReason, LeadStage, LeadTag, OptOutSource
from models.tables import Call
from tests.support import CALL_REQUEST, DomainApi, place_call
from voice_worker.call_record import finished_call_record
from voice_worker.call_session import CallSession

# --- stage and tags, as tables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "outcome", "expected"),
    [
        (LeadStage.NEW, CallOutcome.MEETING_BOOKED, LeadStage.OUTCOME_APPOINTMENT),
        (LeadStage.NEW, CallOutcome.ORDER_CONFIRMED, LeadStage.OUTCOME_PURCHASE),
        (LeadStage.NEW, CallOutcome.QUALIFIED, LeadStage.QUALIFIED),
        (LeadStage.NEW, CallOutcome.NO_ANSWER, LeadStage.CONTACTED),
        (LeadStage.NEW, CallOutcome.VOICEMAIL, LeadStage.CONTACTED),
        (LeadStage.CONTACTED, CallOutcome.CALLBACK_REQUESTED, LeadStage.ENGAGED),
        (LeadStage.QUALIFIED, CallOutcome.NOT_INTERESTED, LeadStage.CLOSED_LOST),  # the lead decided
        (LeadStage.OUTCOME_APPOINTMENT, CallOutcome.NO_ANSWER, LeadStage.OUTCOME_APPOINTMENT),  # no step back
        (LeadStage.QUALIFIED, CallOutcome.INFO_COLLECTED, LeadStage.QUALIFIED),
        (LeadStage.CLOSED_LOST, CallOutcome.QUALIFIED, LeadStage.QUALIFIED),  # re-engaged
        (LeadStage.TAKE_OVER, CallOutcome.MEETING_BOOKED, LeadStage.TAKE_OVER),  # a person has it
        (LeadStage.TAKE_OVER, CallOutcome.OPTED_OUT, LeadStage.SUPPRESSED),
        (LeadStage.OUTCOME_PURCHASE, CallOutcome.OPTED_OUT, LeadStage.SUPPRESSED),
        (LeadStage.SUPPRESSED, CallOutcome.MEETING_BOOKED, LeadStage.SUPPRESSED),  # final
    ],
)
def test_the_outcome_moves_the_stage(current, outcome, expected):
    assert next_stage(current, outcome) is expected


def call_with(
    outcome: CallOutcome,
    caller_lines: list[str],
    status: CallStatus = CallStatus.COMPLETED,
    end_reason: EndReason = EndReason.AGENT_COMPLETED,
) -> Call:
    transcript = [{"role": "agent", "text": "Hello!", "at": utcnow().isoformat()}]
    transcript += [{"role": "caller", "text": text, "at": utcnow().isoformat()} for text in caller_lines]
    return Call(
        id="c", context_id="x", phone="+14155550123", status=status, outcome=outcome, end_reason=end_reason, transcript=transcript
    )


@pytest.mark.parametrize(
    ("outcome", "said", "expected"),
    [
        (CallOutcome.MEETING_BOOKED, ["yes sure", "tuesday at ten"], {LeadTag.POSITIVE, LeadTag.INTENT_APPOINTMENT}),
        (CallOutcome.ORDER_CONFIRMED, ["yes please"], {LeadTag.POSITIVE, LeadTag.INTENT_PURCHASE}),
        (CallOutcome.NO_ANSWER, [], {LeadTag.NO_RESPONSE}),
        (CallOutcome.VOICEMAIL, [], {LeadTag.NO_RESPONSE}),
        (
            CallOutcome.NOT_INTERESTED,
            ["that's too expensive", "not interested"],
            {LeadTag.RESISTIVE, LeadTag.STRATEGY_REVIEW_REQUIRED},
        ),
        (CallOutcome.NOT_INTERESTED, ["not interested"], {LeadTag.RESISTIVE}),
        (CallOutcome.OPTED_OUT, ["stop calling me"], {LeadTag.RESISTIVE}),
        (CallOutcome.INFO_COLLECTED, ["we have twelve staff"], {LeadTag.NEUTRAL}),
        (CallOutcome.QUALIFIED, ["I want to buy it"], {LeadTag.POSITIVE, LeadTag.INTENT_PURCHASE}),
    ],
)
def test_tags_come_from_the_outcome_and_from_what_was_said(outcome, said, expected):
    assert call_tags(call_with(outcome, said)) == expected


def test_a_caller_who_hangs_up_is_tagged_disconnect():
    call = call_with(CallOutcome.NO_ANSWER, ["hello?"], end_reason=EndReason.CALLER_HUNG_UP)
    assert LeadTag.DISCONNECT in call_tags(call)


def test_how_the_last_contact_went_is_replaced_and_intents_accumulate():
    before = ["INTENT_APPOINTMENT", "POSITIVE", "STRATEGY_REVIEW_REQUIRED"]
    assert merged_tags(before, {LeadTag.NO_RESPONSE}) == ["INTENT_APPOINTMENT", "NO_RESPONSE", "STRATEGY_REVIEW_REQUIRED"]


# --- history shapes ---------------------------------------------------------------------------------


MESSAGE_HISTORIES = [
    [],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "who is this"}],
    [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
    ],
    [{"role": "system", "content": "call resumed"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "שלום"}],
]


@pytest.mark.parametrize("messages", MESSAGE_HISTORIES)
def test_messages_survive_a_trip_through_turns_unchanged(messages):
    assert turns_to_messages(messages_to_turns(messages)) == messages


def test_turns_become_messages_in_speaking_order_and_back():
    turns = [{"user": "שלום", "agent": "היי!"}, {"agent": "Still there?"}, {"user": "yes"}]
    messages = turns_to_messages(turns)

    assert messages == [
        {"role": "user", "content": "שלום"},
        {"role": "assistant", "content": "היי!"},
        {"role": "assistant", "content": "Still there?"},
        {"role": "user", "content": "yes"},
    ]
    assert messages_to_turns(messages) == turns


def test_a_mixed_list_is_read_item_by_item():
    assert as_messages([{"user": "a", "agent": "b"}, {"role": "user", "content": "c"}]) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


# --- through the worker: POST /calls, the call ends, the lead moves on -----------------------------------


def finish_call(
    api: DomainApi,
    call_id: str,
    outcome: CallOutcome,
    reason: EndReason,
    lines: list[tuple[str, str]],
    answers: dict | None = None,
) -> Call:
    """What the voice worker does when a call ends, with the transcript given."""
    store = api.client.app.state.services.store
    job = api.client.portal.call(store.load_job, call_id)
    context = api.client.portal.call(store.load_context, job.context_id)
    session = CallSession(job=job, context=context)
    for n, (role, text) in enumerate(lines):
        if role == "caller":
            session.add_caller_line(
                text, timing={"stt_final_ms": 180.0 + n, "llm_first_token_ms": 400.0, "first_audio_sent_ms": 650.0 + n}
            )
        else:
            session.add_agent_line(text)
    session.tool_answers.update(answers or {})
    session.record_end(outcome, reason)
    services = api.client.app.state.services
    return api.client.portal.call(record_finished_call, services, finished_call_record(session, services.settings), session.job)


BOOKING = [
    ("agent", "Hi Alex, this is Brightside. Do you have a minute?"),
    ("caller", "yes sure"),
    ("agent", "When could we meet?"),
    ("caller", "tuesday at ten"),
    ("agent", "Booked for Tuesday at ten. Goodbye!"),
]


def test_a_booked_meeting_moves_the_lead_and_keeps_every_utterance_with_its_timing(api):
    _, key = api.workspace()
    lead = api.lead(key)
    created = place_call(api.client, CALL_REQUEST, headers=key)

    record = finish_call(
        api, created["id"], CallOutcome.MEETING_BOOKED, EndReason.AGENT_COMPLETED, BOOKING, {"meeting_time": "tuesday at ten"}
    )

    assert record.lead_id == lead["id"]  # the outcome write kept the call's links
    shown = api.client.get(f"/leads/{lead['id']}", headers=key).json()
    assert shown["stage"] == "OUTCOME_APPOINTMENT"
    assert shown["tags"] == ["INTENT_APPOINTMENT", "POSITIVE"]
    assert [(m["slot_text"], m["link"], m["call_id"]) for m in shown["meetings"]] == [
        ("tuesday at ten", CALL_REQUEST["booking_link"], created["id"])
    ]
    [thread] = shown["threads"]
    assert thread["channel"] == "voice"
    assert [(m["role"], m["content"]) for m in thread["messages"]] == [
        ("assistant" if role == "agent" else "user", text) for role, text in BOOKING
    ]
    caller_turn, agent_reply = thread["messages"][1], thread["messages"][2]
    assert caller_turn["timing"]["stt_final_ms"] == 181.0 and caller_turn["call_id"] == created["id"]
    assert agent_reply["response_time_ms"] == 651 and agent_reply["delivery_status"] == "delivered"
    assert agent_reply["model_used"] == "local"


def test_the_next_call_knows_what_was_said_in_the_last_one(api):
    _, key = api.workspace()
    api.lead(key)
    first = place_call(api.client, CALL_REQUEST, headers=key)
    finish_call(
        api,
        first["id"],
        CallOutcome.CALLBACK_REQUESTED,
        EndReason.AGENT_COMPLETED,
        [("agent", "Hello!"), ("caller", "call me back on friday about the barn roof")],
    )

    second = place_call(api.client, CALL_REQUEST, headers=key)
    context = api.dialer.context_of(second["id"])
    assert "friday about the barn roof" in context.agent_instructions


def test_a_voice_opt_out_suppresses_the_lead_for_good(api):
    created = place_call(api.client, CALL_REQUEST)  # the web form's default workspace
    finish_call(api, created["id"], CallOutcome.OPTED_OUT, EndReason.OPT_OUT, [("agent", "Hi!"), ("caller", "stop calling me")])

    again = api.client.post("/calls", json=CALL_REQUEST)

    assert (again.status_code, again.json()["reason_code"]) == (422, "opted_out")
    with Session(api.engine) as db:
        lead = db.exec(select(Lead).where(Lead.phone == CALL_REQUEST["phone"])).one()
        assert (lead.stage, lead.opt_out_source) == (LeadStage.SUPPRESSED, OptOutSource.VOICE)
        opted_out_at = lead.opted_out_at
        # Even a later record saying "meeting booked" (a replayed journal entry, a bug) cannot undo it.
        db.add(
            Call(
                id="late",
                context_id="x",
                phone=lead.phone,
                lead_id=lead.id,
                workspace_id=lead.workspace_id,
                status=CallStatus.COMPLETED,
                outcome=CallOutcome.MEETING_BOOKED,
                created_at=utcnow() + timedelta(days=30),
            )
        )
        db.commit()
    apply_call_outcome(api.engine, "late")
    with Session(api.engine) as db:
        lead = db.exec(select(Lead).where(Lead.phone == CALL_REQUEST["phone"])).one()
        assert (lead.stage, lead.opted_out_at) == (LeadStage.SUPPRESSED, opted_out_at)
        assert db.exec(select(Meeting)).all() == []


def test_an_unanswered_call_tags_no_response_without_undoing_a_booked_meeting(api):
    _, key = api.workspace()
    lead = api.lead(key)
    first = place_call(api.client, CALL_REQUEST, headers=key)
    finish_call(
        api, first["id"], CallOutcome.MEETING_BOOKED, EndReason.AGENT_COMPLETED, BOOKING, {"meeting_time": "tuesday at ten"}
    )
    second = place_call(api.client, CALL_REQUEST, headers=key)
    finish_call(api, second["id"], CallOutcome.NO_ANSWER, EndReason.SILENCE_TIMEOUT, [("agent", "Hello? Are you still there?")])

    shown = api.client.get(f"/leads/{lead['id']}", headers=key).json()
    assert shown["stage"] == "OUTCOME_APPOINTMENT"
    assert shown["tags"] == ["INTENT_APPOINTMENT", "NO_RESPONSE"]
    assert len(shown["meetings"]) == 1


def test_storing_a_call_twice_does_not_duplicate_its_messages_or_meeting(api):
    _, key = api.workspace()
    lead = api.lead(key)
    created = place_call(api.client, CALL_REQUEST, headers=key)
    finish_call(
        api, created["id"], CallOutcome.MEETING_BOOKED, EndReason.AGENT_COMPLETED, BOOKING, {"meeting_time": "tuesday at ten"}
    )

    apply_call_outcome(api.engine, created["id"], "https://example.com/book")

    with Session(api.engine) as db:
        assert len(db.exec(select(ChatMessage).where(ChatMessage.lead_id == lead["id"])).all()) == len(BOOKING)
        assert len(db.exec(select(Meeting).where(Meeting.lead_id == lead["id"])).all()) == 1
        assert len(db.exec(select(ConversationThread).where(ConversationThread.lead_id == lead["id"])).all()) == 1
