"""The reply starts on the final transcript and is heard only if the turn ends with those words
(SPECULATIVE_REPLY, voice_worker/speculative_turn.py): kept when the turn commits with the same words,
dropped (never heard, not in the context) when the caller goes on speaking."""

from __future__ import annotations

from uuid import uuid4

import pytest
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from models.call_job import CallJob
from models.call_request import CallRequest
from models.enums import CallOutcome
from models.settings import Settings
from prompts.context_builder import build_context
from scripts.standins.app import DUMMY_KEY, StandinDelays, Standins, running_standins
from tests.support import BOOK_MEETING_REQUEST
from tests.support.turn_analyzers import ScriptedTurnAnalyzer
from voice_worker.call_session import CallSession
from voice_worker.providers.confirmed_turn import ConfirmedTurnLLMService
from voice_worker.providers.openai_llm import CALL_TOOLS, OpenAIWithRulesFallback
from voice_worker.providers.rule_llm import RuleBasedLLMService, caller_turns, rule_agent_settings
from voice_worker.turn_taking import SpeculativeTranscriptAwareTurnStop, TranscriptAwareTurnStop, user_turn_strategies

# Long enough for each step's frames to be processed before the next step is sent (ordering, not timing).
STEP = SleepFrame(sleep=0.3)


class _EchoLLM(ConfirmedTurnLLMService):
    """Answers "reply to <the last user words>" at once, and notes whether each inference was speculative."""

    def __init__(self) -> None:
        super().__init__(settings=rule_agent_settings())
        self.inferences: list[tuple[str, bool]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            words = caller_turns(frame.context)[-1]
            self.inferences.append((words, frame.speculation))
            await self.push_frame(LLMFullResponseStartFrame())
            await self.push_frame(LLMTextFrame(f"reply to {words}"))
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)


