"""What starting a call looks like to the rest of the process, whoever places it."""

from dataclasses import dataclass
from typing import Protocol

from models.call_job import CallJob
from models.context import ContextInstance


@dataclass
class DialResult:
    twilio_call_sid: str | None = None
    # Given when nobody will call in on our behalf: the client must connect to /ws itself.
    stream_parameters: dict[str, str] | None = None


class Dialer(Protocol):
    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult: ...

    async def aclose(self) -> None: ...
