"""Request-scoped access to the process's services (settings, stores, dialer, clients)."""

from collections.abc import Iterator

from fastapi import Request
from sqlmodel import Session

from models.session_store import SessionStore
from models.settings import Settings
from prompts.openai_context import ContextGenerator
from services import Services
from services.dialer import Dialer


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_store(request: Request) -> SessionStore:
    return get_services(request).store


def get_dialer(request: Request) -> Dialer:
    return get_services(request).dialer


def get_context_generator(request: Request) -> ContextGenerator:
    return get_services(request).context_generator


def get_db(request: Request) -> Iterator[Session]:
    with Session(get_services(request).engine) as session:
        yield session
