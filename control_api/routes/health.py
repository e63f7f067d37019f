"""GET /health: liveness, with the number of calls under way."""

from typing import Annotated

from fastapi import APIRouter, Depends

from control_api.deps import get_store
from models.session_store import SessionStore, SessionStoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(store: Annotated[SessionStore, Depends(get_store)]) -> dict[str, object]:
    try:
        active = await store.count_active_calls()
    except SessionStoreUnavailable:
        return {"status": "degraded", "active_calls": None, "session_store": "unavailable"}
    return {"status": "ok", "active_calls": active}
