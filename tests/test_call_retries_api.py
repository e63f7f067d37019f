"""After a call ends, its attempt is closed by the after-call hook `finish_call_attempt`: a call that
reached nobody is retried after the backoff, a call with a decision is not (issue 13, item 3)."""

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from models.call_queue import CallAttempt
from models.enums import AttemptStatus
from tests.support import CALL_REQUEST, end_call, place_call


def attempts_of(api) -> list[CallAttempt]:
    with Session(api.engine) as db:
        return list(db.exec(select(CallAttempt).order_by(col(CallAttempt.id))).all())


def test_an_unanswered_call_is_retried_after_the_backoff_and_an_answered_one_is_not(api):
    _, key = api.workspace()
    api.lead(key)
    placed = place_call(api.client, CALL_REQUEST, headers=key)

    end_call(api.client, placed["id"], "no_answer")

    first, retry = attempts_of(api)
    assert (first.call_id, first.status, first.outcome) == (placed["id"], AttemptStatus.COMPLETED, "no_answer")
    assert (retry.status, retry.attempt, retry.retry_of_id, retry.reason) == (
        AttemptStatus.SCHEDULED,
        2,
        first.id,
        "retry_no_answer",
    )
    ended_at = first.updated_at
    assert retry.scheduled_for - ended_at >= timedelta(hours=1) - timedelta(seconds=1)
    shown = api.client.get(f"/calls/{retry.call_id}", headers=key).json()
    assert (shown["status"], shown["attempt_status"]) == ("pending", "scheduled")
    assert datetime.fromisoformat(shown["scheduled_for"]) == retry.scheduled_for


def test_a_call_with_a_decision_is_not_retried(api):
    _, key = api.workspace()
    api.lead(key)
    placed = place_call(api.client, CALL_REQUEST, headers=key)

    end_call(api.client, placed["id"], "not_interested")

    [only] = attempts_of(api)
    assert (only.status, only.outcome) == (AttemptStatus.COMPLETED, "not_interested")
