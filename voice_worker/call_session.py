"""Everything one live call knows, shared by the processors of its pipeline.

The processors record into it (transcript, answers, timing, outcome); the
call runner persists it once the pipeline has finished, whatever the reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.call_job import CallJob, utcnow
from models.context import ContextInstance
from models.enums import CallGoal, CallOutcome, EndReason
from models.log_config import get_logger
from prompts.caller_intent import Intent, classify
from voice_worker.rule_agent import RuleBasedAgent

log = get_logger(__name__)

_QUESTION = re.compile(r"[^.!?]*\?")


@dataclass
class TranscriptEntry:
    role: str  # "agent" | "caller"
    text: str
    at: datetime
    interrupted: bool = False
    timing: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": self.role, "text": self.text, "at": self.at.isoformat()}
        if self.interrupted:
            entry["interrupted"] = True
        if self.timing:
            entry["timing"] = self.timing
        return entry


@dataclass
class CallSession:
    job: CallJob
    context: ContextInstance
    stream_sid: str = ""
    call_sid: str | None = None
    agent: RuleBasedAgent = field(init=False)
    outcome: CallOutcome | None = None
    end_reason: EndReason | None = None
    error: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    started_monotonic: float = field(default_factory=time.monotonic)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    tool_answers: dict[str, str] = field(default_factory=dict)
    turn_metrics: list[dict[str, float]] = field(default_factory=list)
    llm_fallback_used: bool = False
    agent_speaking: bool = False
    recording_path: str | None = None
    # The workspace's person to hand a caller to (None: offer a callback), and who it went to.
    transfer_number: str | None = None
    transferred_to: str | None = None
    # A machine answered and the agent left its message after the beep.
    voicemail_left: bool = False
    # Set by the runner: ends the pipeline gracefully once queued speech has played.
    end_pipeline: Callable[[], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.agent = RuleBasedAgent(self.context, can_transfer=self.transfer_number is not None)

    @property
    def call_id(self) -> str:
        return str(self.job.id)

    @property
    def ending(self) -> bool:
        return self.outcome is not None

    @property
    def answers(self) -> dict[str, str]:
        return {**self.agent.answers, **self.tool_answers}

    def provisional_outcome(self) -> CallOutcome:
        """What the call achieved so far, for a call that ends before the agent closes it, from what was
        said, whichever responder took the turns. The rule-based agent only knows the turns it answered:
        in LLM mode it heard nobody, and a call someone answered must never be stored as `no_answer`
        (the queue would call them again as unanswered)."""
        outcome = self.agent.provisional_outcome()
        said = [entry.text for entry in self.transcript if entry.role == "caller"]
        if outcome is not CallOutcome.NO_ANSWER or not said:
            return outcome
        intents = [classify(text) for text in said]
        if Intent.OPT_OUT in intents:
            return CallOutcome.OPTED_OUT
        if intents[-1] is Intent.CALLBACK:
            return CallOutcome.CALLBACK_REQUESTED
        if self.tool_answers and self.context.goal is CallGoal.COLLECT_INFO:
            return CallOutcome.INFO_COLLECTED
        questions = self.context.qualification_questions
        if questions and len(self.tool_answers) >= len(questions):
            return CallOutcome.QUALIFIED
        # Someone talked, then the call ended without a decision: with end_reason caller_hung_up
        # and the answers so far, that is how it is stored, and it is not retried.
        return CallOutcome.NOT_INTERESTED

    def record_end(self, outcome: CallOutcome, reason: EndReason, error: str | None = None) -> bool:
        """The first decision about how the call ended wins; later ones are ignored."""
        if self.outcome is not None:
            return False
        self.outcome, self.end_reason, self.error = outcome, reason, error
        log.info("call_outcome_decided", call_id=self.call_id, outcome=outcome.value, end_reason=reason.value)
        return True

    async def end_call(self, outcome: CallOutcome, reason: EndReason = EndReason.AGENT_COMPLETED) -> None:
        if outcome is CallOutcome.TRANSFERRED and self.transfer_number is None:
            # Nobody to hand to: the agents offer a callback instead, so this is a slip; keep the call's own outcome.
            outcome = self.agent.provisional_outcome()
        if self.record_end(outcome, reason):
            if outcome is CallOutcome.TRANSFERRED:
                self.transferred_to = self.transfer_number
            if self.end_pipeline is not None:
                await self.end_pipeline()

    def add_agent_line(self, text: str, interrupted: bool = False, dedupe: bool = False) -> None:
        """`dedupe`: lines spoken outside the LLM (opening, re-prompts) are recorded when queued and
        may be reported again by the aggregator once played; keep one entry."""
        text = text.strip()
        if not text:
            return
        if dedupe:
            for entry in reversed(self.transcript[-3:]):
                if entry.role == "agent" and entry.text == text:
                    entry.interrupted = entry.interrupted or interrupted
                    return
        self.transcript.append(TranscriptEntry("agent", text, utcnow(), interrupted))

    def mark_last_agent_line_interrupted(self) -> None:
        for entry in reversed(self.transcript):
            if entry.role == "agent":
                entry.interrupted = True
                return

    def add_caller_line(self, text: str, timing: dict[str, float] | None = None) -> None:
        if text.strip():
            self.transcript.append(TranscriptEntry("caller", text.strip(), utcnow(), timing=timing))

    def last_agent_question(self) -> str:
        for entry in reversed(self.transcript):
            if entry.role == "agent":
                questions = _QUESTION.findall(entry.text)
                return questions[-1].strip() if questions else ""
        return ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic
