"""A workspace that speaks Hebrew: its inbound context, the rule-based agent, its texts, and the local voice."""

from models.domain import Workspace
from models.enums import CallOutcome, EndReason, Language, LeadStage
from prompts.inbound_context import build_inbound_context
from tests.support import ALWAYS_CLOSED
from voice_worker.providers.espeak_synth import synthesize_async
from voice_worker.providers.selection import LOCAL_VOICES
from voice_worker.rule_agent import RuleBasedAgent

CALLER = "+972501234567"


def hebrew_workspace() -> Workspace:
    return Workspace(id=7, name="אינסטלציה כהן", trade="אינסטלציה", language=Language.HEBREW)


def test_a_hebrew_workspaces_inbound_context_is_in_hebrew():
    context = build_inbound_context(hebrew_workspace(), CALLER)

    assert context.language is Language.HEBREW
    assert context.opening_line.startswith("שלום") and "אינסטלציה" in context.opening_line
    assert context.qualification_questions == ["מה השם שלך, בבקשה?"]
    assert "אינסטלציה כהן" in context.closing_script
    assert "Speak Hebrew" in context.agent_instructions


def test_the_rule_based_agent_walks_a_hebrew_inbound_call_to_a_booked_visit():
    agent = RuleBasedAgent(build_inbound_context(hebrew_workspace(), CALLER))

    asked_name = agent.reply("הכיור במטבח דולף")
    asked_time = agent.reply("שמי דנה")
    booked = agent.reply("ביום שלישי בשעה 3")

    assert asked_name.text.startswith("תודה.") and "השם" in asked_name.text
    assert "ביקור" in asked_time.text
    assert booked.end_outcome is CallOutcome.MEETING_BOOKED and booked.text.startswith("מעולה")
    assert agent.answers["caller need"] == "הכיור במטבח דולף" and agent.answers["meeting_time"] == "ביום שלישי בשעה 3"


def test_a_hebrew_caller_who_asks_to_stop_is_opted_out_in_hebrew():
    agent = RuleBasedAgent(build_inbound_context(hebrew_workspace(), CALLER))

    reply = agent.reply("תפסיקו להתקשר אליי")

    assert (reply.end_outcome, reply.end_reason) == (CallOutcome.OPTED_OUT, EndReason.OPT_OUT)
    assert "לא נתקשר אליך שוב" in reply.text


def test_a_hebrew_workspace_texts_in_hebrew_and_hebrew_stop_suppresses(inbound):
    inbound.business(ALWAYS_CLOSED, language="he")

    inbound.text("הכיור דולף")
    inbound.text("הסר")

    first, confirmation = [m["body"] for m in inbound.texts_to()]
    assert first.startswith("תודה על ההודעה") and "מה השם שלך?" in first
    assert "הוסרת" in confirmation
    assert inbound.lead().stage is LeadStage.SUPPRESSED


def test_a_hebrew_workspace_that_kept_the_default_auto_response_texts_a_missed_caller_in_hebrew(inbound):
    inbound.business(ALWAYS_CLOSED, language="he")
    params = inbound.call_params()
    inbound.post("/twilio/voice", params)

    inbound.post("/twilio/voice/status", {**params, "CallStatus": "completed"})

    assert [m["body"] for m in inbound.texts_to()] == ["שלום! מצטערים שפספסנו את השיחה שלך. איך נוכל לעזור?"]


async def test_the_local_voice_speaks_hebrew():
    pcm, rate = await synthesize_async("שלום, במה אוכל לעזור?", LOCAL_VOICES[Language.HEBREW], 165, 50)

    assert rate > 0 and len(pcm) > rate  # more than half a second of 16-bit audio
    assert LOCAL_VOICES[Language.HEBREW] == "he"
