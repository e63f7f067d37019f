"""A local OpenAI Chat Completions endpoint: `POST /v1/chat/completions`, on loopback.

Pipecat's `OpenAILLMService` and the project's context generator (both through the real `openai`
client) run against it unchanged with `base_url="http://127.0.0.1:<port>/v1"`. What it implements:

- `Authorization: Bearer <key>` (any key) else 401 with OpenAI's error body; a body without
  `messages`, or with `n` > 1, is a 400 the same way.
- `stream: true`: server-sent events of `chat.completion.chunk`s, the first (role, then the first
  token) `first_token_s` after the request, then one token every `1 / tokens_per_second`; tool
  calls streamed as OpenAI does (id and name first, then the arguments in pieces), a last chunk
  with `finish_reason` (`stop` or `tool_calls`), a usage chunk with empty `choices` when
  `stream_options.include_usage` is set, then `data: [DONE]`.
- `stream: false`: one `chat.completion` after the time the stream would have taken.
- `response_format` `json_schema`/`json_object`: the first JSON object quoted in the last user
  message, unchanged (the stand-in writes nothing of its own; for the context generator that means
  the draft lines come back as they are), or `{}`.

What it says (deterministic, no model): when the system prompt carries the project's call script
(the SCRIPT blocks and `# Goal:`/`# Style:`/`# Audience:` lines of prompts/templates/system.md), the
project's rule-based agent (voice_worker/rule_agent.py) is rebuilt from that script and replayed
over the conversation's user turns, and its answer to the last one is the reply. A tool is called
only when the request offers it: `end_call` (outcome and summary) when the agent ends the call,
`record_answer` when the last turn answered a qualification question. After a tool result (the
last message has role `tool`) the reply is empty. Without a call script the reply is
`You said: <last user message>.` A token is a word with its leading space; token counts in `usage`
are estimates (4 characters a token for the prompt).

Not implemented: logprobs, `n` > 1, audio, images, the Responses and Assistants APIs, parallel
tool calls beyond the two above, refusals.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from models.context import ContextInstance
from models.enums import AgentStyle, CallGoal, TargetAudience
from scripts.standins.observed import ObservedDelays, sleep_until
from voice_worker.rule_agent import RuleBasedAgent

_FENCE = re.compile(r"<<<(SCRIPT|FORM FIELD) (\w+) BEGIN (\w+)>>>\n(.*?)\n<<<\1 \2 END \3>>>", re.DOTALL)
_HEADING = re.compile(r"^# (Goal|Style|Audience): (\w+)\s*$", re.MULTILINE)
_TOKEN = re.compile(r"\s*\S+")


@dataclass
class OpenAITiming:
    # From the request to the first token.
    first_token_s: float = 0.25
    tokens_per_second: float = 100.0


@dataclass
class Reply:
    text: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def script_context(system_prompt: str) -> ContextInstance | None:
    """The call context quoted in a system prompt built by prompts/context_builder.py, if it is one."""
    blocks: dict[str, str] = {}
    for kind, label, _token, body in _FENCE.findall(system_prompt):
        blocks[f"{kind}:{label}"] = body
    headings = dict(_HEADING.findall(system_prompt))
    if "SCRIPT:opening_line" not in blocks or "SCRIPT:qualification_questions" not in blocks:
        return None
    try:
        handlers = {}
        for line in blocks.get("SCRIPT:objection_handlers", "").splitlines():
            key, sep, reply = line.partition(": ")
            if sep:
                handlers[key.strip()] = reply.strip()
        return ContextInstance(
            phone="+10000000000",
            product=blocks.get("FORM FIELD:product", ""),
            offer_pricing=blocks.get("FORM FIELD:offer_pricing", ""),
            target=TargetAudience(headings.get("Audience", "sme")),
            goal=CallGoal(headings.get("Goal", "qualify_interest")),
            style=AgentStyle(headings.get("Style", "friendly")),
            agent_instructions=system_prompt,
            opening_line=blocks["SCRIPT:opening_line"],
            qualification_questions=[q for q in blocks["SCRIPT:qualification_questions"].splitlines() if q.strip()],
            objection_handlers=handlers,
            closing_script=blocks.get("SCRIPT:closing_script", ""),
            commitment_question=blocks.get("SCRIPT:commitment_question"),
        )
    except ValueError:
        return None


def reply_for(messages: list[dict[str, Any]], offered_tools: set[str]) -> Reply:
    """The deterministic reply to a conversation (see the module docstring)."""
    if messages and messages[-1].get("role") == "tool":
        return Reply("")
    system = "\n".join(_content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    user_turns = [_content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    context = script_context(system)
    if context is None:
        return Reply(f"You said: {user_turns[-1].strip()}." if user_turns else "Hello.")
    agent = RuleBasedAgent(context)
    if not user_turns:
        return Reply(agent.opening())
    answered_before: dict[str, str] = {}
    for turn in user_turns:
        answered_before = dict(agent.answers)
        reply = agent.reply(turn)
    tools: list[tuple[str, dict[str, Any]]] = []
    new_answers = {q: a for q, a in agent.answers.items() if answered_before.get(q) != a}
    if "record_answer" in offered_tools:
        tools += [
            ("record_answer", {"question": q, "answer": a})
            for q, a in new_answers.items()
            if q in context.qualification_questions
        ]
    if reply.end_outcome is not None and "end_call" in offered_tools:
        tools.append(
            ("end_call", {"outcome": reply.end_outcome.value, "summary": f"The call ended as {reply.end_outcome.value}."})
        )
    return Reply(reply.text, tools)


def _structured_reply(messages: list[dict[str, Any]]) -> str:
    last_user = next((_content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(last_user) if ch == "{"):
        try:
            value, _end = decoder.raw_decode(last_user, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return json.dumps(value)
    return "{}"


def _error(status: int, message: str, code: str | None, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status)


class OpenAIChatStandin:
    """The `POST /v1/chat/completions` endpoint."""

    def __init__(self, timing: OpenAITiming | None = None, observed: ObservedDelays | None = None) -> None:
        self.timing = timing or OpenAITiming()
        self.observed = observed or ObservedDelays()

    async def __call__(self, request: Request) -> Response:
        received = time.monotonic()
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return _error(401, "You didn't provide an API key.", "invalid_api_key")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "We could not parse the JSON body of your request.", None)
        except ClientDisconnect:  # the client gave up on the request (an interrupted turn)
            return Response(status_code=499)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return _error(400, "Missing required parameter: 'messages'.", "missing_required_parameter")
        if int(body.get("n") or 1) != 1:
            return _error(400, "The stand-in supports n=1 only.", "unsupported_value")
        offered = {
            t["function"]["name"]
            for t in body.get("tools") or []
            if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
        }
        response_format = (body.get("response_format") or {}).get("type")
        if response_format in ("json_schema", "json_object"):
            reply = Reply(_structured_reply(messages))
        else:
            reply = reply_for(messages, offered)
        model = str(body.get("model") or "gpt-4o-mini")
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(reply, model, prompt_tokens, include_usage, received), media_type="text/event-stream"
            )
        return await self._complete(reply, model, prompt_tokens, received)

    def _pieces(self, reply: Reply) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
        tokens = _TOKEN.findall(reply.text)
        calls = [
            (f"call_{secrets.token_hex(12)}", name, _TOKEN.findall(json.dumps(args)) or ["{}"]) for name, args in reply.tool_calls
        ]
        return tokens, calls

    async def _at(self, started: float, slot: int) -> None:
        await sleep_until(started + self.timing.first_token_s + slot / self.timing.tokens_per_second)

    async def _stream(
        self, reply: Reply, model: str, prompt_tokens: int, include_usage: bool, started: float
    ) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        tokens, calls = self._pieces(reply)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_standin",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n".encode()

        slot = 0
        await self._at(started, slot)
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for token in tokens:
            await self._at(started, slot)
            if slot == 0:
                self.observed.record("llm_first_token", time.monotonic() - started)
            yield chunk({"content": token})
            slot += 1
        for index, (call_id, name, arg_pieces) in enumerate(calls):
            await self._at(started, slot)
            yield chunk(
                {"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}
            )
            slot += 1
            for piece in arg_pieces:
                await self._at(started, slot)
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                slot += 1
        yield chunk({}, "tool_calls" if calls else "stop")
        if include_usage:
            completion_tokens = max(slot, 1)
            usage = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_standin",
                "choices": [],
                "usage": _usage(prompt_tokens, completion_tokens),
            }
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def _complete(self, reply: Reply, model: str, prompt_tokens: int, started: float) -> JSONResponse:
        tokens, calls = self._pieces(reply)
        count = len(tokens) + sum(1 + len(pieces) for _id, _name, pieces in calls)
        await self._at(started, max(count - 1, 0))
        message: dict[str, Any] = {"role": "assistant", "content": reply.text if tokens or not calls else None, "refusal": None}
        if calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": "".join(pieces)}}
                for call_id, name, pieces in calls
            ]
        return JSONResponse(
            {
                "id": f"chatcmpl-{secrets.token_hex(12)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_standin",
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if calls else "stop"}
                ],
                "usage": _usage(prompt_tokens, max(count, 1)),
            }
        )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
