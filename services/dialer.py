"""What starting a call looks like to the rest of the process, whoever places it."""

from dataclasses import dataclass
from typing import Protocol

from models.call_job import CallJob
from models.context import ContextInstance
from models.log_config import mask_phone_numbers


@dataclass
class DialResult:
    twilio_call_sid: str | None = None
    # Given when nobody will call in on our behalf: the client must connect to /ws itself.
    stream_parameters: dict[str, str] | None = None


class Dialer(Protocol):
    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult: ...

    async def aclose(self) -> None: ...


REASON_CHARACTERS = 300


def dial_failure_reason(exc: BaseException) -> str:
    """Words a caller of the API can act on: Twilio's own error, else the exception; numbers masked."""
    code, message = getattr(exc, "code", None), getattr(exc, "msg", None)
    if code is not None and isinstance(message, str):  # twilio's TwilioRestException
        reason = f"Twilio refused the call (error {code}): {message}"
    else:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    reason = mask_phone_numbers(reason)
    return reason if len(reason) <= REASON_CHARACTERS else reason[:REASON_CHARACTERS] + "…"


class NoDialer:
    """The dialer of a process that never places calls (the voice pool: it only answers media streams)."""

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        raise RuntimeError("this process serves media streams only; calls are placed by the control API")

    async def aclose(self) -> None:
        return None
