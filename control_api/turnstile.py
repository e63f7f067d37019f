"""Cloudflare Turnstile: the form's token is checked with siteverify before anything is dialed."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi import HTTPException, status

from control_api import metrics
from models.log_config import get_logger
from models.settings import Settings

log = get_logger(__name__)

VERIFY_TIMEOUT_SECONDS = 5.0


@dataclass
class TurnstileVerdict:
    success: bool
    error_codes: list[str] = field(default_factory=list)
    hostname: str | None = None


class TurnstileUnavailable(RuntimeError):
    """siteverify could not be asked; the request is refused rather than let through."""


async def verify_token(http: httpx.AsyncClient, settings: Settings, token: str, remote_ip: str | None) -> TurnstileVerdict:
    if settings.turnstile_secret is None:
        raise ValueError("TURNSTILE_SECRET is not set")
    data = {"secret": settings.turnstile_secret.get_secret_value(), "response": token}
    if remote_ip:
        data["remoteip"] = remote_ip
    try:
        answer = await http.post(settings.turnstile_verify_url, data=data, timeout=VERIFY_TIMEOUT_SECONDS)
        answer.raise_for_status()
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise TurnstileUnavailable(type(exc).__name__) from exc
    if not isinstance(body, dict):
        raise TurnstileUnavailable("siteverify answered something other than a JSON object")
    codes = body.get("error-codes") or []
    return TurnstileVerdict(
        success=body.get("success") is True, error_codes=[str(c) for c in codes], hostname=body.get("hostname")
    )


async def require_turnstile(http: httpx.AsyncClient, settings: Settings, token: str | None, remote_ip: str | None) -> None:
    """400 without a token, 403 when Cloudflare says no, 503 when Cloudflare cannot be asked."""
    if not token:
        metrics.TURNSTILE_REFUSALS.labels("missing").inc()
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="turnstile_token is required: complete the human check on the form"
        )
    try:
        verdict = await verify_token(http, settings, token, remote_ip)
    except TurnstileUnavailable as exc:
        metrics.TURNSTILE_REFUSALS.labels("unavailable").inc()
        log.warning("turnstile_unavailable", error=str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="the human check could not be verified right now; try again"
        ) from None
    if not verdict.success:
        metrics.TURNSTILE_REFUSALS.labels("rejected").inc()
        codes = ", ".join(verdict.error_codes) or "no reason given"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"turnstile_token was rejected ({codes}); complete the human check again"
        )
