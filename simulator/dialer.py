"""TELEPHONY_PROVIDER=simulator: a simulated callee answers over the real websocket."""

import asyncio
from collections.abc import Awaitable, Callable

from models.call_job import CallJob
from models.context import ContextInstance
from models.log_config import get_logger
from models.settings import Settings
from services.dialer import DialResult, dial_failure_reason
from services.stream_credential import stream_parameters, ws_url
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script

log = get_logger(__name__)

# Like Twilio's answering-machine detection: `machine_start` soon after the answer, or, with
# VOICEMAIL_ACTION=leave_message (DetectMessageEnd), `machine_end_beep` once the greeting is over.
MACHINE_START_SECONDS = 1.0
GREETING_END_SECONDS = 5.0


class SimulatorDialer:
    def __init__(
        self,
        settings: Settings,
        scenario: str = "happy",
        *,
        callee_ws_url: Callable[[], str | None] | None = None,
        on_unanswered: Callable[[str, str], Awaitable[None]] | None = None,
        on_machine_verdict: Callable[[str, str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self.scenario = scenario
        self._callee_ws_url = callee_ws_url
        # Told (call id, reason) whenever a simulated callee is done; it fails the call only when no
        # stream was ever admitted for it (the callee could not connect, or was refused).
        self._on_unanswered = on_unanswered
        # Told (call id, call sid, AnsweredBy) when the callee is a machine.
        self._on_machine_verdict = on_machine_verdict
        self._calls: set[asyncio.Task] = set()

    def callee_ws_url(self) -> str:
        # The callee runs in this process: it dials where this server listens, whatever PUBLIC_BASE_URL
        # says, unless the media streams are served by a voice pool of their own.
        if self._settings.simulator_ws_url or self._settings.voice_public_url:
            return self._settings.simulator_ws_url or ws_url(self._settings)
        learned = self._callee_ws_url() if self._callee_ws_url else None
        return learned or ws_url(self._settings)

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        params = stream_parameters(self._settings, job.id)
        caller = SimulatedCaller(self.callee_ws_url(), params["call_id"], params["token"], caller_script(self.scenario, context))
        tasks = [asyncio.create_task(self._answer(caller))]
        if self.scenario == "voicemail":
            tasks.append(asyncio.create_task(self._machine_verdict(caller)))
        for task in tasks:
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        return DialResult(twilio_call_sid=caller.call_sid)

    async def _answer(self, caller: SimulatedCaller) -> None:
        await asyncio.sleep(0.3)  # the phone rings before anyone picks up
        try:
            report = await caller.run()
            log.info("simulated_call_finished", call_id=caller.call_id, hung_up_by=report.hung_up_by)
            reason = f"the media stream closed before the call started (close code {report.close_code}: {report.close_reason or 'no reason'})"
        except Exception as exc:
            log.error("simulated_call_failed", call_id=caller.call_id, error=repr(exc))
            reason = f"the simulated callee could not reach {caller.ws_url}: {dial_failure_reason(exc)}"
        if self._on_unanswered is not None:
            try:
                await self._on_unanswered(caller.call_id, reason)
            except Exception:
                log.exception("dial_failure_not_recorded", call_id=caller.call_id)

    async def _machine_verdict(self, caller: SimulatedCaller) -> None:
        if self._on_machine_verdict is None:
            return
        leave_message = self._settings.voicemail_action == "leave_message"
        await asyncio.sleep(GREETING_END_SECONDS if leave_message else MACHINE_START_SECONDS)
        try:
            await self._on_machine_verdict(
                caller.call_id, caller.call_sid, "machine_end_beep" if leave_message else "machine_start"
            )
        except Exception:
            log.exception("machine_verdict_not_recorded", call_id=caller.call_id)

    async def aclose(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
