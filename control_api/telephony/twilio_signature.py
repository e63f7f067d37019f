"""Twilio's webhooks are form posts signed with X-Twilio-Signature: the one check every /twilio route uses.

The signature is checked against the URL Twilio was given (PUBLIC_BASE_URL + path + query), not
the URL this process sees, which behind a proxy or tunnel has another scheme and host. A valid
signature replayed with other parameters or at another URL fails, because both are signed.
"""

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, status
from twilio.request_validator import RequestValidator

from control_api import metrics
from models.log_config import get_logger
from models.settings import Settings

log = get_logger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024


def public_url(settings: Settings, request: Request) -> str:
    url = settings.public_base_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


async def signed_form(request: Request, settings: Settings) -> dict[str, str]:
    if settings.twilio_auth_token is None:
        metrics.TWILIO_CALLBACKS_REJECTED.labels("not_configured").inc()
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Twilio callbacks are refused: TWILIO_AUTH_TOKEN is not set")
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="callback body too large")
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    signature = request.headers.get("x-twilio-signature", "")
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    if not signature or not validator.validate(public_url(settings, request), form, signature):
        metrics.TWILIO_CALLBACKS_REJECTED.labels("bad_signature").inc()
        log.warning("twilio_callback_signature_rejected", path=request.url.path)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="X-Twilio-Signature is missing or does not match this URL and its parameters"
        )
    if form.get("AccountSid") != settings.twilio_account_sid:
        metrics.TWILIO_CALLBACKS_REJECTED.labels("wrong_account").inc()
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="AccountSid is not this service's Twilio account")
    return form
