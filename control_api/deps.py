"""Request-scoped access to the process's settings, stores and dialer."""

from collections.abc import Iterator

from fastapi import Request
from sqlmodel import Session

from control_api.telephony.dialer import Dialer
from models.session_store import SessionStore
from models.settings import Settings
from prompts.openai_context import ContextGenerator
from voice_worker.worker_deps import WorkerDeps


def get_worker_deps(request: Request) -> WorkerDeps:
    return request.app.state.worker_deps


def get_settings(request: Request) -> Settings:
    return request.app.state.worker_deps.settings


def get_store(request: Request) -> SessionStore:
    return request.app.state.worker_deps.store


def get_dialer(request: Request) -> Dialer:
    return request.app.state.dialer


def get_context_generator(request: Request) -> ContextGenerator:
    return request.app.state.context_generator


def get_db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.worker_deps.engine) as session:
        yield session
