"""POST /calls's database step: the lead, its consent, the policy's decision, and the call attempt.

It runs in a worker thread (the event loop keeps serving live calls' media meanwhile) and within a
bounded time: a database that stays locked or unreachable answers 503 with Retry-After instead of
holding the request. What it decides:
- the policy allows now: an attempt due now (`queued`; the scheduler is woken to dial it);
- only time rules stand in the way (calling hours, follow-up spacing, daily budget): an attempt at
  the policy's `next_allowed_at` (`scheduled`);
- a hard refusal (opted out, no consent, attempts used up), or a time rule with no next window:
  OutreachRefused, the decision stored.
An Idempotency-Key (per workspace) returns the attempt it created the first time; a lead that already
whose call a worker has taken (dialing, in a call) answers 409; one that is only waiting
(a retry, a callback, an earlier request) is replaced by this one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from fastapi import HTTPException, status
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from call_queue import attempt_store
from call_queue.attempt_store import LeadBusy
from call_queue.policy_facts import evaluate
from control_api.outreach_gate import OutreachRefused, default_workspace, lead_for_phone, record_request_consent
from models.call_job import utcnow
from models.call_queue import CallAttempt
from models.call_request import CallRequest
from models.domain import Workspace, WorkspaceApiKey
from models.enums import AttemptStatus
from models.outreach_policy import NOT_ALLOWED
from models.settings import Settings


@dataclass(frozen=True)
class AcceptedCall:
    call_id: str
    # "queued" (due now) or "scheduled" (due later)
    status: str
    scheduled_for: datetime
    repeated: bool = False


def _answer(attempt: CallAttempt, now: datetime, repeated: bool = False) -> AcceptedCall:
    due_now = attempt.status is not AttemptStatus.SCHEDULED or attempt.scheduled_for <= now
    return AcceptedCall(attempt.call_id, "queued" if due_now else "scheduled", attempt.scheduled_for, repeated)


def _by_key(db: Session, workspace_id: int, key: str) -> CallAttempt | None:
    query = select(CallAttempt).where(col(CallAttempt.workspace_id) == workspace_id, col(CallAttempt.idempotency_key) == key)
    return db.exec(query).first()


def _bound_lock_waits(db: Session, seconds: float) -> None:
    # PostgreSQL: a row or table lock held elsewhere makes the statement fail instead of waiting on.
    # (SQLite's wait is the connection's busy timeout; the thread's deadline below covers both.)
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'"))


def accept_call(
    engine: Engine,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None,
    idempotency_key: str | None,
    now: datetime,
) -> AcceptedCall:
    with Session(engine) as db:
        _bound_lock_waits(db, settings.call_intake_timeout_seconds)
        workspace = db.merge(workspace_key[0], load=False) if workspace_key else default_workspace(db)
        api_key = workspace_key[1] if workspace_key else None
        assert workspace.id is not None  # a stored row
        if idempotency_key is not None:
            earlier = _by_key(db, workspace.id, idempotency_key)
            if earlier is not None:
                return _answer(earlier, now, repeated=True)
        lead = lead_for_phone(db, workspace, call_request.phone, call_request.name)
        record_request_consent(db, lead, api_key, now)
        decision, verdict = evaluate(db, workspace, lead, settings, now)
        _bound_lock_waits(db, settings.call_intake_timeout_seconds)  # evaluate committed: a new transaction
        if not verdict.allow_send and (verdict.reason_code in NOT_ALLOWED or verdict.next_allowed_at is None):
            assert decision.id is not None  # evaluate commits it
            raise OutreachRefused(decision.id, verdict)
        at = now if verdict.allow_send else verdict.next_allowed_at
        assert at is not None and lead.id is not None
        schedule = partial(
            attempt_store.schedule_call,
            db,
            workspace_id=workspace.id,
            lead_id=lead.id,
            # The Turnstile token was for this request only; it is not kept with the call.
            call_request=call_request.model_dump(mode="json", exclude={"turnstile_token"}),
            scheduled_for=at,
            now=now,
            idempotency_key=idempotency_key,
            reason=None if verdict.allow_send else verdict.reason_code.value,
        )
        try:
            try:
                attempt = schedule()
            except LeadBusy as busy:
                # A call only waiting for its time (a retry, a callback, an earlier request) gives way
                # to this request; one a worker has taken may be ringing: 409.
                if not attempt_store.replace_waiting(db, busy.live, now):
                    raise
                attempt = schedule()
            attempt.policy_decision_id = decision.id
            db.add(attempt)
            db.commit()
        except LeadBusy:
            db.rollback()
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail="this number already has a call under way; try again when it ends"
            ) from None
        except IntegrityError:  # the same Idempotency-Key raced in from a concurrent request
            db.rollback()
            earlier = _by_key(db, workspace.id, idempotency_key) if idempotency_key else None
            if earlier is None:
                raise
            return _answer(earlier, now, repeated=True)
        return _answer(attempt, now)


def database_busy(settings: Settings) -> HTTPException:
    retry = max(1, int(settings.call_intake_timeout_seconds))
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail="the database is busy; nothing was scheduled, try again",
        headers={"Retry-After": str(retry)},
    )


async def accept_call_in_thread(
    engine: Engine,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None,
    idempotency_key: str | None,
) -> AcceptedCall:
    """`accept_call` off the event loop, answered within CALL_INTAKE_TIMEOUT_SECONDS or 503."""
    step = partial(accept_call, engine, settings, call_request, workspace_key, idempotency_key, utcnow())
    try:
        return await asyncio.wait_for(asyncio.to_thread(step), settings.call_intake_timeout_seconds)
    except (HTTPException, OutreachRefused):
        raise
    except TimeoutError:
        # The thread may still finish; a retry with the same Idempotency-Key then finds its call.
        raise database_busy(settings) from None
    except OperationalError:  # locked past lock_timeout, or the database is unreachable
        raise database_busy(settings) from None