class _Heard(FrameProcessor):
    """What leaves the LLM towards the TTS, in order: the caller hears these texts."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM and isinstance(frame, (LLMTextFrame, UserStoppedSpeakingFrame)):
            self.frames.append(frame)
        await self.push_frame(frame, direction)


def _final(text: str) -> TranscriptionFrame:
    frame = TranscriptionFrame(text, "caller", "")
    frame.finalized = True
    return frame


async def _turn(
    llm, *steps: Frame, verdicts: tuple[EndOfTurnState, ...] = (), context: LLMContext | None = None
) -> tuple[LLMContext, list[Frame]]:
    context = context or LLMContext(messages=[{"role": "system", "content": "be brief"}])
    stop = SpeculativeTranscriptAwareTurnStop(turn_analyzer=ScriptedTurnAnalyzer(*verdicts), stop_seconds=5.0)
    pair = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(user_turn_strategies=UserTurnStrategies(stop=[stop]))
    )
    heard = _Heard()
    await run_test(Pipeline([pair.user(), llm, heard, pair.assistant()]), frames_to_send=[*steps, STEP])
    return context, heard.frames


def _heard(down: list[Frame]) -> list[str]:
    return [f.text for f in down if isinstance(f, LLMTextFrame)]


def _said(context: LLMContext, role: str) -> list[str]:
    return [str(m.get("content")) for m in context.get_messages() if isinstance(m, dict) and m.get("role") == role]


def test_speculation_is_the_default_and_a_setting() -> None:
    assert isinstance(user_turn_strategies(Settings()).stop[0], SpeculativeTranscriptAwareTurnStop)
    stop = user_turn_strategies(Settings(speculative_reply=False)).stop[0]
    assert isinstance(stop, TranscriptAwareTurnStop) and not isinstance(stop, SpeculativeTranscriptAwareTurnStop)


async def test_the_speculative_reply_is_held_then_used_when_the_turn_ends_with_the_same_words() -> None:
    llm = _EchoLLM()
    context, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("yes sure i have a minute"),  # the recognizer's final, before the VAD's stop
        STEP,
        VADUserStoppedSpeakingFrame(stop_secs=0.25),  # the turn ends: Smart Turn judges it complete
    )
    # One inference, the speculative one: the turn's end did not ask again.
    assert llm.inferences == [("yes sure i have a minute", True)]
    assert _heard(down) == ["reply to yes sure i have a minute"]
    # Held until the turn ended, although it was ready a step earlier.
    stopped = next(i for i, f in enumerate(down) if isinstance(f, UserStoppedSpeakingFrame))
    assert stopped < next(i for i, f in enumerate(down) if isinstance(f, LLMTextFrame))
    assert _said(context, "user") == ["yes sure i have a minute"]
    assert _said(context, "assistant") == ["reply to yes sure i have a minute"]


async def test_a_caller_who_goes_on_after_a_pause_never_hears_the_first_speculation() -> None:
    llm = _EchoLLM()
    context, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("i can do tuesday"),
        STEP,
        VADUserStoppedSpeakingFrame(stop_secs=0.25),  # judged unfinished: the turn stays open
        STEP,
        VADUserStartedSpeakingFrame(),  # the caller goes on
        _final("after lunch"),
        STEP,
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
        verdicts=(EndOfTurnState.INCOMPLETE, EndOfTurnState.COMPLETE),
    )
    assert llm.inferences == [("i can do tuesday", True), ("i can do tuesday after lunch", True)]
    assert _heard(down) == ["reply to i can do tuesday after lunch"]
    assert _said(context, "user") == ["i can do tuesday after lunch"]
    assert _said(context, "assistant") == ["reply to i can do tuesday after lunch"]


async def test_words_that_change_before_the_turn_ends_drop_the_speculation() -> None:
    llm = _EchoLLM()
    context, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("no"),
        STEP,
        InterimTranscriptionFrame("thanks", "caller", ""),  # more words before the VAD ever stopped
        STEP,
        _final("thanks"),
        STEP,
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
    )
    assert llm.inferences == [("no", True), ("no thanks", True)]
    assert _heard(down) == ["reply to no thanks"]
    assert _said(context, "user") == ["no thanks"]
    assert _said(context, "assistant") == ["reply to no thanks"]


def _session() -> CallSession:
    request = CallRequest.model_validate(BOOK_MEETING_REQUEST)
    call_context = build_context(request)
    session = CallSession(job=CallJob(id=uuid4(), context_id=call_context.id, phone=request.phone), context=call_context)
    session.add_agent_line(call_context.opening_line)
    return session


async def test_the_rule_agent_answers_a_speculation_only_once_its_turn_is_confirmed() -> None:
    session = _session()
    context, down = await _turn(
        RuleBasedLLMService(session),
        VADUserStartedSpeakingFrame(),
        _final("yes"),
        STEP,
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
        STEP,
        VADUserStartedSpeakingFrame(),  # goes on: the guess above must not take a turn of the dialogue
        _final("this is alex"),
        STEP,
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
        verdicts=(EndOfTurnState.INCOMPLETE, EndOfTurnState.COMPLETE),
    )
    # The agent took one turn, the committed one; the withdrawn guess never reached it.
    assert session.agent._turns == 1
    assert len(_heard(down)) == 1
    assert _said(context, "user") == ["yes this is alex"]


@pytest.fixture(scope="module")
def standins():
    with running_standins(Standins(StandinDelays(llm_first_token_s=0.1, llm_tokens_per_second=200.0))) as server:
        yield server


def _openai(session: CallSession, standins) -> tuple[OpenAIWithRulesFallback, LLMContext]:
    llm = OpenAIWithRulesFallback(
        session,
        first_token_timeout=5.0,
        api_key=DUMMY_KEY,
        base_url=f"{standins.base_url}/v1",
        settings=OpenAIWithRulesFallback.Settings(model="gpt-4o-mini"),
    )
    return llm, LLMContext(messages=[{"role": "system", "content": session.context.agent_instructions}], tools=CALL_TOOLS)


async def test_a_speculation_that_ends_the_call_ends_it_once_the_turn_is_confirmed(standins) -> None:
    session = _session()
    llm, context = _openai(session, standins)
    standins.standins.observed.reset()
    _, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("please stop calling me"),
        SleepFrame(sleep=1.0),  # the stand-in has answered with its goodbye and end_call by now
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
        SleepFrame(sleep=1.0),
        context=context,
    )
    # The reply and its end_call waited for the turn, then went ahead (not withdrawn for the tool call).
    assert "won't be called again" in "".join(_heard(down))
    assert session.outcome is CallOutcome.OPTED_OUT
    assert len(standins.standins.observed.values("llm_first_token")) == 1  # one request: nothing asked twice


async def test_a_withdrawn_speculation_never_runs_its_tool_call(standins) -> None:
    session = _session()
    llm, context = _openai(session, standins)
    _, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("please stop calling me"),
        SleepFrame(sleep=1.0),
        VADUserStartedSpeakingFrame(),  # the caller goes on before the turn ended
        STEP,
        context=context,
    )
    assert _heard(down) == []
    assert session.outcome is None


def _failing_openai(session: CallSession) -> tuple[OpenAIWithRulesFallback, LLMContext]:
    llm = OpenAIWithRulesFallback(
        session,
        first_token_timeout=1.0,
        api_key=DUMMY_KEY,
        base_url="http://127.0.0.1:9/v1",  # nothing listens: the model fails
        settings=OpenAIWithRulesFallback.Settings(model="gpt-4o-mini"),
    )
    return llm, LLMContext(messages=[{"role": "system", "content": session.context.agent_instructions}], tools=CALL_TOOLS)


async def test_a_model_that_fails_on_a_speculation_leaves_the_turn_to_the_rules_once_it_is_confirmed() -> None:
    session = _session()
    llm, context = _failing_openai(session)
    _, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("yes this is alex"),
        SleepFrame(sleep=1.5),  # the speculation failed (or timed out) meanwhile: its fallback waits
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
        SleepFrame(sleep=1.0),
        context=context,
    )
    # The rules took the committed turn over: one turn of the dialogue, one reply heard.
    assert session.llm_fallback_used
    assert session.agent._turns == 1
    assert len(_heard(down)) == 1 and _heard(down)[0].strip()


async def test_a_model_that_fails_on_a_withdrawn_speculation_does_not_hand_that_guess_to_the_rules() -> None:
    session = _session()
    llm, context = _failing_openai(session)
    _, down = await _turn(
        llm,
        VADUserStartedSpeakingFrame(),
        _final("yes"),
        SleepFrame(sleep=1.5),  # failed meanwhile
        VADUserStoppedSpeakingFrame(stop_secs=0.25),  # judged unfinished
        STEP,
        VADUserStartedSpeakingFrame(),  # the caller goes on: the guess is withdrawn
        _final("this is alex"),
        SleepFrame(sleep=1.5),
        VADUserStoppedSpeakingFrame(stop_secs=0.25),
        SleepFrame(sleep=1.0),
        context=context,
        verdicts=(EndOfTurnState.INCOMPLETE, EndOfTurnState.COMPLETE),
    )
    # The rules answered the committed turn only.
    assert session.agent._turns == 1
    assert len(_heard(down)) == 1
