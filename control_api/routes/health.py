"""GET /health (liveness, calls under way), /health/ready (dependencies), /health/info (what runs)."""

import asyncio
from importlib import metadata
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine

from control_api import metrics
from control_api.deps import get_services, get_settings, get_store
from models.session_store import SessionStore, SessionStoreUnavailable
from models.settings import Settings
from services import Services

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health(store: Annotated[SessionStore, Depends(get_store)]) -> dict[str, object]:
    try:
        active = await store.count_active_calls()
    except SessionStoreUnavailable:
        return {"status": "degraded", "active_calls": None, "session_store": "unavailable"}
    metrics.SESSIONS_ACTIVE.set(active)
    return {"status": "ok", "active_calls": active}


def _database_answers(engine: Engine) -> bool:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return True


async def _check(name: str, probe) -> tuple[str, str]:
    try:
        ok = await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return name, "timeout"
    except Exception as exc:  # any failure is an answer here, not an error
        return name, f"down ({type(exc).__name__})"
    return name, "ok" if ok else "down"


@router.get("/health/ready", responses={503: {"description": "a dependency is down; `down` names it"}})
async def ready(services: Annotated[Services, Depends(get_services)]) -> JSONResponse:
    checks = dict(
        await asyncio.gather(
            _check("session_store", services.store.ping()),
            _check("database", asyncio.to_thread(_database_answers, services.engine)),
        )
    )
    down = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ready" if not down else "unavailable", "checks": checks, "down": down}
    return JSONResponse(body, status_code=503 if down else 200)


def _version(fallback: str) -> str:
    try:
        return metadata.version("voice-caller")
    except metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        return fallback


@router.get("/health/info")
async def info(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, object]:
    generator = request.app.state.services.context_generator
    return {
        "version": _version(request.app.version),
        "providers": {
            "stt": settings.stt_provider,
            "llm": settings.llm_provider,
            "tts": settings.tts_provider,
            "telephony": settings.telephony_provider,
            "context": "openai" if generator.uses_openai else "template",
            "sms": "twilio" if request.app.state.services.twilio is not None else None,
        },
        "settings": settings.safe_summary(),
    }
