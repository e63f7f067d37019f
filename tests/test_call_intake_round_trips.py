"""POST /calls's database step in few round trips and one commit (what keeps it fast), and still
right when two requests for one new number race."""

import threading

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from control_api.call_intake import accept_call
from models.call_job import utcnow
from models.call_queue import CallAttempt
from models.call_request import CallRequest
from models.database import init_db, make_engine
from models.domain import Lead, PolicyDecision
from models.enums import AttemptStatus
from tests.support import CALL_REQUEST, make_settings


@pytest.fixture()
def engine(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    yield engine
    engine.dispose()


def request_for(phone: str) -> CallRequest:
    return CallRequest.model_validate({**CALL_REQUEST, "phone": phone})


def statements_of(engine, work) -> tuple[list[str], int]:
    statements: list[str] = []
    commits = [0]

    def on_execute(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement.split(None, 1)[0].upper())

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


def test_a_new_numbers_request_is_five_statements_and_one_commit(engine, db_url):
    settings = make_settings(db_url, enforce_calling_hours=False)
    accept_call(engine, settings, request_for("+14155550700"), None, None, utcnow())  # the workspace cache filled

    statements, commits = statements_of(
        engine, lambda: accept_call(engine, settings, request_for("+14155550701"), None, None, utcnow())
    )

    # The lead looked up and inserted, the policy's facts in one query, the decision, the attempt.
    assert [s for s in statements if s != "SET"] == ["SELECT", "INSERT", "SELECT", "INSERT", "INSERT"]
    assert commits == 1  # no savepoints: on SQLite each released one was a commit of its own


def test_two_requests_for_one_new_number_at_once_leave_one_lead_and_one_live_call(engine, db_url):
    settings = make_settings(db_url, enforce_calling_hours=False)
    barrier = threading.Barrier(2)
    answers, errors = [], []

    def submit() -> None:
        try:
            barrier.wait()
            answers.append(accept_call(engine, settings, request_for("+14155550702"), None, None, utcnow()))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert {answer.status for answer in answers} == {"queued"}
    with Session(engine) as db:
        assert len(db.exec(select(Lead).where(Lead.phone == "+14155550702")).all()) == 1
        attempts = db.exec(select(CallAttempt)).all()
        live = [a for a in attempts if a.status is not AttemptStatus.CANCELED]
        assert len(live) == 1 and live[0].call_id in {answer.call_id for answer in answers}
        # Every accepted attempt has its stored decision.
        assert all(db.get(PolicyDecision, a.policy_decision_id).allow_send for a in attempts)
