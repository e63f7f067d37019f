"""Per-workspace API keys: issued once, stored as SHA-256, and the scope of every domain query.

A request names its workspace only through `Authorization: Bearer <key>`; the routes take the
workspace from here and never from the path or the body, so one workspace's key cannot reach
another's rows. Creating a workspace needs the server's API_KEY (X-API-Key) when one is set.
"""

import asyncio
import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlmodel import Session, select

from control_api.deps import get_db, get_settings
from models.call_job import utcnow
from models.domain import Workspace, WorkspaceApiKey
from models.settings import Settings

KEY_PREFIX = "wsk_"
SHOWN_PREFIX_LENGTH = 12


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits: a fast hash is enough, nothing to slow down a guesser.
    return hashlib.sha256(key.encode()).hexdigest()


def issue_api_key(db: Session, workspace: Workspace, name: str = "default") -> tuple[WorkspaceApiKey, str]:
    """A new key for the workspace; the plain key is returned here and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = WorkspaceApiKey(
        workspace_id=workspace.id, name=name, key_prefix=key[:SHOWN_PREFIX_LENGTH], key_hash=hash_api_key(key)
    )
    db.add(record)
    return record, key


def workspace_for_key(db: Session, key: str) -> tuple[Workspace, WorkspaceApiKey] | None:
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    record = db.exec(select(WorkspaceApiKey).where(WorkspaceApiKey.key_hash == hash_api_key(key))).first()
    if record is None or record.revoked_at is not None:
        return None
    workspace = db.get(Workspace, record.workspace_id)
    return None if workspace is None else (workspace, record)


def workspace_of_request(engine, authorization: str | None) -> Workspace | None:
    """The workspace whose valid key the request carries, or None (no key, or a wrong one)."""
    key = _bearer(authorization)
    if key is None:
        return None
    with Session(engine) as db:
        found = workspace_for_key(db, key)
    return found[0] if found else None


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def optional_workspace_key(
    db: Annotated[Session, Depends(get_db)],
    authorization: Annotated[str | None, Header()] = None,
) -> tuple[Workspace, WorkspaceApiKey] | None:
    """The caller's workspace when it sent a key; a key that is sent but wrong is refused, never ignored."""
    key = _bearer(authorization)
    if key is None:
        return None
    found = workspace_for_key(db, key)
    if found is None:
        raise _unauthorized("the workspace API key is unknown or revoked")
    return found


async def optional_workspace_key_off_loop(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> tuple[Workspace, WorkspaceApiKey] | None:
    """`optional_workspace_key` for a hot path: no thread hop and no database session when the
    request carries no key (the web form), the lookup in a worker thread when it does."""
    if _bearer(authorization) is None:
        return None
    return await asyncio.to_thread(_key_lookup, request.app.state.services.engine, authorization)


def _key_lookup(engine, authorization: str | None) -> tuple[Workspace, WorkspaceApiKey] | None:
    with Session(engine, expire_on_commit=False) as db:
        found = optional_workspace_key(db, authorization)
        if found is not None:
            db.expunge_all()
        return found


def current_workspace_key(
    found: Annotated[tuple[Workspace, WorkspaceApiKey] | None, Depends(optional_workspace_key)],
) -> tuple[Workspace, WorkspaceApiKey]:
    if found is None:
        raise _unauthorized("send the workspace API key as `Authorization: Bearer <key>`")
    return found


def current_workspace(found: Annotated[tuple[Workspace, WorkspaceApiKey], Depends(current_workspace_key)]) -> Workspace:
    return found[0]


def require_admin(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """Creating a workspace: open when no API_KEY is configured (a new workspace sees only itself)."""
    if settings.api_key is None:
        return
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), settings.api_key.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="creating a workspace needs the server's API key (X-API-Key)")


def revoke(record: WorkspaceApiKey) -> None:
    record.revoked_at = record.revoked_at or utcnow()


CurrentWorkspace = Annotated[Workspace, Depends(current_workspace)]
OptionalWorkspaceKey = Annotated[tuple[Workspace, WorkspaceApiKey] | None, Depends(optional_workspace_key)]
# The same, for POST /calls: see optional_workspace_key_off_loop.
OptionalWorkspaceKeyOffLoop = Annotated[tuple[Workspace, WorkspaceApiKey] | None, Depends(optional_workspace_key_off_loop)]
