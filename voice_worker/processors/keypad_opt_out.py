"""Keypad input: 0 opts the caller out, whatever the agent was saying."""

from pipecat.frames.frames import Frame, InputDTMFFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from models.log_config import get_logger
from voice_worker.call_session import CallSession

log = get_logger(__name__)

OPT_OUT_DIGIT = "0"


class KeypadOptOut(FrameProcessor):
    def __init__(self, session: CallSession, **kwargs) -> None:
        super().__init__(**kwargs)
        self._session = session
        self.digits: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            digit = str(frame.button.value)
            self.digits.append(digit)
            log.info("dtmf_received", call_id=self._session.call_id, digit=digit)
            if digit == OPT_OUT_DIGIT and not self._session.ending:
                reply = self._session.agent.keypad_opt_out()
                await self.broadcast_interruption()
                await self.push_frame(TTSSpeakFrame(reply.text))
                self._session.add_agent_line(reply.text)
                await self._session.end_call(reply.end_outcome, reply.end_reason)
            return
        await self.push_frame(frame, direction)
