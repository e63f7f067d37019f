"""When the agent ends the call by itself: silence (after one re-prompt), maximum duration,
and the graceful end once the last words have actually played to the caller."""

import asyncio

from pipecat.frames.frames import EndFrame, OutputTransportMessageFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineWorker

from models.log_config import get_logger
from models.settings import Settings
from voice_worker.call_session import CallSession
from voice_worker.processors.checked_twilio_serializer import CheckedTwilioFrameSerializer

log = get_logger(__name__)

END_MARK = "call-end"
# Upper bound on how long the last words may take to play before we hang up anyway.
END_MARK_TIMEOUT_SECONDS = 20.0


class HangupPolicy:
    def __init__(
        self,
        session: CallSession,
        worker: PipelineWorker,
        serializer: CheckedTwilioFrameSerializer,
        settings: Settings,
    ) -> None:
        self._session = session
        self._worker = worker
        self._serializer = serializer
        self._settings = settings
        self._silences = 0
        self._finishing: asyncio.Task | None = None

    async def say_and_end(self, text: str, outcome, reason) -> None:
        if self._session.ending:
            return
        self._session.add_agent_line(text)
        await self._worker.queue_frame(TTSSpeakFrame(text))
        await self._session.end_call(outcome, reason)

    async def on_caller_spoke(self) -> None:
        self._silences = 0

    async def on_silence(self) -> None:
        if self._session.ending:
            return
        self._silences += 1
        if self._silences == 1:
            question = self._session.last_agent_question()
            text = f"Are you still there? {question}".strip()
            log.info("silence_reprompt", call_id=self._session.call_id)
            self._session.add_agent_line(text)
            await self._worker.queue_frame(TTSSpeakFrame(text))
            return
        reply = self._session.agent.silence_goodbye()
        await self.say_and_end(reply.text, reply.end_outcome, reply.end_reason)

    async def enforce_max_duration(self) -> None:
        await asyncio.sleep(self._settings.max_call_seconds)
        log.info("max_call_duration_reached", call_id=self._session.call_id, seconds=self._settings.max_call_seconds)
        reply = self._session.agent.max_duration_goodbye()
        await self.say_and_end(reply.text, reply.end_outcome, reply.end_reason)

    async def finish(self) -> None:
        """End after the caller has heard everything queued: Twilio echoes our mark once it has played."""
        if self._finishing is None:
            self._finishing = asyncio.create_task(self._finish())

    async def _finish(self) -> None:
        mark = {"event": "mark", "streamSid": self._session.stream_sid, "mark": {"name": END_MARK}}
        await self._worker.queue_frame(OutputTransportMessageFrame(message=mark))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + END_MARK_TIMEOUT_SECONDS
        while END_MARK not in self._serializer.marks_echoed and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._worker.queue_frame(EndFrame())

    async def cancel(self) -> None:
        if self._finishing is not None and not self._finishing.done():
            self._finishing.cancel()
