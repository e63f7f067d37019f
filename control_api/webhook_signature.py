"""Lead webhooks from another system, authenticated per workspace with an HMAC-SHA256 of the body.

The sender signs `{timestamp}.{raw body}` with the workspace's webhook secret and sends
`X-Workspace-Id`, `X-Webhook-Timestamp` (Unix seconds) and `X-Webhook-Signature: sha256=<hex>`.
A signature over another body or timestamp fails; a correctly signed request whose timestamp is
more than WEBHOOK_TOLERANCE_SECONDS away from now is a replay and fails too (and within that window
the external ids make a repeated request change nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import HTTPException, Request, status
from sqlmodel import Session

from models.domain import Workspace
from models.log_config import get_logger

log = get_logger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300
MAX_WEBHOOK_BYTES = 64 * 1024
SIGNATURE_PREFIX = "sha256="


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _refused(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail)


def check_signature(secret: str | None, timestamp: str, body: bytes, signature: str, now: float) -> None:
    if not secret:
        raise _refused("this workspace has no webhook secret: create one with POST /workspaces/{id}/webhook-secret")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise _refused("X-Webhook-Timestamp must be Unix seconds") from None
    if not hmac.compare_digest(webhook_signature(secret, timestamp, body), signature):
        raise _refused("X-Webhook-Signature does not match the body and timestamp")
    if abs(now - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
        raise _refused(f"X-Webhook-Timestamp is more than {WEBHOOK_TOLERANCE_SECONDS} seconds from now: a replay")


async def signed_webhook(request: Request, db: Session, now: float | None = None) -> tuple[Workspace, bytes]:
    """The workspace whose secret signed this request, and the body it signed; 401 otherwise."""
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="webhook body too large")
    raw_id = request.headers.get("x-workspace-id", "")
    workspace = db.get(Workspace, int(raw_id)) if raw_id.isdigit() else None
    try:
        check_signature(
            workspace.webhook_secret if workspace else None,
            request.headers.get("x-webhook-timestamp", ""),
            body,
            request.headers.get("x-webhook-signature", ""),
            time.time() if now is None else now,
        )
    except HTTPException as refused:
        log.warning("webhook_refused", path=request.url.path, reason=refused.detail)
        raise
    assert workspace is not None  # check_signature refuses a request without one
    return workspace, body
