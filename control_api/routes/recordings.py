"""GET /calls/{id}/recording (API clients) and GET /form/calls/{id}/recording (the web page's player).

A recording is a person's voice: it is never served openly, not even by a demo server without
API_KEY. The API route needs the server's API key or the call's workspace key; the form's route
needs the call's view token in `?token=` (an <audio> element cannot send a header).
"""

import hmac
from pathlib import Path
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.responses import FileResponse
from sqlmodel import Session

from control_api.call_visibility import require_call_visible
from control_api.deps import get_db, get_settings
from control_api.routes.form import view_token
from control_api.workspace_auth import OptionalWorkspaceKey
from models.settings import Settings
from models.tables import Call
from services.recording_store import is_wav, recording_path

router = APIRouter(tags=["recordings"])

WAV_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"audio/wav": {}}, "description": "stereo WAV: caller left, agent right"},
    401: {"description": "no credential for this recording"},
    404: {"description": "unknown call, or no recording (not recorded, or past its retention)"},
}


def _stored_recording(db: Session, settings: Settings, call_id: UUID) -> FileResponse:
    record = db.get(Call, str(call_id))
    missing = HTTPException(status.HTTP_404_NOT_FOUND, detail=f"call {call_id} has no recording")
    if record is None or not record.recording_path:
        raise missing
    path = Path(record.recording_path)
    # Only files under RECORDINGS_DIR are ever served, whatever a row says.
    if path.resolve() != recording_path(settings, str(call_id)).resolve() or not is_wav(path):
        raise missing
    return FileResponse(path, media_type="audio/wav", filename=f"call-{call_id}.wav", content_disposition_type="inline")


@router.get("/calls/{call_id}/recording", name="get_call_recording", response_class=FileResponse, responses=WAV_RESPONSES)
def get_call_recording(
    call_id: UUID,
    db: Annotated[Session, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
    workspace_key: OptionalWorkspaceKey,
    x_api_key: Annotated[str | None, Header(max_length=256)] = None,
) -> FileResponse:
    if workspace_key is None:
        expected = settings.api_key.get_secret_value() if settings.api_key else None
        if expected is None or x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail="a recording needs the API key (X-API-Key) or the call's workspace key"
            )
    require_call_visible(db, workspace_key, call_id)
    return _stored_recording(db, settings, call_id)


@router.get("/form/calls/{call_id}/recording", name="get_form_recording", response_class=FileResponse, responses=WAV_RESPONSES)
def get_form_recording(
    call_id: UUID,
    db: Annotated[Session, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
    token: Annotated[str | None, Query(max_length=128)] = None,
) -> FileResponse:
    if not token or not hmac.compare_digest(token.encode(), view_token(str(call_id), settings).encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="token is missing or is not this call's view token")
    return _stored_recording(db, settings, call_id)
