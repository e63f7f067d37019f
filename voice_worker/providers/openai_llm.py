"""OpenAI chat with the call's tools, and the rule-based agent as its safety net.

When the model errors, or says nothing within the first-token timeout, the
rule-based agent answers the same turn (so the caller never sits in silence) and
every later turn of the call.
"""

import asyncio
from collections.abc import Sequence

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import Frame, FunctionCallResultProperties, LLMTextFrame, TTSSpeakFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import FunctionCallFromLLM, FunctionCallParams
from pipecat.services.openai.llm import OpenAILLMService

from models.enums import CallOutcome, EndReason
from models.log_config import get_logger
from voice_worker.call_session import CallSession
from voice_worker.providers.confirmed_turn import ConfirmedTurnLLMService
from voice_worker.providers.rule_llm import answer_with_rules

log = get_logger(__name__)

# Voicemail is Twilio's verdict, a transfer goes through `transfer_call`.
_NOT_CHOSEN_BY_THE_LLM = (CallOutcome.VOICEMAIL, CallOutcome.TRANSFERRED)

CALL_TOOLS = ToolsSchema(
    standard_tools=[
        FunctionSchema(
            name="record_answer",
            description="Record the caller's answer to one of the qualification questions.",
            properties={
                "question": {"type": "string", "description": "The question, as asked"},
                "answer": {"type": "string", "description": "The caller's answer, briefly"},
            },
            required=["question", "answer"],
        ),
        FunctionSchema(
            name="end_call",
            description="End the call after saying goodbye, with how it ended.",
            properties={
                "outcome": {"type": "string", "enum": [o.value for o in CallOutcome if o not in _NOT_CHOSEN_BY_THE_LLM]},
                "summary": {"type": "string", "description": "One sentence on what was agreed"},
            },
            required=["outcome"],
        ),
        FunctionSchema(
            name="transfer_call",
            description=(
                "Hand the caller to a person from the team when they ask for a human. Say nothing before calling it: "
                "the handover line is spoken for you. If it answers transferred=false, offer a callback instead."
            ),
            properties={"reason": {"type": "string", "description": "Why the caller wants a person, briefly"}},
            required=[],
        ),
    ]
)


class OpenAIWithRulesFallback(ConfirmedTurnLLMService, OpenAILLMService):
    def __init__(self, session: CallSession, first_token_timeout: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._first_token_timeout = first_token_timeout
        self._spoke_this_turn = asyncio.Event()
        self.register_function("record_answer", self._record_answer)
        self.register_function("end_call", self._end_call)
        self.register_function("transfer_call", self._transfer_call)

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
        if isinstance(frame, LLMTextFrame):
            self._spoke_this_turn.set()
        await super().push_frame(frame, direction)

    async def run_function_calls(self, function_calls: Sequence[FunctionCallFromLLM]) -> None:
        # The model answered (with a call): the first-token watchdog has nothing left to guard.
        self._spoke_this_turn.set()
        # A tool's effect cannot be held back like text: wait for the turn (confirmed_turn.py).
        if function_calls and not await self.turn_confirmed():
            return
        await super().run_function_calls(function_calls)

    async def _process_context(self, context: LLMContext) -> None:
        if self._session.llm_fallback_used:
            if await self.turn_confirmed():
                await answer_with_rules(self, self._session, context)
            return
        self._spoke_this_turn.clear()
        completion = asyncio.ensure_future(super()._process_context(context))
        first_text = asyncio.ensure_future(self._spoke_this_turn.wait())
        try:
            await asyncio.wait({completion, first_text}, timeout=self._first_token_timeout, return_when=asyncio.FIRST_COMPLETED)
            if not completion.done() and not self._spoke_this_turn.is_set():
                completion.cancel()
                raise TimeoutError(f"no first token within {self._first_token_timeout}s")
            await completion
        except asyncio.CancelledError:
            completion.cancel()
            raise
        except Exception as exc:
            if self._spoke_this_turn.is_set():
                # The caller already heard part of an answer; the next turn falls back.
                log.warning("llm_failed_mid_answer", call_id=self._session.call_id, error=type(exc).__name__)
            elif not await self.turn_confirmed():
                # A speculation's failure: the turn may not be this one; its end asks the model again.
                log.warning("llm_failed_speculating", call_id=self._session.call_id, error=type(exc).__name__)
                return
            else:
                log.warning("llm_failed_rules_take_over", call_id=self._session.call_id, error=type(exc).__name__)
                self._session.llm_fallback_used = True
                await answer_with_rules(self, self._session, context, taking_over=True)
            self._session.llm_fallback_used = True
        finally:
            first_text.cancel()

    async def _record_answer(self, params: FunctionCallParams) -> None:
        question = str(params.arguments.get("question", ""))[:300]
        answer = str(params.arguments.get("answer", ""))[:1000]
        if question:
            self._session.tool_answers[question] = answer
        await params.result_callback({"recorded": True})

    async def _end_call(self, params: FunctionCallParams) -> None:
        try:
            outcome = CallOutcome(params.arguments.get("outcome"))
        except ValueError:
            outcome = self._session.provisional_outcome()
        reason = EndReason.OPT_OUT if outcome is CallOutcome.OPTED_OUT else EndReason.AGENT_COMPLETED

        await params.result_callback({"ended": True}, properties=FunctionCallResultProperties(run_llm=False))
        await self._session.end_call(outcome, reason)

    async def _transfer_call(self, params: FunctionCallParams) -> None:
        reply = self._session.agent.human_requested()
        if reply.end_outcome is None:
            # No one to hand to: the model hears why and offers the callback itself.
            await params.result_callback({"transferred": False, "reason": "no one is available; offer a callback"})
            return
        await params.result_callback({"transferred": True}, properties=FunctionCallResultProperties(run_llm=False))
        self._session.add_agent_line(reply.text)
        await self.push_frame(TTSSpeakFrame(reply.text))
        await self._session.end_call(CallOutcome.TRANSFERRED)
