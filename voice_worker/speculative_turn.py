"""Start the reply on the recognizer's final while the turn's end is still being decided.

With the cloud providers the turn's end (0.25 s VAD stop + a Smart Turn inference, or the mid-phrase
hold) and the reply's own latency (LLM first token, TTS first audio) add up; this overlaps them. On a
final transcript the strategy asks pipecat's user aggregator for a speculative inference: the LLM runs
on a provisional copy of the context, and the LLM service's SpeculationGate holds what it produces.
When the turn ends with the same words the held reply is released (no second inference); when the
caller goes on speaking, or the words at the end differ, it is withdrawn (EagerEndOfTurnCancelFrame)
and never heard nor written to the context.

Pipecat's own EagerUserTurnStopStrategy does the same for STT services that predict the turn's end
themselves and replaces the turn detection; here the prediction is the recognizer's final and the
turn's end stays Smart Turn's and TranscriptAwareTurnStop's.

Mixed into voice_worker/turn_taking.py's TranscriptAwareTurnStop. Setting: SPECULATIVE_REPLY (models/settings.py, README's settings table).
"""

from __future__ import annotations

from pipecat.frames.frames import (
    EagerEndOfTurnCancelFrame,
    Frame,
    InterimTranscriptionFrame,
    LLMRunFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult, UserTurnSpeculation
from pipecat.turns.user_stop.eager_match_policy import NormalizedMatch
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy

from models.log_config import get_logger

log = get_logger(__name__)


class SpeculativeReply(TurnAnalyzerUserTurnStopStrategy):
    """Answers each final transcript speculatively; mixed into a turn-analyzer stop strategy.

    The turn's end is decided exactly as without it (by the class it is mixed into); only the
    inference starts earlier.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._match = NormalizedMatch()
        # Every final of the turn so far: the base class keeps only the last one, and the user
        # message the aggregator writes is all of them.
        self._turn_text = ""
        self._speculation: UserTurnSpeculation | None = None
        # Set when the turn ended on a speculation's reply, until the next turn starts: the LLM may
        # still withdraw it (a tool call it wanted before the confirmation reached it), and then the
        # committed turn has to be answered anew.
        self._confirmed: UserTurnSpeculation | None = None

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, EagerEndOfTurnCancelFrame):
            await self._withdrawn_elsewhere()
        elif isinstance(frame, InterimTranscriptionFrame) and frame.text.strip():
            # New words: the turn's text will not be the speculated one.
            await self._withdraw("caller went on")
        return await super().process_frame(frame)

    async def handle_user_turn_started(self) -> None:
        self._confirmed = None
        await super().handle_user_turn_started()

    async def _reset(self) -> None:
        await super()._reset()
        self._turn_text = ""
        # A turn that ended without resolving its speculation (the stop watchdog, an interruption)
        # must not leave a reply held.
        await self._withdraw("turn ended unresolved")

    async def _handle_vad_user_started_speaking(self, frame: VADUserStartedSpeakingFrame) -> None:
        await self._withdraw("caller went on")
        await super()._handle_vad_user_started_speaking(frame)

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        text = frame.text.strip()
        if text:
            self._turn_text = f"{self._turn_text} {text}".strip()
            # Before the base class sees the final: it may end the turn on it, and the end then
            # confirms this speculation rather than starting a second inference.
            if self.worth_speculating(self._turn_text):
                await self._speculate(self._turn_text)
        await super()._handle_transcription(frame)

    def worth_speculating(self, text: str) -> bool:
        """Whether the words so far may be the whole turn (a class mixing this in knows better)."""
        return True

    async def trigger_user_turn_stopped(self, *, enable_user_speaking_frames: bool | None = None) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None and self._match.matches(speculation.text, self._turn_text):
            self._confirmed = speculation
            # The UserStoppedSpeakingFrame this emits releases the held reply at the LLM.
            await self.trigger_user_turn_finalized(
                enable_user_speaking_frames=enable_user_speaking_frames, confirms_speculation=True
            )
            return
        if speculation is not None:
            log.debug("speculation_missed", speculated=speculation.text, committed=self._turn_text)
            await self.trigger_user_turn_speculation_cancelled()
        await super().trigger_user_turn_stopped(enable_user_speaking_frames=enable_user_speaking_frames)

    async def _speculate(self, text: str) -> None:
        if self._speculation is not None:
            if self._speculation.text == text:
                return
            await self._withdraw("superseded")
        self._speculation = UserTurnSpeculation(text=text)
        await self.trigger_user_turn_inference_triggered(speculation=self._speculation)

    async def _withdraw(self, reason: str) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            log.debug("speculation_withdrawn", reason=reason, speculated=speculation.text)
            await self.trigger_user_turn_speculation_cancelled()

    async def _withdrawn_elsewhere(self) -> None:
        """The LLM withdrew the speculation (pipecat does so for a tool call it cannot hold)."""
        if self._speculation is not None:
            # Withdrawn again from here too: whatever the gate holds goes, so the turn's end answers
            # afresh whichever speculation the LLM meant.
            await self._withdraw("withdrawn by the LLM")
        elif self._confirmed is not None:
            # The turn already ended on it: its user message is in the context, the reply never
            # came. Ask for one on the committed context.
            self._confirmed = None
            log.debug("speculation_withdrawn_after_confirmation")
            await self.push_frame(LLMRunFrame())
