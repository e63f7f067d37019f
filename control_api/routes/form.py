"""The web form: GET / and its assets, POST /form/calls (its submit), GET /form/calls/{id} (its live view).

Why a route of its own: with API_KEY set, POST /calls is for the operator's backend and needs the
key, which a browser must never hold. The form's submit is the public way in, so it always goes
through the abuse limits (the per-address rate limit, and Turnstile when TURNSTILE_SECRET is set);
it creates the call exactly as POST /calls does (it runs the same endpoint). Its answer adds a view
token, an HMAC of the call id, that lets that browser, and only whoever holds the token, follow the
call's status, outcome and transcript without the API key.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from functools import lru_cache
from importlib import resources
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from control_api.deps import get_settings
from control_api.routes.calls import create_call, get_call
from control_api.security import guard_public_call_request
from models.call_views import CallAccepted, CallStatusResponse
from models.settings import Settings

router = APIRouter(tags=["form"])

TURNSTILE_SCRIPT = "https://challenges.cloudflare.com/turnstile/v0/api.js"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "campaign.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class FormCallAccepted(CallAccepted):
    view_url: str
    # Send it back as X-Call-Token to read the call at view_url.
    view_token: str


def view_token(call_id: str, settings: Settings) -> str:
    # A different message from the stream token's (the bare id), so neither token opens the other door.
    return hmac.new(settings.secret_key.get_secret_value().encode(), f"form-view:{call_id}".encode(), hashlib.sha256).hexdigest()


@lru_cache
def _asset(name: str) -> bytes:
    return resources.files("control_api").joinpath("web", name).read_bytes()


def _content_security_policy(turnstile: bool) -> str:
    # Turnstile's script and its challenge frame come from Cloudflare; nothing else may load.
    scripts, frames = (
        ("'self' https://challenges.cloudflare.com", "https://challenges.cloudflare.com") if turnstile else ("'self'", "'none'")
    )
    return (
        f"default-src 'self'; script-src {scripts}; frame-src {frames}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def render_form(site_key: str | None) -> str:
    page = _asset("index.html").decode()
    if site_key:
        # Only with a site key does the page load anything from outside this server.
        page = page.replace("<!--turnstile-script-->", f'<script src="{TURNSTILE_SCRIPT}" async defer></script>')
        page = page.replace(
            "<!--turnstile-widget-->", f'<div class="cf-turnstile" data-sitekey="{html.escape(site_key, quote=True)}"></div>'
        )
    return page


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def form_page(settings: Annotated[Settings, Depends(get_settings)]) -> HTMLResponse:
    turnstile = bool(settings.turnstile_site_key)
    return HTMLResponse(
        render_form(settings.turnstile_site_key),
        headers={
            "Content-Security-Policy": _content_security_policy(turnstile),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.get("/campaign", response_class=HTMLResponse, include_in_schema=False)
async def campaign_page() -> HTMLResponse:
    """A campaign's progress, live. The page holds nothing; its script reads GET /campaigns/{id} with the
    workspace key the operator types in (or passes in the URL's #fragment, which no server sees)."""
    return HTMLResponse(
        _asset("campaign.html").decode(),
        headers={
            "Content-Security-Policy": _content_security_policy(turnstile=False),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.get("/static/{asset}", include_in_schema=False)
async def form_asset(asset: str) -> Response:
    if asset not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no asset named {asset!r}")
    return Response(
        _asset(asset),
        media_type=ASSETS[asset],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"},
    )


@router.post(
    "/form/calls",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FormCallAccepted,
    dependencies=[Depends(guard_public_call_request)],
    responses={
        400: {"description": "turnstile_token missing"},
        403: {"description": "turnstile_token rejected"},
        409: {"description": "this number is already being called"},
        429: {"description": "rate limit reached; see Retry-After"},
    },
)
async def create_form_call(
    created: Annotated[CallAccepted, Depends(create_call)],
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
) -> FormCallAccepted:
    return FormCallAccepted(
        **created.model_dump(),
        view_url=str(request.url_for("get_form_call", call_id=created.id)),
        view_token=view_token(created.id, settings),
    )


def _require_view_token(
    call_id: UUID,
    settings: Annotated[Settings, Depends(get_settings)],
    x_call_token: Annotated[str | None, Header(max_length=128)] = None,
) -> None:
    if not x_call_token or not hmac.compare_digest(x_call_token.encode(), view_token(str(call_id), settings).encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="X-Call-Token is missing or is not this call's view token")


@router.get(
    "/form/calls/{call_id}",
    response_model=CallStatusResponse,
    name="get_form_call",
    dependencies=[Depends(_require_view_token)],
    responses={403: {"description": "missing or wrong X-Call-Token"}, 404: {"description": "unknown or expired call"}},
)
async def get_form_call(call: Annotated[CallStatusResponse, Depends(get_call)]) -> CallStatusResponse:
    return call
