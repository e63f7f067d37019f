"""What every agent, the rule-based one included, takes literally from a workspace's strategy version.

A strategy (models.domain.StrategyVersion) is free text a business typed. The LLM reads all of it,
fenced in the system prompt (context_builder). The lines the agents speak are shaped by the parts
that can be read without a model:

- tone: the first style word it uses ("warm and relaxed" -> friendly) is the call's style;
- objectives: sentences ending in "?" are the qualification questions, in that order; without
  any, the template's questions about the topics the objectives name (decision, team, budget,
  timeline, need) are asked first, in the order they are named;
- objection_handling: lines such as "price: ..." (or timing, competitor, trust, not interested,
  send info) replace the agent's reply to that objection;
- cta_rules: a sentence ending in "?" is the call-to-action (commitment) question, and a line
  "closing: ..." is said before the goodbye.

Strategy text is as untrusted as a form field: what is spoken goes through `untrusted.spoken`, and
none of it is ever rendered as a template.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.context import ContextStrategy
from models.enums import AgentStyle
from prompts.untrusted import spoken

QUESTION_MAX = 200
REPLY_MAX = 300
CLOSING_MAX = 200

# The first of these words in the tone names the style (the earliest wins when several appear).
_TONE_WORDS: dict[AgentStyle, tuple[str, ...]] = {
    AgentStyle.FRIENDLY: ("friendly", "warm", "casual", "relaxed", "cheerful", "upbeat", "informal"),
    AgentStyle.PROFESSIONAL: ("professional", "formal", "courteous", "businesslike"),
    AgentStyle.ASSERTIVE: ("assertive", "direct", "confident", "bold", "persuasive"),
    AgentStyle.LUXURY: ("luxury", "luxurious", "refined", "elegant", "gracious", "premium", "upscale", "sophisticated"),
    AgentStyle.CONCISE: ("concise", "brief", "succinct", "efficient", "to the point"),
}

# What an objection is called in objection_handling, mapped onto the context's objection keys.
_OBJECTION_NAMES: dict[str, str] = {
    "price": "price",
    "pricing": "price",
    "cost": "price",
    "expensive": "price",
    "too expensive": "price",
    "timing": "timing",
    "time": "timing",
    "busy": "timing",
    "not now": "timing",
    "competitor": "competitor",
    "competitors": "competitor",
    "competition": "competitor",
    "other provider": "competitor",
    "trust": "trust",
    "who are you": "trust",
    "who is this": "trust",
    "not interested": "not_interested",
    "no interest": "not_interested",
    "send info": "send_info",
    "send information": "send_info",
    "send details": "send_info",
    "email": "send_info",
}
_CLOSING_NAMES = ("closing", "close", "goodbye")

# Topic: (words that put a template question under it, words that name it in the objectives).
_TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "decision": (
        ("decide", "decides", "decision", "approve", "approves", "sign off", "authorized", "right person", "who else", "role"),
        ("decision", "decides", "decide", "decision maker", "authority", "approve", "approval"),
    ),
    "team": (("team", "how many", "people", "employees"), ("team", "team size", "headcount", "employees", "company size")),
    "budget": (("budget",), ("budget", "spend", "spending")),
    "timeline": (
        ("when", "timeline", "get started", "in place", "start"),
        ("timeline", "timing", "start date", "how soon", "urgency", "when"),
    ),
    "need": (
        ("interested", "use it for", "get out of", "main thing", "cover", "need"),
        ("need", "needs", "use case", "interest", "pain", "motivation"),
    ),
}

_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s*")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_LABELLED = re.compile(r"^\s*([A-Za-z][A-Za-z _'-]{0,30}?)\s*[:=]\s*(.+)$")


def _lines(text: str) -> list[str]:
    return [stripped for line in text.splitlines() if (stripped := _BULLET.sub("", line).strip())]


def _sentences(text: str) -> list[str]:
    return [sentence.strip() for line in _lines(text) for sentence in _SENTENCE_END.split(line) if sentence.strip()]


def _label(name: str) -> str:
    words = re.sub(r"[_-]+", " ", name.lower()).split()
    if words and words[-1] in ("objection", "objections"):
        words = words[:-1]
    return " ".join(words)


def _first_position(text: str, words: Sequence[str]) -> int | None:
    hits = [m.start() for word in words if (m := re.search(rf"\b{re.escape(word)}\b", text))]
    return min(hits) if hits else None


def _question(sentence: str) -> str | None:
    """A sentence that asks something, as it would be said: "Always ask: would you...?" -> "Would you...?"."""
    if not sentence.endswith("?"):
        return None
    asked = sentence.rsplit(":", 1)[-1].strip() if ":" in sentence else sentence
    text = spoken(asked, QUESTION_MAX)
    if not text.endswith("?") or len(text) < 4:
        return None
    return text[0].upper() + text[1:]


def style_of(tone: str) -> AgentStyle | None:
    said = tone.lower()
    found = [(pos, style) for style, words in _TONE_WORDS.items() if (pos := _first_position(said, words)) is not None]
    return min(found, key=lambda hit: hit[0])[1] if found else None


def asked_questions(objectives: str) -> list[str]:
    return [question for sentence in _sentences(objectives) if (question := _question(sentence))]


def objection_replies(objection_handling: str) -> dict[str, str]:
    replies: dict[str, str] = {}
    for line in _lines(objection_handling):
        match = _LABELLED.match(line)
        key = _OBJECTION_NAMES.get(_label(match.group(1))) if match else None
        if match and key and key not in replies and (reply := spoken(match.group(2), REPLY_MAX)):
            replies[key] = reply
    return replies


def _topic_of(question: str) -> str | None:
    said = question.lower()
    found = [(pos, topic) for topic, (words, _) in _TOPICS.items() if (pos := _first_position(said, words)) is not None]
    return min(found)[1] if found else None


def ordered_by_topic(questions: Sequence[str], objectives: str) -> list[str]:
    """The template's questions, those on topics the objectives name first, in the order named."""
    said = objectives.lower()
    named = {topic: pos for topic, (_, words) in _TOPICS.items() if (pos := _first_position(said, words)) is not None}

    def rank(item: tuple[int, str]) -> tuple[int, int]:
        index, question = item
        topic = _topic_of(question)
        return (named[topic], index) if topic in named else (len(said) + 1, index)

    return [question for _, question in sorted(enumerate(questions), key=rank)]


