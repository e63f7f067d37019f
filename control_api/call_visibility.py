"""Who may read a call and its context through the API, and how much of the context they see.

A request with a workspace key (control_api/workspace_auth.py) reads only its own workspace's calls
and contexts; anything else answers 404, exactly as an unknown id does, so a key cannot probe for
other workspaces' ids. A request without one is governed as before: by API_KEY when the server has
one (the operator sees every call), openly when it has none (the demo); the web form reads its call
by its view token. A context is shown with its phone number masked, whoever asks: the caller of the
API already has the number, and the context is the place it would otherwise leak from.
"""

from uuid import UUID

from fastapi import HTTPException, status
from sqlmodel import Session, col, select

from control_api.workspace_auth import OptionalWorkspaceKey
from models.call_queue import CallAttempt
from models.call_request import mask_phone
from models.context import ContextInstance
from models.tables import Call


def _not_found(what: str, item_id: UUID) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} {item_id} is unknown or has expired")


def require_call_visible(db: Session, workspace_key: OptionalWorkspaceKey, call_id: UUID) -> None:
    if workspace_key is None:
        return
    record = db.get(Call, str(call_id))
    owner = record.workspace_id if record is not None else None
    if record is None:  # not placed yet: its queue attempt names the workspace
        owner = db.exec(select(CallAttempt.workspace_id).where(col(CallAttempt.call_id) == str(call_id))).first()
    if owner is None or owner != workspace_key[0].id:
        raise _not_found("call", call_id)


def require_context_visible(db: Session, workspace_key: OptionalWorkspaceKey, context_id: UUID) -> None:
    if workspace_key is None:
        return
    # A context belongs to the workspace of the call that runs on it.
    owner = db.exec(select(Call.workspace_id).where(Call.context_id == str(context_id))).first()
    if owner is None or owner != workspace_key[0].id:
        raise _not_found("context", context_id)


def public_context(context: ContextInstance) -> ContextInstance:
    return context.model_copy(update={"phone": mask_phone(context.phone)})
