"""The process's shared services: what the control API and the voice worker both use, built once.

`open_services` is the one place they are opened (at start-up) and closed (at shutdown); the app
keeps the result as `app.state.services`. What only one side uses still lives here when it has a
lifetime to manage (the dialer, the context generator), so that nothing else holds open clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from models.database import init_db, make_engine, make_loop_engine
from models.outcome_journal import OutcomeJournal
from models.session_store import SessionStore, create_session_store
from models.settings import Settings
from prompts.openai_context import ContextGenerator
from services.dialer import Dialer
from services.sms_responder import SmsResponder
from services.twilio_account import TwilioAccount

DialerFactory = Callable[[Settings, TwilioAccount | None], Dialer]


@dataclass
class Services:
    settings: Settings
    store: SessionStore
    engine: Engine
    # One HTTP client for outside checks (Turnstile's siteverify).
    http: httpx.AsyncClient
    # The Twilio account (calls, hang-ups, SMS), when TWILIO_* are set.
    twilio: TwilioAccount | None
    context_generator: ContextGenerator
    dialer: Dialer
    # Writes the agent's text replies (OpenAI or the rules).
    sms_responder: SmsResponder
    # Where finished calls are journaled before the database (after_call/outcome_writer.py).
    journal: OutcomeJournal
    # The same database for steps run on the event loop (POST /calls's); None on SQLite.
    loop_engine: AsyncEngine | None = None


def assemble_services(
    settings: Settings, store: SessionStore, engine: Engine, twilio: TwilioAccount | None, dialer: Dialer
) -> Services:
    """The services around an open store, engine and account; the clients it opens close with `open_services`."""
    return Services(
        settings=settings,
        store=store,
        engine=engine,
        http=httpx.AsyncClient(timeout=10),
        twilio=twilio,
        context_generator=ContextGenerator(settings),
        dialer=dialer,
        sms_responder=SmsResponder(settings),
        journal=OutcomeJournal(settings.outcome_journal_dir),
    )


@contextlib.asynccontextmanager
async def open_services(settings: Settings, make_dialer: DialerFactory, dialer: Dialer | None = None) -> AsyncIterator[Services]:
    """Open everything the process shares; `make_dialer` comes from the caller, who knows the telephony."""
    engine = make_engine(settings.database_url)
    init_db(engine)
    store = create_session_store(settings.redis_url)
    twilio = TwilioAccount(settings) if settings.twilio_configured else None
    services = assemble_services(settings, store, engine, twilio, dialer or make_dialer(settings, twilio))
    services.loop_engine = make_loop_engine(settings.database_url)
    try:
        yield services
    finally:
        await services.dialer.aclose()
        await services.context_generator.aclose()
        await services.sms_responder.aclose()
        if twilio is not None:
            await twilio.aclose()
        await services.http.aclose()
        await store.close()
        if services.loop_engine is not None:
            await services.loop_engine.dispose()
        engine.dispose()
