"""POST /calls's database step: the lead, its consent, the policy's decision, and the call attempt.

It never blocks the event loop (live calls' media is served meanwhile): on PostgreSQL its round trips
are awaited on the loop, on SQLite (whose calls block whatever the driver) it runs in a worker
thread. And it runs within a bounded time: a database that stays locked or unreachable answers 503 with Retry-After instead of
holding the request. What it decides:
- the policy allows now: an attempt due now (`queued`; the scheduler is woken to dial it);
- only time rules stand in the way (calling hours, follow-up spacing, daily budget): an attempt at
  the policy's `next_allowed_at` (`scheduled`);
- a hard refusal (opted out, no consent, attempts used up), or a time rule with no next window:
  OutreachRefused, the decision stored.
An Idempotency-Key (per workspace) returns the attempt it created the first time; a lead whose call
a worker has taken (dialing, in a call) answers 409; one that is only waiting (a retry, a callback,
an earlier request) is replaced by this one.

It is the request's whole cost, so it is kept to one transaction with one commit and, for a new
number, four statements on PostgreSQL (five on SQLite; tests/test_call_intake_round_trips.py):
README's Performance section has the figures.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from fastapi import HTTPException, status
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select
from sqlmodel import Session, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from call_queue import attempt_store
from call_queue.policy_facts import StoredFacts, facts_columns, facts_values, gather_facts, policy_decision
from control_api.outreach_gate import OutreachRefused, default_workspace, record_request_consent
from models.call_job import utcnow
from models.call_queue import CallAttempt
from models.call_request import CallRequest
from models.domain import Lead, Workspace, WorkspaceApiKey
from models.enums import LIVE_ATTEMPT_STATUSES, AttemptStatus
from models.outreach_policy import NOT_ALLOWED, decide
from models.row_builder import build_row, insert_chain, insert_row
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


@functools.cache
def _lead_query(dialect: str, lock_timeout_ms: int) -> Select:
    """The lead by number and the policy's facts (StoredFacts), one row whether the lead exists or
    not (an outer join from a one-row table): one round trip where they were two.

    On PostgreSQL the same statement bounds the transaction's lock waits, `set_config(..., true)`
    being SET LOCAL: a row or index entry locked elsewhere (the same new number in a concurrent
    request) makes a later statement fail instead of waiting on, without a round trip of its own.
    It is the transaction's first statement that writes nothing, so it runs before any lock is asked
    for. (SQLite's wait is the connection's busy timeout; the thread's deadline covers both.)"""
    found = (col(Lead.workspace_id) == sa.bindparam("workspace_id")) & (col(Lead.phone) == sa.bindparam("phone"))
    columns: list[Any] = [Lead, *facts_columns(col(Lead.id))]
    if dialect == "postgresql":
        columns.append(sa.func.set_config("lock_timeout", f"{lock_timeout_ms}ms", True))
    one_row = sa.select(sa.literal(1).label("one")).subquery()
    return sa.select(*columns).select_from(one_row).outerjoin(Lead, found)


# The default workspace's row, re-read at most this often: the anonymous form's every request needs
# it, and it changes (time zone, business hours, budget tier) by an operator's hand. The queue reads
# it afresh before each dial, so a change is never missed there.
WORKSPACE_CACHE_SECONDS = 10.0
_default_workspace: tuple[float, str, Workspace] | None = None


def _cached_default_workspace(db: Session) -> Workspace:
    """Detached from any session, every column loaded: the step only reads it (merging it into each
    request's session cost more CPU than any of the step's statements)."""
    global _default_workspace
    url, clock = str(db.get_bind().url), time.monotonic()
    if (
        _default_workspace is not None
        and _default_workspace[1] == url
        and clock - _default_workspace[0] < WORKSPACE_CACHE_SECONDS
    ):
        return _default_workspace[2]
    workspace = default_workspace(db)
    db.expunge(workspace)
    _default_workspace = (clock, url, workspace)
    return workspace


def _lead(
    db: Session,
    workspace: Workspace,
    call_request: CallRequest,
    api_key: WorkspaceApiKey | None,
    now: datetime,
    lock_timeout_ms: int,
    new_number_only: bool = False,
) -> tuple[Lead, bool, StoredFacts | None]:
    """The lead for the number, whether it is new, and the policy's facts when nothing they depend on
    was written since they were read (else None: gather_facts reads them again).

    A new lead with the visitor's consent is not written here: its INSERT goes with the call's (one
    round trip; `_accept_call`). With a workspace key it is written at once, as the operator's
    attestation names it. No savepoint: a concurrent request creating the same lead makes a later
    statement or the commit fail, and the whole step runs again."""
    assert workspace.id is not None
    query = _lead_query(db.get_bind().dialect.name, lock_timeout_ms)
    bound = {**facts_values(workspace, now), "phone": call_request.phone}
    row = db.execute(query, bound).one()
    lead: Lead | None = row[0]
    stored = StoredFacts(*row[1:6])
    if new_number_only and (lead is not None or api_key is not None):
        raise _NotANewNumber
    if lead is None:
        lead = build_row(
            Lead, workspace_id=workspace.id, phone=call_request.phone, external_id=call_request.phone, name=call_request.name
        )
        if api_key is None:  # the visitor's consent goes into the INSERT
            record_request_consent(db, lead, api_key, now)
            db.expunge(lead)  # record_request_consent adds it; `_accept_call` writes it
            return lead, True, stored
        insert_row(db, lead)
        record_request_consent(db, lead, api_key, now)
        return lead, True, None
    if call_request.name and not lead.name:
        lead.name = call_request.name
    record_request_consent(db, lead, api_key, now)
    adds_attestation = api_key is not None and lead.opted_out_at is None
    return lead, False, None if adds_attestation else stored


def _stored_id(row: Lead) -> int:
    assert row.id is not None  # a stored row
    return row.id


def _live_attempt(db: Session, lead_id: int) -> CallAttempt | None:
    query = select(CallAttempt).where(col(CallAttempt.lead_id) == lead_id, col(CallAttempt.status).in_(LIVE_ATTEMPT_STATUSES))
    return db.exec(query).first()


def accept_call(
    engine: Engine,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None,
    idempotency_key: str | None,
    now: datetime,
) -> AcceptedCall:
    """One transaction, one commit: the lead, its consent, the decision and the attempt are stored
    together or not at all. A unique key a concurrent request took first (the same new number, the
    same Idempotency-Key, a second live attempt for the lead) fails the commit: run it once more,
    and that run sees the other request's rows."""

    def once() -> AcceptedCall:
        # expire_on_commit=False: the answer reads the attempt it just wrote, without a SELECT to reload it.
        with Session(engine, expire_on_commit=False) as db:
            return _accept_call(db, settings, call_request, workspace_key, idempotency_key, now)

    with _writer_turn(engine):
        try:
            return once()
        except DBAPIError as error:
            if not _run_again(error):
                raise
            return once()


async def accept_call_on_loop(
    engine: AsyncEngine,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None,
    idempotency_key: str | None,
    now: datetime,
) -> AcceptedCall:
    """`accept_call` with its round trips awaited on the event loop (PostgreSQL): the same step.

    The public form's request is first tried outside a transaction: for a number with no lead yet,
    everything the step writes is one statement (`insert_chain`), atomic on its own, and leaving out
    BEGIN and COMMIT saves two of its four round trips. Its lock waits are then bounded by the step's
    deadline (the statement is cancelled in the server when the wait is given up), not by the
    lookup's SET LOCAL. A number that has a lead, or a workspace key's request (the attestation names
    a lead written first), runs in a transaction as `accept_call` does."""

    async def once() -> AcceptedCall:
        if workspace_key is None:
            try:
                async with AsyncSession(_autocommit(engine), expire_on_commit=False) as db:
                    return await db.run_sync(
                        _accept_call, settings, call_request, None, idempotency_key, now, new_number_only=True
                    )
            except _NotANewNumber:
                pass
        async with AsyncSession(engine, expire_on_commit=False) as db:
            return await db.run_sync(_accept_call, settings, call_request, workspace_key, idempotency_key, now)

    try:
        return await once()
    except DBAPIError as error:
        if not _run_again(error):
            raise
        return await once()


class _NotANewNumber(Exception):
    """The number has a lead: its step may write several statements, so it runs in a transaction."""


_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The engine, its connections (the same pool) used outside transactions."""
    if engine not in _AUTOCOMMIT:
        _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return _AUTOCOMMIT[engine]


def _run_again(error: DBAPIError) -> bool:
    """Whether a failed step is run once more: a unique key a concurrent request took first (that run
    sees its rows), or a connection the server dropped since its last use (connections in steady use
    are not pinged at checkout: models/database.py), which the pool has let go of with every older
    one. A database that is down fails again: 503. Not when the COMMIT itself failed (no statement
    named): whether it took is unknown, and a second run would replace the call it may have stored;
    503, and the client retries."""
    if isinstance(error, IntegrityError):
        return True
    return error.connection_invalidated and error.statement is not None


_SQLITE_WRITER = threading.Lock()


@contextmanager
def _writer_turn(engine: Engine) -> Iterator[None]:
    """SQLite has one writer at a time, and a writer that finds the file locked sleeps in steps of up
    to 100 ms before it looks again: ten requests at once spent most of their time asleep. Taking
    turns in the process hands the file over the moment it is free. PostgreSQL writes concurrently."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with _SQLITE_WRITER:
        yield


def _accept_call(
    db: Session,
    /,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None,
    idempotency_key: str | None,
    now: datetime,
    *,
    new_number_only: bool = False,
) -> AcceptedCall:
    """`new_number_only`: outside a transaction, so every write must be one statement: stop with
    _NotANewNumber, before writing anything, when the number has a lead."""
    workspace = db.merge(workspace_key[0], load=False) if workspace_key else _cached_default_workspace(db)
    api_key = workspace_key[1] if workspace_key else None
    assert workspace.id is not None  # a stored row
    if idempotency_key is not None:
        earlier = _by_key(db, workspace.id, idempotency_key)
        if earlier is not None:
            return _answer(earlier, now, repeated=True)
    lock_timeout_ms = int(settings.call_intake_timeout_seconds * 1000)
    lead, created, stored = _lead(db, workspace, call_request, api_key, now, lock_timeout_ms, new_number_only)
    facts = gather_facts(db, workspace, lead, settings, now, lead_is_new=created, stored=stored)
    verdict = decide(facts)
    decision = policy_decision(workspace.id, lead.id, verdict)
    # A lead not written yet goes first in the chain of INSERTs, its new id in the rows after it.
    lead_step: tuple[tuple[Lead, dict[str, SQLModel]], ...] = ((lead, {}),) if lead.id is None else ()
    lead_link: dict[str, SQLModel] = {"lead_id": lead} if lead.id is None else {}
    if not verdict.allow_send and (verdict.reason_code in NOT_ALLOWED or verdict.next_allowed_at is None):
        insert_chain(db, *lead_step, (decision, lead_link))
        db.commit()
        assert decision.id is not None
        raise OutreachRefused(decision.id, verdict)
    live = None if created else _live_attempt(db, _stored_id(lead))
    if live is not None and not attempt_store.replace_waiting(db, live, now):
        # A worker has taken the lead's call: it may be ringing. The refusal is not the policy's;
        # the decision is kept all the same (an audit of every evaluation).
        insert_row(db, decision)
        db.commit()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="this number already has a call under way; try again when it ends")
    at = now if verdict.allow_send else verdict.next_allowed_at
    assert at is not None
    attempt = build_row(
        CallAttempt,
        workspace_id=workspace.id,
        lead_id=lead.id,
        call_id=str(uuid4()),
        # The Turnstile token was for this request only; it is not kept with the call.
        call_request=call_request.model_dump(mode="json", exclude={"turnstile_token"}),
        scheduled_for=at,
        idempotency_key=idempotency_key,
        reason=None if verdict.allow_send else verdict.reason_code.value,
        policy_decision_id=None,  # the decision's, stored with it
        created_at=now,
        updated_at=now,
    )
    insert_chain(db, *lead_step, (decision, lead_link), (attempt, {**lead_link, "policy_decision_id": decision}))
    db.commit()  # durable before the 202
    return _answer(attempt, now)


