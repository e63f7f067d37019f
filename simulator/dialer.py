"""TELEPHONY_PROVIDER=simulator: a simulated callee answers over the real websocket."""

import asyncio

from models.call_job import CallJob
from models.context import ContextInstance
from models.log_config import get_logger
from models.settings import Settings
from services.dialer import DialResult
from services.stream_credential import stream_parameters, ws_url
from simulator.callee import SimulatedCaller
from simulator.caller_scripts import caller_script

log = get_logger(__name__)


class SimulatorDialer:
    def __init__(self, settings: Settings, scenario: str = "happy") -> None:
        self._settings = settings
        self.scenario = scenario
        self._calls: set[asyncio.Task] = set()

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        params = stream_parameters(self._settings, job.id)
        caller = SimulatedCaller(
            ws_url(self._settings), params["call_id"], params["token"], caller_script(self.scenario, context)
        )
        task = asyncio.create_task(self._answer(caller))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return DialResult(twilio_call_sid=caller.call_sid)

    async def _answer(self, caller: SimulatedCaller) -> None:
        await asyncio.sleep(0.3)  # the phone rings before anyone picks up
        try:
            report = await caller.run()
            log.info("simulated_call_finished", call_id=caller.call_id, hung_up_by=report.hung_up_by)
        except Exception as exc:
            log.error("simulated_call_failed", call_id=caller.call_id, error=repr(exc))

    async def aclose(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
