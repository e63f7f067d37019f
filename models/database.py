"""The one database engine: a SQLite file by default, DATABASE_URL otherwise."""

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    import alembic.config


# SQLite errors after which a connection is no good even once the cause is gone: a connection opened
# while the file was read-only stays read-only for its whole life.
_SQLITE_BROKEN_CONNECTION = ("readonly database", "disk i/o error", "unable to open database file")


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK) and (not os.path.exists(f"{path}-wal") or os.access(f"{path}-wal", os.W_OK))


def _recover_sqlite_connections(engine: Engine, path: str | None) -> None:
    """Drop connections a fault broke, so the engine serves again by itself once the fault clears."""

    @event.listens_for(engine, "handle_error")
    def _broken_is_disconnect(context) -> None:
        error = context.original_exception
        if isinstance(error, sqlite3.OperationalError) and any(m in str(error).lower() for m in _SQLITE_BROKEN_CONNECTION):
            context.is_disconnect = True  # invalidate it (and the pool's older connections)

    if path is None:
        return

    @event.listens_for(engine, "connect")
    def _remember_if_read_only(_dbapi_connection, record) -> None:
        record.info["opened_read_only"] = not _writable(path)

    @event.listens_for(engine, "checkout")
    def _reopen_once_writable(_dbapi_connection, record, _proxy) -> None:
        # SQLite's pre-ping: a read-only connection answers SELECT 1; only reopening makes it write again.
        if record.info.get("opened_read_only") and _writable(path):
            raise DisconnectionError("the database file is writable again")


def make_engine(database_url: str) -> Engine:
    # hide_parameters: an error's message would otherwise carry the statement's values (phone numbers,
    # transcripts) into tracebacks and logs.
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 15}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL lets the API read while the worker writes an outcome.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        _recover_sqlite_connections(engine, path if path and path != ":memory:" else None)
        return engine
    engine = create_engine(_psycopg_url(database_url), pool_size=10, max_overflow=20, hide_parameters=True)
    _ping_idle_connections(engine)
    return engine


def _psycopg_url(database_url: str) -> str:
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return database_url


def make_loop_engine(database_url: str) -> AsyncEngine | None:
    """The same PostgreSQL database for work done on the event loop, or None on SQLite.

    A request that waited on the database from a worker thread cost more in hand-offs than in its
    statements: each round trip put the thread to sleep and woke it, and each step crossed from the
    loop to the thread and back (a profile of POST /calls: three tenths of the process's CPU in the
    kernel's task switching). On the loop, a round trip is one more socket in the poll. SQLite's
    calls block whatever the driver, so SQLite keeps the thread (and `make_engine`'s engine)."""
    if database_url.startswith("sqlite"):
        return None
    engine = create_async_engine(_psycopg_url(database_url), pool_size=10, max_overflow=20, hide_parameters=True)
    _ping_idle_connections(engine.sync_engine)
    return engine


# A connection back in the pool for longer than this is pinged before it is handed out again.
PING_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """A connection the server dropped (a restart, a failover) is replaced at checkout, as
    pool_pre_ping does, but only once it has been idle a while: pre_ping's SELECT 1 was one more
    round trip on every checkout, a ninth of POST /calls's. A connection in steady use that the
    server drops fails its statement instead; that error marks every older connection in the pool
    invalid, and POST /calls runs its step once more (control_api/call_intake.py)."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection, record) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise DisconnectionError("the server closed the connection") from error  # the pool reconnects
            raise


MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant will do: it only has to be the same in every process migrating one database.
_MIGRATION_LOCK_ID = 7_305_119_202


def alembic_config() -> "alembic.config.Config":
    from alembic.config import Config

    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@contextmanager
def _one_migrator_at_a_time(engine: Engine) -> Iterator[None]:
    """Two processes starting on one database must not both run the migrations."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # PostgreSQL: an advisory lock inside the migration's transaction (init_db)
        return
    with open(f"{database}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (models/migrations), creating it if empty."""
    from alembic import command

    config = alembic_config()
    with _one_migrator_at_a_time(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
