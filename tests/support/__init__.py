"""What the tests share besides fixtures: real servers to start, requests, stand-ins, small builders.

Fixtures live in tests/conftest.py and use these; tests import from here, never from conftest
or from each other.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator

from control_api.telephony.external_stream import ExternalStreamDialer
from models.call_job import CallJob
from models.context import ContextInstance
from models.domain import ChatMessage, Lead, PolicyDecision
from models.session_store import SessionStore
from models.settings import Settings
from models.tables import Call

# The real servers the tests start live beside the app's runner (the fault suite starts them too).
from scripts.local_server import PostgresServer as PostgresServer
from scripts.local_server import RedisServer as RedisServer
from scripts.local_server import free_port
from scripts.simulate_call import DEMO_REQUEST, wait_until_placed
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


def wait_for_end(base_url: str, call_id: str, headers: dict[str, str] | None = None, timeout: float = 60) -> dict:
    """GET /calls/{id} from a server in another process until the call has ended (completed or failed)."""
    deadline = time.monotonic() + timeout
    shown: dict = {}
    while time.monotonic() < deadline:
        shown = httpx.get(f"{base_url}/calls/{call_id}", headers=headers).json()
        if shown["status"] in ("completed", "failed"):
            return shown
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} did not end within {timeout} s: {shown}")


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


async def post_call(http: httpx.AsyncClient, body: dict, *, path: str = "/calls") -> dict:
    """POST a call (202) from async code and wait until the queue has placed it: the POST answer (with
    `stream` under TELEPHONY_PROVIDER=none) plus the placed call's context_id and twilio_call_sid."""
    answer = await http.post(path, json=body)
    assert answer.status_code == 202, answer.text
    created = answer.json()
    placed = await wait_until_placed(http, created["id"])
    return {**created, "context_id": placed.get("context_id"), "twilio_call_sid": placed.get("twilio_call_sid")}


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
        "OUTCOME_JOURNAL_DIR": str(tmp_path / "journal"),
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


# Two versions of one workspace's strategy, different in each of the four fields (tone, objectives,
# objection handling, call to action), each in the form the rule-based agent reads literally.
FORMAL_STRATEGY = {
    "tone": "Formal and courteous.",
    "objectives": "Find out the team size first, then whether they decide on this.",
    "objection_handling": "price: Every installation comes with a thirty day money back guarantee.",
    "cta_rules": "Ask: Would you like a free home energy survey?\nclosing: An engineer will confirm the survey by email.",
}
ELEGANT_STRATEGY = {
    "tone": "Elegant and gracious, like a concierge.",
    "objectives": "What would an ideal installation look like for you?\nHow soon would you like it finished?",
    "objection_handling": "too expensive: Think of it as an investment that pays for itself within a few years.",
    "cta_rules": "Would a private viewing at our showroom suit you?\nclosing: Our concierge will send you the details.",
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

    def context_of(self, call_id: str, timeout: float = 20.0) -> ContextInstance:
        """The context the call was dialed with, once the queue has dialed it (GET /calls shows the
        call placed when its job is stored, a moment before the dialer is called)."""
        deadline = time.monotonic() + timeout
        while True:
            for job, context in self.dialed:
                if str(job.id) == call_id:
                    return context
            if time.monotonic() > deadline:
                raise AssertionError(f"call {call_id} was never dialed")
            time.sleep(0.05)

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
        # Never the working directory's journal: a test's unconfirmed outcome must not reach another's database.
        "outcome_journal_dir": tempfile.mkdtemp(prefix="journal-"),
        **overrides,
    }
    return Settings(_env_file=None, **values)


def services_for(settings: Settings, store: SessionStore, engine: sa.Engine, twilio: TwilioAccount | None = None) -> Services:
    """The process's services around a given store and engine, as a test builds them by hand (own journal)."""
    settings = settings.model_copy(update={"outcome_journal_dir": tempfile.mkdtemp(prefix="journal-")})
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


# --- The inbound side: a business's own Twilio number, driven by signed webhooks ------------------

