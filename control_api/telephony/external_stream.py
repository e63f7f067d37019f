"""TELEPHONY_PROVIDER=none: the job waits for a media stream that someone else opens."""

from models.call_job import CallJob
from models.context import ContextInstance
from models.settings import Settings
from services.dialer import DialResult
from services.stream_credential import stream_parameters, ws_url


class ExternalStreamDialer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        return DialResult(stream_parameters={**stream_parameters(self._settings, job.id), "url": ws_url(self._settings)})

    async def aclose(self) -> None:
        return None
