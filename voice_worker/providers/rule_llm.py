"""The rule-based agent as a Pipecat LLM service: context in, spoken text out."""

from pipecat.frames.frames import Frame, LLMContextFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

from voice_worker.call_session import CallSession
from voice_worker.providers.confirmed_turn import ConfirmedTurnLLMService


def caller_turns(context: LLMContext) -> list[str]:
    texts = []
    for message in context.get_messages():
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            texts.append(str(content or ""))
    return texts


async def answer_with_rules(service: LLMService, session: CallSession, context: LLMContext, *, taking_over: bool = False) -> None:
    """Push the rule-based agent's answer to the latest caller turn as LLM text."""
    turns = caller_turns(context)
    if taking_over:
        session.agent.take_over(len(turns))
    reply = session.agent.reply(turns[-1] if turns else "")
    if reply.text:
        await service.push_frame(LLMTextFrame(reply.text))
    if reply.end_outcome is not None:
        await session.end_call(reply.end_outcome, reply.end_reason)


def rule_agent_settings() -> LLMSettings:
    """No model, no prompt, no sampling: every setting None, which pipecat 1.14 reads as "unsupported".

    A service's settings must have every field given; one left NOT_GIVEN is logged as an ERROR
    when the service starts, that is at the start of every call.
    """
    return LLMSettings(
        model=None,
        system_instruction=None,
        temperature=None,
        max_tokens=None,
        top_p=None,
        top_k=None,
        frequency_penalty=None,
        presence_penalty=None,
        seed=None,
        filter_incomplete_user_turns=False,
        user_turn_completion_config=None,
    )


class RuleBasedLLMService(ConfirmedTurnLLMService):
    def __init__(self, session: CallSession, **kwargs) -> None:
        kwargs.setdefault("settings", rule_agent_settings())
        super().__init__(**kwargs)
        self._session = session

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            # The agent's reply advances its dialogue and may end the call: a speculative turn is
            # answered once it is confirmed (the rules take no time to overlap with anyway).
            if not await self.turn_confirmed():
                return
            await self.push_frame(LLMFullResponseStartFrame())
            try:
                await answer_with_rules(self, self._session, frame.context)
            finally:
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)
