"""The rule-based agent walks the generated context and ends calls the way the caller leads it."""

import pytest

from models.call_request import CallRequest
from models.enums import CallGoal, CallOutcome, EndReason
from prompts.caller_intent import Intent, classify
from prompts.context_builder import build_context
from tests.support import BOOK_MEETING_REQUEST
from voice_worker.rule_agent import RuleBasedAgent


def agent_for(goal: str = "book_meeting") -> RuleBasedAgent:
    return RuleBasedAgent(build_context(CallRequest(**dict(BOOK_MEETING_REQUEST, goal=goal))))


@pytest.mark.parametrize(
    ("said", "intent"),
    [
        ("stop calling me", Intent.OPT_OUT),
        ("please take me off your list", Intent.OPT_OUT),
        ("no thanks i'm not interested", Intent.NOT_INTERESTED),
        ("call me back later i'm busy right now", Intent.CALLBACK),
        ("that's too expensive", Intent.PRICE),
        ("we already use another provider", Intent.COMPETITOR),
        ("who is this", Intent.TRUST),
        ("can you send me some information", Intent.SEND_INFO),
        ("tuesday at three pm works for me", Intent.TIME_PROPOSAL),
        ("yes sure i have a minute", Intent.YES),
        ("nope", Intent.NO),
        ("we have about twenty employees", Intent.OTHER),
    ],
)
def test_caller_intent(said, intent):
    assert classify(said) is intent


def test_booking_walks_opening_questions_commitment_and_closing():
    agent = agent_for()
    context = agent.context
    assert agent.opening() == context.opening_line

    first = agent.reply("yes sure i have a minute")
    assert context.qualification_questions[0] in first.text
    for i, _ in enumerate(context.qualification_questions):
        reply = agent.reply(f"answer number {i}")
        assert reply.end_outcome is None
    assert context.commitment_question in reply.text

    final = agent.reply("tuesday at three pm works for me")
    assert final.end_outcome is CallOutcome.MEETING_BOOKED
    assert context.closing_script in final.text
    assert list(agent.answers)[: len(context.qualification_questions)] == context.qualification_questions


def test_opt_out_at_any_point_ends_the_call_for_good():
    agent = agent_for()
    agent.reply("yes")
    reply = agent.reply("please stop calling me")
    assert reply.end_outcome is CallOutcome.OPTED_OUT
    assert reply.end_reason is EndReason.OPT_OUT
    assert agent.reply("hello?").text == ""


def test_objection_is_answered_from_the_context_and_the_question_asked_again():
    agent = agent_for()
    agent.reply("yes")
    question = agent.context.qualification_questions[0]
    reply = agent.reply("that sounds too expensive")
    assert agent.context.objection_handlers["price"] in reply.text
    assert question in reply.text
    assert reply.end_outcome is None


def test_two_refusals_end_as_not_interested():
    agent = agent_for()
    assert agent.reply("no thanks i'm not interested").end_outcome is None
    assert agent.reply("no really not interested").end_outcome is CallOutcome.NOT_INTERESTED


@pytest.mark.parametrize(
    ("goal", "commitment", "outcome"),
    [
        ("confirm_order", ["yes i confirm the order"], CallOutcome.ORDER_CONFIRMED),
        ("qualify_interest", ["yes that sounds good"], CallOutcome.QUALIFIED),
        # One refusal gets the not-interested handler; the second ends the call.
        ("confirm_order", ["no", "no"], CallOutcome.NOT_INTERESTED),
    ],
)
def test_goal_commitments(goal, commitment, outcome):
    agent = agent_for(goal)
    agent.reply("yes")
    for _ in agent.context.qualification_questions:
        agent.reply("fine")
    replies = [agent.reply(said) for said in commitment]
    assert [r.end_outcome for r in replies[:-1]] == [None] * (len(replies) - 1)
    assert replies[-1].end_outcome is outcome


def test_collect_info_ends_once_the_questions_are_answered():
    agent = agent_for("collect_info")
    assert agent.context.goal is CallGoal.COLLECT_INFO
    agent.reply("yes")
    replies = [agent.reply("some answer") for _ in agent.context.qualification_questions]
    assert replies[-1].end_outcome is CallOutcome.INFO_COLLECTED


def test_taking_over_mid_call_continues_with_the_next_question():
    agent = agent_for()
    agent.take_over(caller_turns=2)  # the LLM had the opening and the first question
    reply = agent.reply("we have twenty people")
    assert agent.context.qualification_questions[2] in reply.text or agent.context.commitment_question in reply.text


def test_provisional_outcome_of_a_call_that_drops():
    agent = agent_for()
    assert agent.provisional_outcome() is CallOutcome.NO_ANSWER
    agent.reply("yes")
    assert agent.provisional_outcome() is CallOutcome.NOT_INTERESTED


def test_every_opt_out_phrase_is_recognized_by_the_classifier_and_expected_by_the_recognizer():
    from prompts.caller_intent import OPT_OUT_PHRASES
    from voice_worker.providers.speech_vocabulary import CALLER_PHRASES

    assert OPT_OUT_PHRASES
    for phrase in OPT_OUT_PHRASES:
        assert classify(phrase) is Intent.OPT_OUT, phrase
        assert classify(f"well {phrase} thanks") is Intent.OPT_OUT, phrase
        assert phrase in CALLER_PHRASES, phrase
