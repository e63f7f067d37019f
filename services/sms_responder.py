"""Who writes the agent's text replies: OpenAI with the whole conversation when it is configured, else the rules.

The rule-based reply is always computed first (prompts/sms_replies.py) and stays the answer when
OpenAI is not configured, times out or fails. Either way the reply says which model wrote it, how
long that took and, for OpenAI, the tokens it used: they are stored with the message.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, cast

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from models.enums import Language
from models.log_config import get_logger
from models.settings import Settings
from prompts.sms_replies import REPLY_MAX, SmsReply, SmsStep, openai_messages
from prompts.untrusted import spoken

log = get_logger(__name__)

RULES_MODEL = "rules"
MAX_COMPLETION_TOKENS = 200


@dataclass(frozen=True)
class WrittenReply:
    reply: SmsReply
    model: str
    response_time_ms: int
    token_usage: dict[str, Any] | None = None


class SmsResponder:
    def __init__(self, settings: Settings, client: AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.timeout = settings.openai_context_timeout_seconds
        self._client = client
        if client is None and settings.openai_api_key is not None and settings.llm_provider == "openai":
            self._client = AsyncOpenAI(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                timeout=self.timeout,
                max_retries=0,
            )

    async def write(
        self, rules: SmsReply, history: list[dict[str, str]], *, language: Language, business: str, trade: str | None
    ) -> WrittenReply:
        started = time.perf_counter()
        if self._client is None:
            return WrittenReply(rules, RULES_MODEL, round((time.perf_counter() - started) * 1000))
        try:
            completion = await asyncio.wait_for(
                self._client.chat.completions.create(
                    model=self.settings.openai_model,
                    messages=cast(
                        "list[ChatCompletionMessageParam]",
                        openai_messages(history, language=language, business=business, trade=trade),
                    ),
                    temperature=0.4,
                    max_completion_tokens=MAX_COMPLETION_TOKENS,
                ),
                self.timeout,
            )
            text = spoken(completion.choices[0].message.content or "", REPLY_MAX)
            if not text:
                raise ValueError("empty reply")
        except Exception as exc:  # any failure: the rules answer instead, the lead is never left waiting
            log.warning("sms_openai_fallback", reason="timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)
            return WrittenReply(rules, RULES_MODEL, round((time.perf_counter() - started) * 1000))
        usage = completion.usage.model_dump() if completion.usage else None
        # What the lead's text told us still comes from the rules; the words are OpenAI's.
        reply = replace(rules, text=text, step=SmsStep.OPENAI)
        return WrittenReply(
            reply, completion.model or self.settings.openai_model, round((time.perf_counter() - started) * 1000), usage
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
