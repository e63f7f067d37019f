"""Call contexts whose spoken lines OpenAI writes, on top of the deterministic template context.

The template context (prompts/context_builder.py) is always built first, and it stays the answer
whenever OpenAI is not configured, times out, refuses, or answers anything but the schema. OpenAI
only rewrites the spoken lines (opening, questions, objection handlers, commitment question,
closing) in the call's style; everything that carries rules or exact data stays the template's:
the system prompt's rules, tools and fenced form fields, the SMS with its exact booking link.

What goes to OpenAI keeps the two trust zones apart: form fields travel only inside
`untrusted.fence` blocks, under the fence rule. What comes back is untrusted as well: each line goes
through `untrusted.spoken`, lines carrying a web address are dropped, and anything missing or
unusable is filled from the template, so the objection handlers always have their six keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, cast

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel, ConfigDict, ValidationError

from models.call_request import CallRequest
from models.context import ContextInstance, ContextStrategy
from models.enums import ContextSource
from models.log_config import get_logger
from models.settings import Settings
from prompts.context_builder import MAX_QUESTIONS, OBJECTION_KEYS, build_context
from prompts.untrusted import FENCE_RULE, fence, spoken

log = get_logger(__name__)

LINE_MAX = 300
QUESTION_MAX = 200
MAX_COMPLETION_TOKENS = 900
# The script blocks of the template's system prompt, in the order it quotes them.
SCRIPT_FIELDS = ("opening_line", "qualification_questions", "objection_handlers", "commitment_question", "closing_script")


class ObjectionLines(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price: str
    timing: str
    competitor: str
    trust: str
    not_interested: str
    send_info: str


class SpokenLines(BaseModel):
    """The structured output OpenAI must produce (strict JSON schema)."""

    model_config = ConfigDict(extra="forbid")
    opening_line: str
    qualification_questions: list[str]
    objection_handlers: ObjectionLines
    commitment_question: str | None
    closing_script: str


class _ReceivedLines(BaseModel):
    """What is accepted back: the same fields, each allowed to be missing (then the template's is used)."""

    opening_line: str | None = None
    qualification_questions: list[str] | None = None
    objection_handlers: dict[str, str] | None = None
    commitment_question: str | None = None
    closing_script: str | None = None


class UnusableAnswer(ValueError):
    """OpenAI answered, but not with lines we can use."""


SYSTEM_PROMPT = (
    "You write what a virtual assistant says on an outbound phone call made on behalf of a business. "
    "You receive draft lines and the business's form fields. Rewrite each draft line so it sounds natural "
    "when spoken in the requested style, keeping its meaning and purpose: the opening asks whether they have "
    "a minute, each qualification question stays one question ending with a question mark, each objection "
    "handler answers that objection and steers back to the goal, the commitment question asks for the goal, "
    "the closing says goodbye. Use only facts from the form fields; never invent prices, discounts, terms, "
    "dates or promises. Say numbers the way people say them. No lists, markdown, emojis, symbols or web "
    "addresses. One or two short sentences per line. Keep commitment_question null when the draft's is null.\n\n" + FENCE_RULE
)


def response_format() -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "spoken_lines", "strict": True, "schema": SpokenLines.model_json_schema()},
    }


def _draft(template: ContextInstance) -> dict[str, Any]:
    return {name: getattr(template, name) for name in SCRIPT_FIELDS}