def database_busy(settings: Settings) -> HTTPException:
    retry = max(1, int(settings.call_intake_timeout_seconds))
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail="the database is busy; nothing was scheduled, try again",
        headers={"Retry-After": str(retry)},
    )


async def accept_call_in_time(
    engine: Engine,
    loop_engine: AsyncEngine | None,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None,
    idempotency_key: str | None,
) -> AcceptedCall:
    """`accept_call` without blocking the event loop (on it with PostgreSQL, in a thread with SQLite),
    answered within CALL_INTAKE_TIMEOUT_SECONDS or 503."""
    now = utcnow()
    if loop_engine is not None:
        step = accept_call_on_loop(loop_engine, settings, call_request, workspace_key, idempotency_key, now)
    else:
        step = asyncio.to_thread(partial(accept_call, engine, settings, call_request, workspace_key, idempotency_key, now))
    try:
        return await asyncio.wait_for(step, settings.call_intake_timeout_seconds)
    except (HTTPException, OutreachRefused):
        raise
    except TimeoutError:
        # SQLite's thread may still finish (the loop's step is cancelled and rolled back); a retry
        # with the same Idempotency-Key then finds its call.
        raise database_busy(settings) from None
    except OperationalError:  # locked past lock_timeout, or the database is unreachable
        raise database_busy(settings) from None
