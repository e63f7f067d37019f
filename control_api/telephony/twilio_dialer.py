"""TELEPHONY_PROVIDER=twilio: Twilio rings the number and streams the answered call to /ws."""

from models.call_job import CallJob
from models.context import ContextInstance
from models.log_config import get_logger
from models.settings import Settings
from services.dialer import DialResult
from services.twilio_account import TwilioAccount

log = get_logger(__name__)


class TwilioDialer:
    """The account belongs to the process's services, which close it; the dialer only uses it."""

    def __init__(self, settings: Settings, account: TwilioAccount) -> None:
        self.account = account
        if not settings.public_base_url.startswith("https://") and not settings.twilio_api_base_url:
            # Twilio only opens wss:// media streams and must reach the callbacks from the internet.
            log.warning("twilio_needs_public_https_url", public_base_url=settings.public_base_url)

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        return DialResult(twilio_call_sid=await self.account.create_call(job))

    async def aclose(self) -> None:
        return None