# Where Twilio is told this service is (PUBLIC_BASE_URL of the inbound tests); port 9 (discard) refuses at once, so the emulator's own
# delivery callbacks to it fail fast on loopback while the tests post the callbacks themselves.
INBOUND_PUBLIC_URL = "http://127.0.0.1:9"
BUSINESS_NUMBER = "+14155550170"
BUSINESS_OWN_PHONE = "+14155550171"
# The emulator lives for the module: each test calls from its own number, so it sees only its texts.
INBOUND_CALLERS = (f"+141555503{n:02d}" for n in itertools.count())
ALWAYS_OPEN = {
    day: {"open": "00:00", "close": "24:00", "enabled": True}
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
}
ALWAYS_CLOSED = {day: {"enabled": False} for day in ALWAYS_OPEN}


class InboundTwilio:
    """The app as a business's Twilio number sees it: posts signed like Twilio's, texts in the emulator."""

    def __init__(self, client: TestClient, emulator) -> None:
        self.client = client
        self.emulator = emulator
        self.sids = iter(range(10_000))
        self.caller = next(INBOUND_CALLERS)

    @property
    def engine(self):
        return self.client.app.state.services.engine

    def business(self, hours: dict, forward_to: str | None = BUSINESS_OWN_PHONE, **settings) -> dict[str, str]:
        created = self.client.post("/workspaces", json={"name": "Acme Plumbing"})
        workspace_id, key = created.json()["workspace"]["id"], {"Authorization": f"Bearer {created.json()['api_key']}"}
        answer = self.client.patch(
            f"/workspaces/{workspace_id}/business-settings",
            json={"business_hours": hours, "trade": "plumbing", **settings},
            headers=key,
        )
        assert answer.status_code == 200, answer.text
        number = {"phone_number": BUSINESS_NUMBER, **({"forward_to": forward_to} if forward_to else {})}
        assert self.client.post(f"/workspaces/{workspace_id}/numbers", json=number, headers=key).status_code == 201
        self.key, self.workspace_id = key, workspace_id
        return key

    def text_params(self, body: str, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": self.emulator.account_sid,
            "MessageSid": f"SM{next(self.sids):032x}",
            "From": self.caller,
            "To": BUSINESS_NUMBER,
            "Body": body,
            "NumMedia": "0",
            **extra,
        }

    def text(self, body: str, **extra: str):
        """The caller texts the business's number; Twilio posts it, signed."""
        answer = self.post("/twilio/sms", self.text_params(body, **extra))
        assert answer.status_code == 200, answer.text
        return answer

    def call_params(self, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": self.emulator.account_sid,
            "CallSid": f"CA{next(self.sids):032x}",
            "From": self.caller,
            "To": BUSINESS_NUMBER,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "FromCity": "SAN FRANCISCO",
            "FromState": "CA",
            "FromCountry": "US",
            **extra,
        }

    def post(self, path_and_query: str, params: dict[str, str], token: str | None = None, sign_url: str | None = None):
        signature = RequestValidator(token or self.emulator.auth_token).compute_signature(
            sign_url or INBOUND_PUBLIC_URL + path_and_query, params
        )
        return self.client.post(path_and_query, data=params, headers={"X-Twilio-Signature": signature})

    def call_row(self, call_sid: str) -> Call:
        with Session(self.engine) as db:
            return db.exec(select(Call).where(Call.twilio_call_sid == call_sid)).one()

    def sms_thread(self, phone: str | None = None) -> list[ChatMessage]:
        with Session(self.engine) as db:
            lead = db.exec(select(Lead).where(Lead.phone == (phone or self.caller))).one()
            return list(db.exec(select(ChatMessage).where(ChatMessage.lead_id == lead.id)).all())

    def lead(self, phone: str | None = None) -> Lead:
        with Session(self.engine) as db:
            return db.exec(select(Lead).where(Lead.phone == (phone or self.caller))).one()

    def texts_to(self, phone: str | None = None) -> list[dict]:
        return [m for m in self.emulator.messages() if m["to"] == (phone or self.caller)]


def twiml(answer) -> ET.Element:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(answer.text)
    assert root.tag == "Response"
    return root


def stream_of(root: ET.Element) -> tuple[str, dict[str, str]]:
    stream = root.find("./Connect/Stream")
    assert stream is not None, ET.tostring(root)
    return stream.get("url"), {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
