"""Fixtures: a real redis-server on loopback, the app in a child process, call requests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from scripts.local_server import free_port, running_server
from scripts.simulate_call import DEMO_REQUEST

# The demo's request is the canonical booking call; tests vary single fields of it.
BOOK_MEETING_REQUEST = dict(DEMO_REQUEST)


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server); .ci/run installs it")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


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


def server_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "TELEPHONY_PROVIDER": "none",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "SECRET_KEY": "test-secret-key",
        "LOG_JSON": "true",
        # The suite places many calls from 127.0.0.1; the rate limit's own tests lower it again.
        "RATE_LIMIT_PER_MINUTE": "10000",
        # The suite runs at any hour; every other outreach rule still applies to its calls.
        "ENFORCE_CALLING_HOURS": "false",
        **overrides,
    }


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

import os  # noqa: E402
import pwd  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402

import psycopg  # noqa: E402

POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
POSTGRES_OS_USER = "pgtest"


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next((f"{d}/{name}" for d in POSTGRES_BIN_DIRS if Path(f"{d}/{name}").exists()), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed (apt-get install postgresql); the database tests need a real server")
    return found


def _unprivileged_user() -> dict[str, int]:
    """postgres refuses to run as root: as root, run it as a system user made for the tests."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_OS_USER], check=True)
        entry = pwd.getpwnam(POSTGRES_OS_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        as_user = _unprivileged_user()
        data = self.workdir / "data"
        if as_user:
            os.chown(self.workdir, as_user["user"], as_user["group"])
        subprocess.run(
            [_postgres_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.workdir, **as_user,
        )
        self.process = subprocess.Popen(
            # No unix socket (-k ''), loopback only; durability is not what these tests are about.
            [_postgres_binary("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "postgres.log", "wb"), cwd=self.workdir, **as_user,  # noqa: SIM115
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {(self.workdir / 'postgres.log').read_text()[-2000:]}") from None
                time.sleep(0.1)

    def create_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Not under pytest's tmp dirs: those are private to root, and postgres runs as another user.
    workdir = Path(tempfile.mkdtemp(prefix="pgtest-"))
    server = PostgresServer(free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


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
                    **overrides,
                },
            )
            return stack.enter_context(TestClient(create_app(settings)))

        yield make


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Serve an ASGI app (a stand-in for an outside service) on a loopback port from a thread."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("stand-in server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


TWILIO_FROM_NUMBER = "+15005550006"


@pytest.fixture(scope="module")
def twilio_emulator():
    """Twilio's Calls and Messages REST endpoints and phone network, on loopback."""
    from control_api.telephony.twilio_rest_emulator import TwilioRestEmulator, running_emulator

    with running_emulator(TwilioRestEmulator()) as server:
        yield server


@pytest.fixture(scope="module")
def twilio_live_server(tmp_path_factory, twilio_emulator) -> Iterator[str]:
    """The app in a child process with TELEPHONY_PROVIDER=twilio, its twilio client aimed at the emulator."""
    tmp = tmp_path_factory.mktemp("server-twilio")
    env = server_env(tmp, TELEPHONY_PROVIDER="twilio", TWILIO_FROM_NUMBER=TWILIO_FROM_NUMBER, SILENCE_TIMEOUT_SECONDS="3", **twilio_emulator.env())
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url
