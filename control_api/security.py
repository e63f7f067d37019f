"""API_KEY: when set, every HTTP route needs it, except the few that a visitor or Twilio must reach.

A middleware rather than a per-route dependency, so a route added later is protected by default.
Open without the key:
- the web form and its assets (`GET /`, `/static/...`), and the campaign page (`GET /campaign`: an
  empty page; its script reads GET /campaigns/{id} with the workspace key, and the API key if set), its submit (`POST /form/calls`, guarded by
  the rate limit and Turnstile instead) and its live view (`GET /form/calls/{id}`, guarded by the
  per-call view token the submit returned);
- `GET /health` and `GET /health/ready`, for load balancers;
- `POST /twilio/...`, which checks Twilio's signature, and `/webhooks/...`, which checks the
  workspace's WEBHOOK_SECRET signature;
- websockets: `/ws` admits a stream by its own per-call token.
The key goes in `X-API-Key` only: `Authorization: Bearer` carries the per-workspace keys
(control_api/workspace_auth.py), a different credential.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from control_api import metrics
from control_api.deps import get_settings, get_store
from control_api.rate_limit import enforce_call_rate_limit, enforce_workspace_quota
from control_api.turnstile import require_turnstile
from control_api.workspace_auth import workspace_of_request
from models.session_store import SessionStore
from models.settings import Settings

OPEN_PATHS = frozenset({"/", "/campaign", "/favicon.ico", "/health", "/health/ready", "/form/calls"})
OPEN_PREFIXES = ("/static/", "/form/calls/", "/twilio/", "/webhooks/")


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key else None


def key_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.api_key or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if key_matches(presented_key(headers), self.api_key):
            await self.app(scope, receive, send)
            return
        metrics.API_KEY_REFUSALS.inc()
        body = json.dumps({"detail": "missing or wrong API key: send it in the X-API-Key header"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"ApiKey"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def request_has_valid_key(headers: dict[bytes, bytes], api_key: str | None) -> bool:
    """True when the request proved the API key (then the public-form limits do not apply)."""
    return bool(api_key) and key_matches(presented_key(headers), api_key or "")


async def guard_public_call_request(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    store: Annotated[SessionStore, Depends(get_store)],
) -> None:
    """The abuse limits on a call request from the public (the form, or POST /calls without API_KEY).

    A request that carries the valid API key comes from the operator's own backend and skips them.
    Runs before the call is created: a refused request dials nobody.
    """
    if request_has_valid_key(dict(request.scope["headers"]), settings.api_key.get_secret_value() if settings.api_key else None):
        return
    # A workspace key: the workspace's own backend (a form's server relaying many visitors from one
    # address), held to the workspace's quota instead of the per-address limit and the human check.
    authorization = request.headers.get("authorization")
    workspace = (
        await asyncio.to_thread(workspace_of_request, request.app.state.services.engine, authorization) if authorization else None
    )
    if workspace is not None and workspace.id is not None:
        await enforce_workspace_quota(store, workspace.id, settings.workspace_calls_per_minute)
        return
    await enforce_call_rate_limit(request, store, settings.rate_limit_per_minute)
    if settings.turnstile_secret is not None:
        token, remote_ip = await _turnstile_token(request), request.client.host if request.client else None
        await require_turnstile(request.app.state.services.http, settings, token, remote_ip)


async def _turnstile_token(request: Request) -> str | None:
    # The token is a field of the call request body; FastAPI has already read and parsed it as JSON.
    try:
        body = await request.json()
    except ValueError:
        return None
    token = body.get("turnstile_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) else None
