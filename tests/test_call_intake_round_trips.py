"""POST /calls's database step in few round trips and one commit (what keeps it fast), and still
right when two requests for one new number race. The step runs as the service runs it: awaited on
the event loop with PostgreSQL, in a worker thread with SQLite."""

import asyncio
import time

import pytest
from fastapi import HTTPException
from sqlalchemy import event
from sqlmodel import Session, select

from control_api import call_intake
from control_api.call_intake import AcceptedCall, accept_call_in_time
from control_api.outreach_gate import OutreachRefused, default_workspace
from models import database
from models.call_queue import CallAttempt
from models.call_request import CallRequest
from models.database import init_db, make_engine, make_loop_engine
from models.domain import Lead, PolicyDecision
from models.enums import AttemptStatus, BudgetTier
from models.outreach_policy import Reason
from tests.support import CALL_REQUEST, make_settings


class Intake:
    """The service's two engines on one database, and one event loop to run the step on."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        init_db(self.engine)
        self.loop_engine = make_loop_engine(url)
        self.runner = asyncio.Runner()

    @property
    def statements_engine(self):
        """The engine whose connections the step uses (events are listened for on it)."""
        return self.loop_engine.sync_engine if self.loop_engine is not None else self.engine

    def accept(self, settings, *phones: str) -> list[AcceptedCall]:
        """One request per number, all at once."""
        steps = [accept_call_in_time(self.engine, self.loop_engine, settings, request_for(phone), None, None) for phone in phones]

        async def together():
            return await asyncio.gather(*steps, return_exceptions=True)

        return self.runner.run(together())

    def accept_one(self, settings, phone: str) -> AcceptedCall:
        [answer] = self.accept(settings, phone)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        if self.loop_engine is not None:
            self.runner.run(self.loop_engine.dispose())
        self.runner.close()
        self.engine.dispose()


@pytest.fixture()
def intake(db_url):
    intake = Intake(db_url)
    yield intake
    intake.close()


@pytest.fixture()
def pg_intake(postgres_url):
    intake = Intake(postgres_url)
    assert intake.loop_engine is not None  # PostgreSQL's step runs on the event loop
    yield intake
    intake.close()


def request_for(phone: str) -> CallRequest:
    return CallRequest.model_validate({**CALL_REQUEST, "phone": phone})


def statements_of(engine, work, isolation: list[str] | None = None) -> tuple[list[str], int]:
    statements: list[str] = []
    commits = [0]

    def on_execute(conn, _cursor, statement, *_args) -> None:
        statements.append(statement.split(None, 1)[0].upper())
        if isolation is not None:
            isolation.append(conn.get_execution_options().get("isolation_level", "transaction"))

    def on_commit(_conn) -> None:
        commits[0] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
    return statements, commits[0]


# A new number's request, statement by statement: the lead looked up with the policy's facts (on
# PostgreSQL bounding the lock waits in the same statement), then the lead, the decision and the
# attempt inserted, on PostgreSQL in one statement (WITH row_0 AS (INSERT lead), row_1 AS (INSERT
# decision) INSERT attempt).
NEW_NUMBER_STATEMENTS = {
    "sqlite": ["SELECT", "INSERT", "INSERT", "INSERT"],
    "postgresql": ["SELECT", "WITH"],
}


def test_a_new_numbers_request_is_two_statements_on_postgresql_and_one_commit(intake, db_url, monkeypatch):
    settings = make_settings(db_url, enforce_calling_hours=False)
    intake.accept_one(settings, "+14155550700")  # the workspace cache filled
    engine = intake.statements_engine
    pings = count_pings(engine, monkeypatch)

    isolation: list[str] = []
    statements, commits = statements_of(engine, lambda: intake.accept_one(settings, "+14155550701"), isolation)

    # No SET, no ping of a connection in use a moment ago.
    assert statements == NEW_NUMBER_STATEMENTS[engine.dialect.name]
    assert pings == []
    assert commits == 1  # no savepoints: on SQLite each released one was a commit of its own
    # On PostgreSQL outside a transaction (no BEGIN, no COMMIT sent): what it writes is one statement.
    assert set(isolation) == ({"AUTOCOMMIT"} if engine.dialect.name == "postgresql" else {"transaction"})
    with Session(intake.engine) as db:
        attempt = db.exec(select(CallAttempt).order_by(CallAttempt.id.desc())).first()
        decision = db.get(PolicyDecision, attempt.policy_decision_id)
    assert decision.allow_send and decision.lead_id == attempt.lead_id  # the attempt names its own decision


def count_pings(engine, monkeypatch) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


def test_postgresql_lock_waits_are_bounded_by_the_lead_lookup(postgres_url):
    """A number that has a lead runs in a transaction, whose lock waits the lookup bounds."""
    intake = Intake(postgres_url)
    settings = make_settings(postgres_url, call_intake_timeout_seconds=2.5)
    intake.accept_one(settings, "+14155550703")  # the lead, and a call waiting that the next replaces
    seen: list[str] = []

    def on_commit(connection) -> None:  # still inside the transaction, right before its COMMIT
        seen.append(connection.exec_driver_sql("SHOW lock_timeout").scalar_one())

    event.listen(intake.statements_engine, "commit", on_commit)
    try:
        intake.accept_one(settings, "+14155550703")

        async def lock_timeout_after() -> str:  # SET LOCAL's kind: the pool's next user waits as configured
            async with intake.loop_engine.connect() as connection:
                return (await connection.exec_driver_sql("SHOW lock_timeout")).scalar_one()

        after = intake.runner.run(lock_timeout_after())
    finally:
        event.remove(intake.statements_engine, "commit", on_commit)
        intake.close()

    assert seen == ["2500ms"]
    assert after == "0"


def _drop_every_connection_to(url: str) -> None:
    """The server ends every session on the database (but the one asking), as a restart or failover would."""
    other = make_engine(url)
    try:
        with other.connect() as connection:
            ended = connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar_one()
    finally:
        other.dispose()
    assert ended >= 1  # the pooled connection the next request would use


def test_a_connection_the_server_dropped_mid_use_is_replaced_and_the_call_accepted(pg_intake, postgres_url):
    settings = make_settings(postgres_url)
    pg_intake.accept_one(settings, "+14155550704")
    _drop_every_connection_to(postgres_url)

    # Used a moment ago, so not pinged: its first statement fails, and the step runs once more.
    answer = pg_intake.accept_one(settings, "+14155550705")

    pg_intake.engine.dispose()  # the checking engine's pooled connection was dropped too
    with Session(pg_intake.engine) as db:
        stored = db.exec(select(CallAttempt).where(CallAttempt.call_id == answer.call_id)).one()
    assert answer.status == "queued" and stored.policy_decision_id is not None  # durable, decision and all


def test_an_idle_connection_is_pinged_and_replaced_when_the_server_dropped_it(pg_intake, postgres_url, monkeypatch):
    settings = make_settings(postgres_url)
    pg_intake.accept_one(settings, "+14155550706")
    _drop_every_connection_to(postgres_url)
    monkeypatch.setattr(database, "PING_IDLE_SECONDS", 0.0)  # as if idle for long
    engine = pg_intake.statements_engine
    pings = count_pings(engine, monkeypatch)

    statements, _commits = statements_of(engine, lambda: pg_intake.accept_one(settings, "+14155550707"))

    assert pings != []
    # Replaced at checkout: the step ran once (a retried step would show its statements twice).
    assert statements == NEW_NUMBER_STATEMENTS["postgresql"]


def test_two_requests_for_one_new_number_at_once_leave_one_lead_and_one_live_call(intake, db_url):
    settings = make_settings(db_url, enforce_calling_hours=False)

    answers = intake.accept(settings, "+14155550702", "+14155550702")

    assert [answer.status for answer in answers] == ["queued", "queued"]  # no exception among them
    with Session(intake.engine) as db:
        assert len(db.exec(select(Lead).where(Lead.phone == "+14155550702")).all()) == 1
        attempts = db.exec(select(CallAttempt)).all()
        live = [a for a in attempts if a.status is not AttemptStatus.CANCELED]
        assert len(live) == 1 and live[0].call_id in {answer.call_id for answer in answers}
        # Every accepted attempt has its stored decision.
        assert all(db.get(PolicyDecision, a.policy_decision_id).allow_send for a in attempts)


def test_a_commit_the_server_dropped_is_not_run_again(pg_intake, postgres_url):
    """Whether a COMMIT whose connection died took is unknown: the step is not run a second time (it
    would replace the call the first one may have stored); the request answers 503 instead. (A
    number that has a lead: a new number's step sends no COMMIT.)"""
    settings = make_settings(postgres_url)
    pg_intake.accept_one(settings, "+14155550708")
    first = pg_intake.accept_one(settings, "+14155550709")
    engine = pg_intake.statements_engine

    def drop_before_commit(connection) -> None:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        other = make_engine(postgres_url)
        try:
            with other.connect() as killer:
                killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        finally:
            other.dispose()

    inserts: list[str] = []

    def count_inserts(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith(("INSERT", "WITH")):
            inserts.append(statement)

    event.listen(engine, "commit", drop_before_commit)
    event.listen(engine, "before_cursor_execute", count_inserts)
    try:
        with pytest.raises(HTTPException) as refused:
            pg_intake.accept_one(settings, "+14155550709")
    finally:
        event.remove(engine, "commit", drop_before_commit)
        event.remove(engine, "before_cursor_execute", count_inserts)
    with Session(pg_intake.engine) as db:
        lead = db.exec(select(Lead).where(Lead.phone == "+14155550709")).one()
        attempts = db.exec(select(CallAttempt).where(CallAttempt.lead_id == lead.id)).all()
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"]
    assert len(inserts) == 1  # the INSERT of decision and attempt once: the step ran once
    # The server ended the transaction before its COMMIT: the first call is still the one waiting.
    assert [(a.call_id, a.status is AttemptStatus.CANCELED) for a in attempts] == [(first.call_id, False)]


def test_a_new_number_the_policy_refuses_keeps_its_lead_and_the_decision_naming_it(intake, db_url, monkeypatch):
    """The refusal's chain: the lead (with the visitor's consent) and the decision, written together."""
    monkeypatch.setattr(call_intake, "_default_workspace", None)
    with Session(intake.engine) as db:
        workspace = default_workspace(db)
        workspace.budget_tier = BudgetTier.RED  # no calls at all: a refusal with no window in sight
        db.add(workspace)
        db.commit()
    settings = make_settings(db_url, enforce_calling_hours=False)

    [refused] = intake.accept(settings, "+14155550710")

    assert isinstance(refused, OutreachRefused) and refused.verdict.reason_code is Reason.BUDGET_PAUSED
    with Session(intake.engine) as db:
        lead = db.exec(select(Lead).where(Lead.phone == "+14155550710")).one()
        decision = db.get(PolicyDecision, refused.decision_id)
        attempts = db.exec(select(CallAttempt)).all()
    assert lead.consent and lead.consent_source is not None
    assert (decision.lead_id, decision.allow_send, decision.reason_code) == (lead.id, False, "budget_paused")
    assert attempts == []


def test_a_new_number_waiting_on_a_lock_answers_503_and_its_statement_is_cancelled(pg_intake, postgres_url):
    """Outside a transaction no SET LOCAL bounds the wait: the step's deadline does, and the statement
    given up on is cancelled in the server, not left waiting on its connection."""
    settings = make_settings(postgres_url, call_intake_timeout_seconds=1.0)
    pg_intake.accept_one(settings, "+14155550711")
    locker = make_engine(postgres_url)
    try:
        with locker.connect() as connection, connection.begin():
            connection.exec_driver_sql("LOCK TABLE lead IN EXCLUSIVE MODE")  # reads pass, writes wait
            started = time.monotonic()
            with pytest.raises(HTTPException) as busy:
                pg_intake.accept_one(settings, "+14155550712")
            waited = time.monotonic() - started
            still_waiting = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar_one()
    finally:
        locker.dispose()
    answer = pg_intake.accept_one(settings, "+14155550712")

    assert busy.value.status_code == 503 and waited < 10  # answered, not held until the lock went
    assert still_waiting == 0
    assert answer.status == "queued"  # the pool's connections still serve
