"""One Twilio account's REST operations: calls that stream to our `/ws`, hang-ups, SMS.

The real `twilio` client does the REST calls. Its requests go through `TwilioRestHttpClient`, an
async transport on httpx that can send every request to another API root: `TWILIO_API_BASE_URL`
points it at a local emulator (tests/support/twilio_rest_emulator.py) without touching
anything else in the client.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, VoiceResponse

from models.call_job import CallJob
from models.call_request import mask_phone
from models.log_config import get_logger
from models.settings import Settings
from services.stream_credential import stream_parameters, ws_url

log = get_logger(__name__)

# Seconds Twilio lets the phone ring before it gives up with `no-answer`.
RING_TIMEOUT_SECONDS = 30
# Twilio's own ceiling on the call, a safety net above the agent's MAX_CALL_SECONDS.
TIME_LIMIT_MARGIN_SECONDS = 60
# Said when the media stream is refused or drops: the callee is never left in silence.
STREAM_FAILED_APOLOGY = "Sorry, we could not connect this call. Goodbye."
STATUS_CALLBACK_EVENTS = ["initiated", "ringing", "answered", "completed"]
STATUS_CALLBACK_PATH = "/twilio/status"
MESSAGE_STATUS_PATH = "/twilio/message-status"


class TwilioRestHttpClient(AsyncHttpClient):
    """twilio's async HTTP client interface on httpx, optionally aimed at another API root."""

    def __init__(self, api_base_url: str | None = None, timeout: float = 10.0) -> None:
        super().__init__(logging.getLogger("twilio.http"), is_async=True, timeout=timeout)
        self._api_root = urlsplit(api_base_url.rstrip("/")) if api_base_url else None
        self._http = httpx.AsyncClient(timeout=timeout)

    def _target(self, url: str) -> str:
        if self._api_root is None:
            return url
        parts = urlsplit(url)
        # Only Twilio's own hosts move; anything else (a media URL, say) is left alone.
        if not (parts.hostname or "").endswith("twilio.com"):
            return url
        return urlunsplit((self._api_root.scheme, self._api_root.netloc, self._api_root.path + parts.path, parts.query, ""))

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        answer = await self._http.request(
            method.upper(),
            self._target(uri),
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout or self.timeout,
            follow_redirects=allow_redirects,
        )
        return Response(answer.status_code, answer.text, answer.headers)

    async def close(self) -> None:
        await self._http.aclose()


def status_callback_url(settings: Settings, job: CallJob) -> str:
    """Where Twilio reports on this call; the call id in the URL is covered by Twilio's signature."""
    return f"{settings.public_base_url.rstrip('/')}{STATUS_CALLBACK_PATH}?{urlencode({'call_id': str(job.id)})}"


def message_status_url(settings: Settings) -> str:
    """Where Twilio reports each text's delivery (signed like every other callback)."""
    return settings.public_base_url.rstrip("/") + MESSAGE_STATUS_PATH


def connect_stream_twiml(settings: Settings, job: CallJob) -> str:
    """<Connect><Stream> to our /ws with the call's id and token, then an apology and a hang-up.

    Twilio runs the verbs after <Connect> only when the stream ends while the call is still up:
    when /ws refused the stream or the worker failed. A call the agent ends is hung up over REST first.
    """
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=ws_url(settings))
    for name, value in stream_parameters(settings, job.id).items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    response.say(STREAM_FAILED_APOLOGY)
    response.hangup()
    return str(response)


class TwilioAccount:
    """The REST operations this service uses on one Twilio account."""

    def __init__(self, settings: Settings, http_client: TwilioRestHttpClient | None = None) -> None:
        if not settings.twilio_configured or settings.twilio_auth_token is None:
            raise ValueError("TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER are all required")
        self.settings = settings
        self.from_number = settings.twilio_from_number or ""
        self._http = http_client or TwilioRestHttpClient(settings.twilio_api_base_url)
        self.client = Client(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            account_sid=settings.twilio_account_sid,
            http_client=self._http,
        )

    def call_options(self, job: CallJob) -> dict[str, Any]:
        callback = status_callback_url(self.settings, job)
        options: dict[str, Any] = {
            "to": job.phone,
            "from_": self.from_number,
            "twiml": connect_stream_twiml(self.settings, job),
            "status_callback": callback,
            "status_callback_event": STATUS_CALLBACK_EVENTS,
            "status_callback_method": "POST",
            "timeout": RING_TIMEOUT_SECONDS,
            "time_limit": int(self.settings.max_call_seconds) + TIME_LIMIT_MARGIN_SECONDS,
        }
        if self.settings.twilio_machine_detection:
            # Asynchronous AMD: the callee hears the agent at once instead of after seconds of
            # detection; a machine verdict arrives at the same callback and ends the call as voicemail.
            options |= {
                "machine_detection": "Enable",
                "async_amd": "true",
                "async_amd_status_callback": callback,
                "async_amd_status_callback_method": "POST",
            }
        return options

    async def create_call(self, job: CallJob) -> str:
        call = await self.client.calls.create_async(**self.call_options(job))
        log.info("twilio_call_created", call_id=str(job.id), call_sid=call.sid, phone=mask_phone(job.phone))
        return str(call.sid)

    async def hang_up(self, call_sid: str) -> None:
        await self.client.calls(call_sid).update_async(status="completed")

    async def send_sms(self, to: str, body: str, *, from_: str | None = None, status_callback: str | None = None) -> str:
        """Send a text; `from_` is one of the workspace's own numbers (default TWILIO_FROM_NUMBER)."""
        options: dict[str, Any] = {"to": to, "from_": from_ or self.from_number, "body": body}
        if status_callback:
            options["status_callback"] = status_callback
        message = await self.client.messages.create_async(**options)
        return str(message.sid)

    async def aclose(self) -> None:
        await self._http.close()
