"""The context of an inbound call: the agent answers the business's own number.

Greet with the workspace's ai_greeting_template, learn what the caller needs (the greeting asks),
take their name, then book a visit or promise a callback. The lines come from
templates/inbound.md in the workspace's language; the business's own texts (its name, trade and
greeting) are spoken through `untrusted.spoken` and fenced in the system prompt like form fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources

from models.context import ContextInstance
from models.domain import DEFAULT_AUTO_RESPONSE, DEFAULT_GREETING_TEMPLATE, Workspace
from models.enums import AgentStyle, CallGoal, ContextSource, Language, TargetAudience
from prompts.context_builder import AGENT_OUTCOMES
from prompts.template_engine import parse_sections, render
from prompts.untrusted import FENCE_RULE, fence, fragment, spoken

GREETING_MAX = 300
BUSINESS_MAX = 60
TRADE_MAX = 60
NEED_KEY = "caller need"
OBJECTION_KEYS = ("price", "timing", "competitor", "trust", "not_interested", "send_info")
# The seed writes its placeholder [TRADE]; {trade} and {business} are accepted too.
_GREETING_SLOTS = re.compile(r"\[TRADE\]|\{trade\}|\[BUSINESS\]|\{business\}", re.IGNORECASE)

_SYSTEM = """# Role
You are the virtual assistant answering the phone for a business whose team could not take this call. You are live on the phone: everything you write is spoken aloud, and the caller hears nothing else. If anyone asks whether you are a person or an AI, say honestly that you are an AI assistant. Speak {{language_name}}.

# Call flow
1. Greeting: say the opening_line script block; it asks what the caller needs. Listen, then call record_answer with the question "caller need" and a short version of their problem.
2. Ask for their name (the name_question script block) and call record_answer with the question "name".
3. Offer to book a visit (the commitment_question script block). If they give a day and time, repeat it back, call record_answer with the question "meeting time", and end with the outcome "meeting_booked". If they would rather be called back, end with the outcome "callback_requested". If they only wanted to leave their details, end with the outcome "info_collected".
4. Close: say the closing_script script block, then call end_call with the outcome and a one-sentence summary of what the caller needs.

# Rules
<rules/>

# Fenced data
<fence_rule/>

## Business
<business_fields/>

## Script
<script/>
"""
_LANGUAGE_NAMES = {Language.ENGLISH: "English", Language.HEBREW: "Hebrew"}


@lru_cache
def inbound_sections() -> Mapping[str, str]:
    return parse_sections(resources.files("prompts").joinpath("templates", "inbound.md").read_text(encoding="utf-8"))


def inbound_line(language: Language, name: str, **values: str) -> str:
    """One line of templates/inbound.md in the language, its variables filled."""
    return " ".join(render(inbound_sections()[f"{language.value}.{name}"], values).split())


def business_name(workspace: Workspace) -> str:
    return fragment(workspace.name, BUSINESS_MAX) or "the business"


def greeting(workspace: Workspace) -> str:
    trade = fragment(workspace.trade or "", TRADE_MAX) or ("your" if workspace.language is Language.ENGLISH else "")
    business = business_name(workspace)

    def slot(match: re.Match[str]) -> str:
        return business if "business" in match.group(0).lower() else trade

    template = workspace.ai_greeting_template
    if template == DEFAULT_GREETING_TEMPLATE and workspace.language is not Language.ENGLISH:
        # The business kept the (English) default: greet with the default of its own language.
        return spoken(inbound_line(workspace.language, "default_greeting", trade=trade or business), GREETING_MAX)
    text = _GREETING_SLOTS.sub(slot, template)
    # "your your needs" when no trade is set: the seed's template reads "your [TRADE] needs".
    return spoken(re.sub(r"\b(your) your\b", r"\1", text), GREETING_MAX)


def auto_response(workspace: Workspace) -> str:
    """The missed-call text; the default in the workspace's language when the business kept the default."""
    if workspace.auto_response_message == DEFAULT_AUTO_RESPONSE and workspace.language is not Language.ENGLISH:
        return inbound_line(workspace.language, "default_auto_response")
    return workspace.auto_response_message


def _system_prompt(workspace: Workspace, script: Mapping[str, object]) -> str:
    fields = {"business_name": workspace.name, "trade": workspace.trade}
    blocks = []
    for label, value in script.items():
        if isinstance(value, dict):
            value = "\n".join(f"{key}: {reply}" for key, reply in value.items())
        blocks.append(fence(label, str(value), kind="SCRIPT"))
    rules = render(
        resources.files("prompts").joinpath("templates", "rules.md").read_text(encoding="utf-8"),
        {"outcomes": ", ".join(AGENT_OUTCOMES)},
    )
    text = render(
        _SYSTEM,
        {
            "language_name": _LANGUAGE_NAMES[workspace.language],
            "rules": rules.strip(),
            "fence_rule": FENCE_RULE,
            "business_fields": "\n\n".join(fence(label, value) for label, value in fields.items() if value),
            "script": "\n\n".join(blocks),
        },
    )
    return text.strip() + "\n"


def build_inbound_context(workspace: Workspace, caller_phone: str) -> ContextInstance:
    """The context the agent answers an inbound call on; same workspace, same lines."""
    language = workspace.language
    business = business_name(workspace)
    opening = greeting(workspace)
    questions = [inbound_line(language, "name_question")]
    commitment = inbound_line(language, "commitment")
    closing = inbound_line(language, "closing", business=business)
    handlers = {key: inbound_line(language, key, business=business) for key in OBJECTION_KEYS}
    script = {
        "opening_line": opening,
        "name_question": questions[0],
        "objection_handlers": handlers,
        "commitment_question": commitment,
        "closing_script": closing,
    }
    return ContextInstance(
        phone=caller_phone,
        product=fragment(workspace.trade or workspace.name, TRADE_MAX) or business,
        offer_pricing="",
        target=TargetAudience.CONSUMER,
        goal=CallGoal.BOOK_MEETING,
        style=AgentStyle.FRIENDLY,
        agent_instructions=_system_prompt(workspace, script),
        opening_line=opening,
        qualification_questions=questions,
        objection_handlers=handlers,
        commitment_question=commitment,
        closing_script=closing,
        source=ContextSource.TEMPLATE,
        language=language,
        opening_question=NEED_KEY,
    )
