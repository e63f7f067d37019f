"""The agent's side of a text conversation with a lead: the rule-based walk, and what OpenAI is given.

The rule-based walk is the SMS sibling of the voice agent's (voice_worker/rule_agent.py) and uses
the same intent rules (prompts/caller_intent.py): thank the lead and ask their name, then offer a
visit; a day or time books it, "call me" promises a callback. Each reply carries its `step`, stored
with the message, so the next text knows where the conversation stands without any other state.
Every line comes from templates/inbound.md in the workspace's language.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from models.enums import CallOutcome, Language
from prompts.caller_intent import Intent, classify, mentions_time, normalize
from prompts.inbound_context import inbound_line
from prompts.untrusted import FENCE_RULE, fence, fragment, spoken

NAME_MAX = 60
TIME_MAX = 80
REPLY_MAX = 480
HELP_WORDS = frozenset({"help", "info", "עזרה"})
# "call" alone is the keyword the ask-time text offers ("reply CALL"); the voice rules cover "call me back".
_CALLBACK_WORDS = re.compile(r"^(call|call me|תתקשרו)$|\bcall me\b")
_NAME_PREFIX = re.compile(
    r"^(hi|hello|hey)?[ ,]*(my name is|my name's|i am|i'm|im|this is|it's|its|name's|שמי|קוראים לי)\s+", re.IGNORECASE
)


class SmsStep(StrEnum):
    MISSED_CALL_TEXTBACK = "missed_call_textback"
    CALL_FOLLOWUP = "call_followup"
    ASK_NAME = "ask_name"
    ASK_TIME = "ask_time"
    BOOKED = "booked"
    CALLBACK = "callback"
    DONE = "done"
    HELP = "help"
    STOP_CONFIRMED = "stop_confirmed"
    OPENAI = "openai"


@dataclass(frozen=True)
class SmsReply:
    text: str
    step: SmsStep
    # What the lead's text told us, for the lead's record.
    name: str | None = None
    meeting_time: str | None = None
    outcome: CallOutcome | None = None


def is_help(text: str) -> bool:
    return normalize(text) in HELP_WORDS


def help_reply(language: Language, business: str) -> SmsReply:
    return SmsReply(inbound_line(language, "help", business=business), SmsStep.HELP)


def stop_confirmation(language: Language, business: str) -> SmsReply:
    return SmsReply(inbound_line(language, "stop_confirmation", business=business), SmsStep.STOP_CONFIRMED)


def name_in(text: str) -> str | None:
    """The name in "my name is alex" / "Alex Smith" / "שמי דנה": at most three words, without the lead-in."""
    words = _NAME_PREFIX.sub("", " ".join(text.split())).strip(" .!,").split()
    if not words or len(words) > 3 or any(ch.isdigit() for ch in "".join(words)):
        return None
    return fragment(" ".join(w[:1].upper() + w[1:] for w in words), NAME_MAX) or None


def proposes_time(text: str) -> bool:
    return classify(text) is Intent.TIME_PROPOSAL or mentions_time(text)


def asks_for_callback(text: str) -> bool:
    return classify(text) is Intent.CALLBACK or _CALLBACK_WORDS.search(normalize(text)) is not None


def rule_based_reply(
    text: str, *, language: Language, business: str, lead_name: str | None, last_step: SmsStep | None
) -> SmsReply:
    """The next text of the conversation, from the lead's text and the step the agent's last text was at."""
    if asks_for_callback(text):
        return SmsReply(inbound_line(language, "sms_callback"), SmsStep.CALLBACK, outcome=CallOutcome.CALLBACK_REQUESTED)
    if proposes_time(text):
        when = spoken(text, TIME_MAX)
        return SmsReply(
            inbound_line(language, "sms_booked", time=when), SmsStep.BOOKED, meeting_time=when, outcome=CallOutcome.MEETING_BOOKED
        )
    if last_step is SmsStep.ASK_NAME and lead_name is None:
        name = name_in(text)
        return SmsReply(inbound_line(language, "sms_ask_time"), SmsStep.ASK_TIME, name=name)
    if last_step in (SmsStep.ASK_TIME, SmsStep.BOOKED, SmsStep.CALLBACK, SmsStep.DONE):
        return SmsReply(inbound_line(language, "sms_done"), SmsStep.DONE)
    # A first text, or the answer to the missed-call text-back: thank them, then what we still need.
    ask = "sms_ask_name" if lead_name is None else "sms_ask_time"
    step = SmsStep.ASK_NAME if lead_name is None else SmsStep.ASK_TIME
    return SmsReply(inbound_line(language, "sms_reply", business=business, next=inbound_line(language, ask)), step)


SMS_SYSTEM = (
    "You are the virtual assistant of a business, answering a customer by text message because the team "
    "could not take their call. Write in {language}. Reply with one short text message (at most three "
    "sentences, no markdown, no links): find out what they need, ask for their name if you do not have it, "
    "then offer to book a visit at a day and time that suits them or to have someone call them back. Never "
    "invent prices, availability or promises; say the team will confirm. If anyone asks whether you are a "
    "person or an AI, say honestly that you are an AI assistant. The conversation so far is in the messages; "
    "do not repeat questions already answered.\n\n"
)
_LANGUAGE_NAMES = {Language.ENGLISH: "English", Language.HEBREW: "Hebrew"}


def openai_messages(
    history: Sequence[dict[str, str]], *, language: Language, business: str, trade: str | None
) -> list[dict[str, str]]:
    """The chat for OpenAI: the rules, the business fenced as data, then the whole conversation, oldest first."""
    facts = "\n\n".join(fence(label, value) for label, value in (("business_name", business), ("trade", trade or "")) if value)
    system = SMS_SYSTEM.format(language=_LANGUAGE_NAMES[language]) + FENCE_RULE + "\n\n" + facts
    return [{"role": "system", "content": system}, *({"role": m["role"], "content": m["content"]} for m in history)]
