"""What the tests share besides fixtures: real servers to start, requests, stand-ins, small builders.

Fixtures live in tests/conftest.py and use these; tests import from here, never from conftest
or from each other.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from control_api.telephony.external_stream import ExternalStreamDialer
from models.call_job import CallJob
from models.context import ContextInstance
from models.domain import PolicyDecision
from models.session_store import SessionStore
from models.settings import Settings
from scripts.local_server import free_port
from scripts.simulate_call import DEMO_REQUEST
from services import Services, assemble_services
from services.dialer import DialResult
from services.twilio_account import TwilioAccount

# The demo's request is the canonical booking call; tests vary single fields of it.
BOOK_MEETING_REQUEST = dict(DEMO_REQUEST)


def wait_for_call(client, call_id: str, until, *, headers: dict | None = None, timeout: float = 20.0) -> dict:
    """GET /calls/{id} until `until(call)` holds (the queue places calls after POST /calls answers)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/calls/{call_id}", headers=headers)
        call = answer.json() if answer.status_code == 200 else {}
        if call and until(call):
            return call
        if time.monotonic() > deadline:
            raise AssertionError(f"call {call_id} never got there: {answer.status_code} {answer.text[:300]}")
        time.sleep(0.05)


def is_placed(call: dict) -> bool:
    return call.get("attempt_status") is None or call.get("status") == "failed"


def end_call(client: TestClient, call_id: str, outcome: str = "not_interested") -> None:
    """End a placed call as the worker would (outcome writer and after-call hooks), in the app's loop."""
    from after_call.outcome_writer import record_finished_call, record_without_conversation
    from models.enums import CallOutcome, EndReason

    services = client.app.state.services

    async def finish() -> None:
        job = await services.store.load_job(call_id)
        assert job is not None, f"call {call_id} is not live"
        record = record_without_conversation(job, outcome=CallOutcome(outcome), end_reason=EndReason.CALLER_HUNG_UP, error=None)
        await record_finished_call(services, record, job)

    client.portal.call(finish)


def is_dialed(call: dict) -> bool:
    """Twilio took the call (its sid is known), or the dial failed."""
    return bool(call.get("twilio_call_sid")) or call.get("status") == "failed"


def place_call(client, body: dict, *, headers: dict | None = None, path: str = "/calls", until=is_placed) -> dict:
    """POST a call (202) and wait until the queue has placed it: the POST answer, with the placed call's
    context_id, context_url and twilio_call_sid added."""
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    created = answer.json()
    placed = wait_for_call(client, created["id"], until, headers=headers)
    context_id = placed.get("context_id")
    return {
        **created,
        "context_id": context_id,
        "context_url": f"/contexts/{context_id}" if context_id else None,
        "twilio_call_sid": placed.get("twilio_call_sid"),
    }


TWILIO_FROM_NUMBER = "+15005550006"


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
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
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
        # One server process dials its own queue, with or without Redis; the Celery tests start
        # their workers and set QUEUE_RUNNER=celery.
        "QUEUE_RUNNER": "in_process",
        **overrides,
    }


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Serve an ASGI app (a stand-in for an outside service) on a loopback port from a thread."""
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
        if not data.exists():  # a restart after stop() keeps the data
            subprocess.run(
                [_postgres_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                **as_user,
            )
        self.process = subprocess.Popen(
            # No unix socket (-k ''), loopback only; durability is not what these tests are about.
            [
                _postgres_binary("postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                "",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "postgres.log", "wb"),  # noqa: SIM115  (the server outlives this call)
            cwd=self.workdir,
            **as_user,
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


CALL_REQUEST = {
    "phone": "+14155550123",
    "name": "Alex",
    "product": "Brightside solar panels",
    "offer_pricing": "from 49 dollars a month",
    "target": "sme",
    "goal": "book_meeting",
    "style": "friendly",
    "booking_link": "https://example.com/book",
    "consent": True,
}


@dataclass
class RecordingDialer:
    """Dials nobody; remembers each call and whether its allowed decision was stored before."""

    engine: sa.Engine | None = None
    dialed: list[tuple[CallJob, ContextInstance]] = field(default_factory=list)
    decision_stored_first: list[bool] = field(default_factory=list)

    async def dial(self, job: CallJob, context: ContextInstance) -> DialResult:
        with Session(self.engine) as db:
            decision = db.exec(select(PolicyDecision).where(PolicyDecision.call_id == str(job.id))).first()
            self.decision_stored_first.append(decision is not None and decision.allow_send)
        self.dialed.append((job, context))
        return DialResult()

    async def aclose(self) -> None:
        return None


@dataclass
class DomainApi:
    client: TestClient
    dialer: RecordingDialer

    @property
    def engine(self) -> sa.Engine:
        return self.client.app.state.services.engine

    def workspace(self, name: str = "Acme", **fields) -> tuple[int, dict[str, str]]:
        answer = self.client.post("/workspaces", json={"name": name, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()["workspace"]["id"], {"Authorization": f"Bearer {answer.json()['api_key']}"}

    def lead(self, key: dict[str, str], **fields) -> dict:
        answer = self.client.post("/leads", json={"phone": "+14155550123", "consent": True, **fields}, headers=key)
        assert answer.status_code == 201, answer.text
        return answer.json()


def make_settings(db_url: str, **overrides) -> Settings:
    values = {
        "database_url": db_url,
        "telephony_provider": "none",
        "secret_key": "test-secret",
        "api_key": None,
        "enforce_calling_hours": False,
        "rate_limit_per_minute": 10_000,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(_env_file=None, **values)


def services_for(settings: Settings, store: SessionStore, engine: sa.Engine, twilio: TwilioAccount | None = None) -> Services:
    """The process's services around a given store and engine, as a test builds them by hand."""
    return assemble_services(settings, store, engine, twilio, ExternalStreamDialer(settings))


# Debian's chromium for the page tests (never a browser download); flags for a closed network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fill_form(page, phone: str) -> None:
    page.fill("#phone", phone)
    page.fill("#name", "Alex")
    page.fill("#product", "Brightside solar panels")
    page.fill("#offer_pricing", "installation from 49 dollars a month, first month free")
    page.select_option("#target", "sme")
    page.select_option("#goal", "book_meeting")
    page.select_option("#style", "friendly")
    page.fill("#booking_link", "https://example.com/book/brightside")
    page.fill("#constraints", "Do not promise installation dates.")
    page.check("#consent")
