"""A call someone answered is never `no_answer` (issue 13, 3b): in LLM mode the rule-based agent hears
nobody, so the provisional outcome comes from what the caller said; one who hangs up mid-conversation
is stored as such (caller_hung_up, the answers so far) and is not retried as unanswered."""

from uuid import uuid4

from call_queue.schedule_rules import retry_kind
from models.call_job import CallJob
from models.call_request import CallRequest
from models.enums import CallOutcome, CallStatus, EndReason
from prompts.context_builder import build_context
from tests.support import BOOK_MEETING_REQUEST
from voice_worker.call_session import CallSession


def llm_mode_session(*caller_lines: str, answers: dict | None = None) -> CallSession:
    """A call whose turns the LLM took: the transcript has them, the rule-based agent never did."""
    request = CallRequest.model_validate(BOOK_MEETING_REQUEST)
    context = build_context(request)
    session = CallSession(job=CallJob(id=uuid4(), context_id=context.id, phone=request.phone), context=context)
    session.add_agent_line(context.opening_line)
    for line in caller_lines:
        session.add_caller_line(line)
        session.add_agent_line("I see. And how many people work there?")
    session.tool_answers.update(answers or {})
    return session


def test_nobody_speaking_is_still_no_answer():
    assert llm_mode_session().provisional_outcome() is CallOutcome.NO_ANSWER


def test_a_caller_who_talked_then_hung_up_is_not_no_answer_and_not_retried():
    session = llm_mode_session("yes this is alex", "we have about twenty people", answers={"team size": "twenty"})

    outcome = session.provisional_outcome()
    session.record_end(outcome, EndReason.CALLER_HUNG_UP)

    assert outcome is CallOutcome.NOT_INTERESTED
    assert (session.outcome, session.end_reason) == (CallOutcome.NOT_INTERESTED, EndReason.CALLER_HUNG_UP)
    assert session.answers == {"team size": "twenty"}
    assert retry_kind(CallStatus.COMPLETED, outcome, None) is None


def test_what_the_caller_said_decides_in_llm_mode():
    assert llm_mode_session("please stop calling me").provisional_outcome() is CallOutcome.OPTED_OUT
    assert llm_mode_session("yes", "call me back tomorrow at three").provisional_outcome() is CallOutcome.CALLBACK_REQUESTED
