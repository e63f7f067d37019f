"""The per-address limit on call requests, counted in the session store so every process shares it."""

from __future__ import annotations

import ipaddress
import math

from fastapi import HTTPException, Request, status

from control_api import metrics
from models.session_store import SessionStore, SessionStoreUnavailable

WINDOW_SECONDS = 60


def client_address(request: Request) -> str:
    """The caller's address; IPv6 by /64, since one subscriber usually holds a whole /64.

    Behind a proxy, uvicorn takes it from X-Forwarded-For when the proxy's address is listed in
    FORWARDED_ALLOW_IPS (uvicorn's own setting); otherwise it is the proxy's address.
    """
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def rate_limit_key(address: str) -> str:
    return f"ratelimit:{address}"


def workspace_quota_key(workspace_id: int) -> str:
    return f"ratelimit:workspace:{workspace_id}"


async def _count_in_window(store: SessionStore, key: str, limit: int, refusal: str) -> None:
    """Count one call request under `key`; 429 with Retry-After once over `limit` in the window."""
    try:
        hits, resets_in = await store.window_hit(key, WINDOW_SECONDS)
    except SessionStoreUnavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="session store unavailable; nothing was dialed") from None
    if hits > limit:
        metrics.RATE_LIMIT_REFUSALS.inc()
        retry_after = max(1, math.ceil(resets_in))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{refusal}: at most {limit} call requests per {WINDOW_SECONDS} s; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


async def enforce_workspace_quota(store: SessionStore, workspace_id: int, limit: int) -> None:
    """A backend calling with its workspace key (a form backend behind one address, for many visitors)
    is counted per workspace, not per address."""
    await _count_in_window(store, workspace_quota_key(workspace_id), limit, "workspace quota")


async def enforce_call_rate_limit(request: Request, store: SessionStore, limit: int) -> None:
    """Count this call request against its address's limit."""
    await _count_in_window(store, rate_limit_key(client_address(request)), limit, "rate limit (one address)")