def build_messages(request: CallRequest, template: ContextInstance) -> list[dict[str, str]]:
    fields = {
        "product": request.product,
        "offer_pricing": request.offer_pricing,
        "name": request.name,
        "constraints": request.constraints,
    }
    fenced = "\n\n".join(fence(label, value) for label, value in fields.items() if value)
    # The strategy's tone is how the lines should sound; the rest of it is already in the draft lines.
    tone = template.strategy.tone.strip() if template.strategy else ""
    tone_block = f"The business's tone for its calls:\n{fence('tone', tone, kind='STRATEGY')}\n\n" if tone else ""
    user = (
        f"Goal: {request.goal.value}. Style: {template.style.value}. Audience: {request.target.value}.\n\n"
        f"Form fields:\n{fenced}\n\n{tone_block}"
        f"Draft lines (JSON):\n{fence('draft_lines', json.dumps(_draft(template), indent=1), kind='SCRIPT')}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _clean(line: object, max_len: int) -> str | None:
    if not isinstance(line, str):
        return None
    text = spoken(line, max_len)
    lowered = text.lower()
    if not text or "http" in lowered or "www." in lowered:
        return None
    return text


def merge_lines(template: ContextInstance, received: _ReceivedLines) -> dict[str, Any]:
    """The lines to use: each received one that survives cleaning, else the template's."""
    questions = [q for q in (_clean(q, QUESTION_MAX) for q in received.qualification_questions or []) if q and q.endswith("?")]
    most = MAX_QUESTIONS.get(template.style, 4)
    if not 2 <= len(questions) <= most:
        questions = list(template.qualification_questions)
    handlers = received.objection_handlers or {}
    merged_handlers = {key: _clean(handlers.get(key), LINE_MAX) or template.objection_handlers[key] for key in OBJECTION_KEYS}
    commitment = None
    if template.commitment_question is not None:
        commitment = _clean(received.commitment_question, QUESTION_MAX) or template.commitment_question
    return {
        "opening_line": _clean(received.opening_line, LINE_MAX) or template.opening_line,
        "qualification_questions": questions,
        "objection_handlers": merged_handlers,
        "commitment_question": commitment,
        "closing_script": _clean(received.closing_script, LINE_MAX) or template.closing_script,
    }


def _script_text(value: str | list[str] | Mapping[str, str]) -> str:
    # The same layout as the template's script blocks, so the old block can be found and replaced.
    if isinstance(value, Mapping):
        return "\n".join(f"{key}: {reply}" for key, reply in value.items())
    if isinstance(value, list):
        return "\n".join(value)
    return value


def rewrite_instructions(template: ContextInstance, lines: Mapping[str, Any]) -> str:
    """The template's system prompt with its SCRIPT blocks quoting the new lines; rules untouched."""
    instructions = template.agent_instructions
    for name in SCRIPT_FIELDS:
        old, new = getattr(template, name), lines[name]
        if old is None or old == new:
            continue
        old_block = fence(name, _script_text(old), kind="SCRIPT")
        if old_block not in instructions:
            raise UnusableAnswer(f"the template's {name} script block was not found")
        instructions = instructions.replace(old_block, fence(name, _script_text(new), kind="SCRIPT"))
    return instructions


def parse_answer(content: str | None) -> _ReceivedLines:
    if not content:
        raise UnusableAnswer("empty answer")
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        raise UnusableAnswer("answer is not JSON") from None
    if not isinstance(data, dict):
        raise UnusableAnswer("answer is not a JSON object")
    try:
        return _ReceivedLines.model_validate(data)
    except ValidationError as exc:
        raise UnusableAnswer(f"answer does not match the schema ({exc.error_count()} errors)") from None


class ContextGenerator:
    """Builds each call's context: OpenAI's lines when it is configured and answers well, else templates."""

    def __init__(self, settings: Settings, client: AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.timeout = settings.openai_context_timeout_seconds
        self._client = client
        if client is None and settings.openai_api_key is not None:
            self._client = AsyncOpenAI(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                timeout=self.timeout,
                max_retries=0,  # one bounded try: the templates are a good answer, a slow one is not
            )

    @property
    def uses_openai(self) -> bool:
        return self._client is not None

    async def generate(
        self, request: CallRequest, *, history: list[dict] | None = None, strategy: ContextStrategy | None = None
    ) -> ContextInstance:
        template = build_context(request, history=history, strategy=strategy)
        if self._client is None:
            return template
        try:
            lines = await asyncio.wait_for(self._ask(request, template), self.timeout)
            instructions = rewrite_instructions(template, lines)
        except Exception as exc:  # any failure at all: the call goes ahead on the templates
            reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.warning("openai_context_fallback", reason=reason, detail=str(exc)[:200])
            return template
        return template.model_copy(update={**lines, "agent_instructions": instructions, "source": ContextSource.OPENAI})

    async def _ask(self, request: CallRequest, template: ContextInstance) -> dict[str, Any]:
        assert self._client is not None
        completion = await self._client.chat.completions.create(
            model=self.settings.openai_model,
            messages=cast("list[ChatCompletionMessageParam]", build_messages(request, template)),
            response_format=cast("ResponseFormatJSONSchema", response_format()),
            temperature=0.4,
            max_completion_tokens=MAX_COMPLETION_TOKENS,
        )
        if not completion.choices:
            raise UnusableAnswer("no choices")
        choice = completion.choices[0]
        if getattr(choice.message, "refusal", None):
            raise UnusableAnswer("refused")
        if choice.finish_reason == "length":
            raise UnusableAnswer("answer cut off at the token limit")
        return merge_lines(template, parse_answer(choice.message.content))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
