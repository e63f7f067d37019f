"""Fixtures: a real redis-server on loopback, the app in a child process, call requests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from control_api.main import create_app
from scripts.local_server import free_port, running_server
from tests.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TWILIO_FROM_NUMBER,
    DomainApi,
    PostgresServer,
    RecordingDialer,
    RedisServer,
    make_settings,
    server_env,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def clean_redis(redis_server: RedisServer) -> RedisServer:
    redis.Redis(port=redis_server.port).flushall()
    return redis_server


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[str]:
    """The app in a child process with the in-process session store and TELEPHONY_PROVIDER=none."""
    tmp = tmp_path_factory.mktemp("server")
    with running_server(server_env(tmp, SILENCE_TIMEOUT_SECONDS="3"), log_path=tmp / "server.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def redis_live_server(tmp_path_factory, redis_server) -> Iterator[str]:
    """The app in a child process on the real redis-server."""
    tmp = tmp_path_factory.mktemp("server-redis")
    env = server_env(tmp, REDIS_URL=redis_server.url, STREAM_START_TIMEOUT_SECONDS="2", SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url


# --- PostgreSQL on loopback, and `db_url` over both databases -----------------------------------

import tempfile  # noqa: E402


@contextlib.contextmanager
def _own_postgres(prefix: str) -> Iterator[PostgresServer]:
    # Not under pytest's tmp dirs: those are private to root, and postgres runs as another user.
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = PostgresServer(free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _own_postgres("pgtest-") as server:
        yield server


@pytest.fixture()
def restartable_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, for tests that stop and restart it (an outage)."""
    with _own_postgres("pgfault-") as server:
        yield server


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database of each kind: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


# --- The app in-process, loopback stand-ins, and Twilio through the REST emulator ---------------


@pytest.fixture()
def api_client(tmp_path):
    """Build the app in-process (lifespan run) as a TestClient; keyword arguments override Settings."""
    import itertools

    from fastapi.testclient import TestClient

    from control_api.main import create_app
    from models.settings import Settings

    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def make(**overrides):
            settings = Settings(
                _env_file=None,
                **{
                    "telephony_provider": "none",
                    "database_url": f"sqlite:///{tmp_path / f'api-{next(numbers)}.db'}",
                    "secret_key": "test-secret-key",
                    "rate_limit_per_minute": 10000,
                    "enforce_calling_hours": False,
                    "outcome_journal_dir": str(tmp_path / "journal"),
                    **overrides,
                },
            )
            return stack.enter_context(TestClient(create_app(settings)))

        yield make


@pytest.fixture(scope="module")
def twilio_emulator():
    """Twilio's Calls and Messages REST endpoints and phone network, on loopback."""
    from tests.support.twilio_rest_emulator import TwilioRestEmulator, running_emulator

    with running_emulator(TwilioRestEmulator()) as server:
        yield server


@pytest.fixture(scope="module")
def twilio_live_server(tmp_path_factory, twilio_emulator) -> Iterator[str]:
    """The app in a child process with TELEPHONY_PROVIDER=twilio, its twilio client aimed at the emulator."""
    tmp = tmp_path_factory.mktemp("server-twilio")
    env = server_env(
        tmp,
        TELEPHONY_PROVIDER="twilio",
        TWILIO_FROM_NUMBER=TWILIO_FROM_NUMBER,
        SILENCE_TIMEOUT_SECONDS="3",
        # Hang up on machines at once (tests/test_voicemail.py runs the leave-a-message server).
        VOICEMAIL_ACTION="hang_up",
        **twilio_emulator.env(),
    )
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url


@pytest.fixture()
def api(db_url, tmp_path, monkeypatch) -> Iterator[DomainApi]:
    monkeypatch.chdir(tmp_path)  # the outcome journal (OUTCOME_JOURNAL_DIR) is relative to the working directory
    dialer = RecordingDialer()
    with TestClient(create_app(make_settings(db_url), dialer=dialer)) as client:
        dialer.engine = client.app.state.services.engine
        yield DomainApi(client, dialer)


@pytest.fixture()
def inbound(tmp_path, monkeypatch, twilio_emulator):
    """The app in-process with a Twilio account on the emulator, as a business's number reaches it."""
    from control_api.main import create_app
    from tests.support import INBOUND_PUBLIC_URL, TWILIO_FROM_NUMBER, InboundTwilio, make_settings

    monkeypatch.chdir(tmp_path)  # the outcome spool is relative to the working directory
    settings = make_settings(
        f"sqlite:///{tmp_path / 'inbound.db'}",
        public_base_url=INBOUND_PUBLIC_URL,
        twilio_from_number=TWILIO_FROM_NUMBER,
        **{name.lower(): value for name, value in twilio_emulator.env().items()},
    )
    with TestClient(create_app(settings)) as client:
        yield InboundTwilio(client, twilio_emulator.emulator)


@pytest.fixture()
def page():
    """A tab of Debian's chromium (Playwright) that collects the page's console errors."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        # Fails, not skips, like a missing Redis or PostgreSQL: `bash scripts/dev.sh test` installs it.
        pytest.fail(f"{CHROMIUM} is not installed (apt-get install chromium); the web page tests need a real browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 900, "height": 1400})
        tab.console_errors = []
        tab.on("console", lambda message: message.type == "error" and tab.console_errors.append(message.text))
        try:
            yield tab
        finally:
            browser.close()
