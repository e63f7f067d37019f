"""A speculative reply's side effects wait until its turn is confirmed (voice_worker/speculative_turn.py).

Pipecat's SpeculationGate holds the frames a speculative inference pushes, but not what the service
does beside them: the rule-based agent advances its dialogue and may end the call, a tool call records
an answer or ends the call. Pipecat withdraws a speculation that reaches a tool call, which costs the
turn its head start (the OpenAI stand-in records an answer on most turns) and can lose the reply when
the turn was confirmed while the withdrawal was on its way. Instead, such work waits here for the
turn's end: it goes ahead when the turn ends with the speculated words, and never runs when the
speculation is withdrawn (the inference is cancelled with it).
"""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import (
    EagerEndOfTurnCancelFrame,
    Frame,
    InterruptionFrame,
    LLMContextFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService

# A speculation the turn never resolves: pipecat's own bound on an eager turn end is 5 s.
CONFIRMATION_TIMEOUT_SECONDS = 10.0


class ConfirmedTurnLLMService(LLMService):
    """Mixed into an LLM service: `turn_confirmed()` waits out a speculative inference's turn."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._turn_settled = asyncio.Event()
        self._speculation_withdrawn = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, LLMContextFrame):
            self._speculation_withdrawn = False
        await super().process_frame(frame, direction)

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
        gate = self._speculation_gate
        speculating = gate.is_speculating
        await super().push_frame(frame, direction)
        if speculating and not gate.is_speculating:
            # The gate settled the speculation: a UserStoppedSpeakingFrame confirmed it, a withdrawal
            # or an interruption discarded it.
            self._speculation_withdrawn = not isinstance(frame, UserStoppedSpeakingFrame)
            self._turn_settled.set()
        elif isinstance(frame, (EagerEndOfTurnCancelFrame, InterruptionFrame)) and speculating:
            self._speculation_withdrawn = True
            self._turn_settled.set()

    async def turn_confirmed(self, timeout: float = CONFIRMATION_TIMEOUT_SECONDS) -> bool:
        """True once the turn this inference answers has ended with its words; False if withdrawn.

        Returns at once for an ordinary (not speculative) inference.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._speculation_gate.is_speculating:
            self._turn_settled.clear()
            try:
                await asyncio.wait_for(self._turn_settled.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return False
        return not self._speculation_withdrawn