@dataclass(frozen=True)
class StrategyLines:
    """The literal parts of one strategy version, parsed once per context."""

    style: AgentStyle | None = None
    questions: list[str] = field(default_factory=list)
    objectives: str = ""
    objection_replies: dict[str, str] = field(default_factory=dict)
    cta_question: str | None = None
    closing: str | None = None

    @classmethod
    def of(cls, strategy: ContextStrategy) -> StrategyLines:
        cta_question, closing = None, None
        for line in _lines(strategy.cta_rules):
            match = _LABELLED.match(line)
            if match and _label(match.group(1)) in _CLOSING_NAMES:
                if closing is None and not match.group(2).strip().endswith("?"):
                    closing = spoken(match.group(2), CLOSING_MAX) or None
                continue
            for sentence in _SENTENCE_END.split(line):
                if cta_question is None:
                    cta_question = _question(sentence.strip())
        return cls(
            style=style_of(strategy.tone),
            questions=asked_questions(strategy.objectives),
            objectives=strategy.objectives,
            objection_replies=objection_replies(strategy.objection_handling),
            cta_question=cta_question,
            closing=closing,
        )

    def qualification_questions(self, template_questions: Sequence[str], most: int) -> list[str]:
        """Which questions the call asks, in order: the strategy's own (topped up from the template's
        when it asks only one), else the template's ordered by the objectives' topics."""
        ordered = ordered_by_topic(template_questions, self.objectives)
        if len(self.questions) >= 2:
            chosen = list(self.questions)
        else:
            chosen = [*self.questions, *(q for q in ordered if q not in self.questions)]
        return chosen[:most]
