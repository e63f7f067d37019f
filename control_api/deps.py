"""Request-scoped access to the process's services (settings, stores, dialer, clients).

`async def` although they await nothing: FastAPI runs a plain `def` dependency in its thread pool,
a hand-over to another thread and back for an attribute lookup, several times a request.
"""

from collections.abc import Iterator

from fastapi import Request
from sqlmodel import Session

from models.session_store import SessionStore
from models.settings import Settings
from prompts.openai_context import ContextGenerator
from services import Services
from services.dialer import Dialer


def _services(request: Request) -> Services:
    return request.app.state.services


async def get_services(request: Request) -> Services:
    return _services(request)


async def get_settings(request: Request) -> Settings:
    return _services(request).settings


async def get_store(request: Request) -> SessionStore:
    return _services(request).store


async def get_dialer(request: Request) -> Dialer:
    return _services(request).dialer


async def get_context_generator(request: Request) -> ContextGenerator:
    return _services(request).context_generator


def get_db(request: Request) -> Iterator[Session]:
    with Session(_services(request).engine) as session:
        yield session
