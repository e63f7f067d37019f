"""Starting a call: Twilio, the built-in simulated callee, or nobody (an external stream connects)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from control_api.dial_failures import dial_failure_reason
from control_api.listening_address import ListeningAddress
from models.call_job import CallJob
from models.context import ContextInstance
from models.log_config import get_logger
from models.settings import Settings
from voice_worker.stream_token import stream_token

log = get_logger(__name__)


@dataclass
class DialResult:
    twilio_call_sid: str | None = None
    # Given when nobody will call in on our behalf: the client must connect to /ws itself.
    stream_parameters: dict[str, str] | None = None


class Dialer(Protocol):
    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult: ...

    async def aclose(self) -> None: ...


def ws_url(settings: Settings) -> str:
    base = settings.public_base_url.rstrip("/")
    scheme = "wss" if base.startswith("https://") else "ws"
    return f"{scheme}://{base.split('://', 1)[1]}/ws"


def stream_parameters(settings: Settings, job: CallJob) -> dict[str, str]:
    return {"call_id": str(job.id), "token": stream_token(job.id, settings.secret_key.get_secret_value())}


class ExternalStreamDialer:
    """TELEPHONY_PROVIDER=none: the job waits for a media stream that someone else opens."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        return DialResult(stream_parameters={**stream_parameters(self._settings, job), "url": ws_url(self._settings)})

    async def aclose(self) -> None:
        return None


class SimulatorDialer:
    """TELEPHONY_PROVIDER=simulator: a simulated callee answers over the real websocket."""

    def __init__(
        self,
        settings: Settings,
        scenario: str = "happy",
        *,
        listening: ListeningAddress | None = None,
        on_unanswered: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self.scenario = scenario
        self._listening = listening
        # Told (call id, reason) whenever a simulated callee is done; it fails the call only when no
        # stream was ever admitted for it (the callee could not connect, or was refused).
        self._on_unanswered = on_unanswered
        self._calls: set[asyncio.Task] = set()

    def callee_ws_url(self) -> str:
        # The callee runs in this process: it dials where this server listens, whatever PUBLIC_BASE_URL says.
        learned = self._listening.ws_url() if self._listening else None
        return self._settings.simulator_ws_url or learned or ws_url(self._settings)

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        from control_api.telephony.caller_scripts import caller_script
        from control_api.telephony.simulated_caller import SimulatedCaller

        params = stream_parameters(self._settings, job)
        caller = SimulatedCaller(self.callee_ws_url(), params["call_id"], params["token"], caller_script(self.scenario, context))
        task = asyncio.create_task(self._answer(caller))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return DialResult(twilio_call_sid=caller.call_sid)

    async def _answer(self, caller) -> None:
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

    async def aclose(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)


def make_dialer(
    settings: Settings,
    *,
    listening: ListeningAddress | None = None,
    on_unanswered: Callable[[str, str], Awaitable[None]] | None = None,
) -> Dialer:
    """`listening` and `on_unanswered` serve the simulator (see SimulatorDialer)."""
    if settings.telephony_provider == "twilio":
        from control_api.telephony.twilio_dialer import TwilioDialer

        return TwilioDialer(settings)
    if settings.telephony_provider == "none":
        return ExternalStreamDialer(settings)
    return SimulatorDialer(settings, listening=listening, on_unanswered=on_unanswered)
