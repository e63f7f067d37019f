"""The call queue's moves in the database. Each is one conditional UPDATE that a single process wins.

Whoever runs them (a Celery worker, beat, or the in-process scheduler) and however often a message
is delivered, an attempt changes status only when it is where the move expects it, and a worker
acts on an attempt only while `claimed_by` still holds its own unique claim: so one attempt is
handed out once, claimed once and dialed once. Synchronous (SQLAlchemy sessions): the async callers
run these in a thread.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from call_queue.callback_time import parse_callback_time
from call_queue.campaign_limiter import CampaignLimits
from call_queue.policy_facts import gather_facts
from call_queue.schedule_rules import DEFAULT_RETRY_RULE, RetryRule, callback_window_time, retry_at, retry_kind
from models.call_job import CALL_JOB_TTL_SECONDS
from models.call_queue import CallAttempt, Campaign
from models.domain import Lead, Workspace
from models.enums import LIVE_ATTEMPT_STATUSES, AttemptStatus, CallOutcome, CallStatus, CampaignStatus
from models.log_config import get_logger
from models.outreach_policy import NOT_ALLOWED, PolicyVerdict, callee_zones
from models.settings import Settings
from models.tables import Call

log = get_logger(__name__)

# Dispatch hands out at most this many attempts per poll: the rest wait for the next one.
DISPATCH_BATCH = 200
# Past the session's TTL and the longest call: a call still "in progress" by then never reported.
UNREPORTED_MARGIN_SECONDS = 60


class LeadBusy(Exception):
    """The lead already has an attempt that may still call them."""

    def __init__(self, live: CallAttempt) -> None:
        super().__init__(f"lead {live.lead_id} already has attempt {live.id} ({live.status.value})")
        self.live = live


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_claim(worker: str) -> str:
    # The nonce makes every claim distinct, even two by the same process.
    return f"{worker}:{uuid4().hex[:12]}"


# --- scheduling ------------------------------------------------------------------------------------


def add_attempt(db: Session, attempt: CallAttempt) -> CallAttempt:
    """Add an attempt (flushed, not committed). The same idempotency key gives back the attempt
    stored first; a lead that already has a live attempt raises LeadBusy."""
    try:
        with db.begin_nested():
            db.add(attempt)
    except IntegrityError:
        if attempt.idempotency_key is not None:
            same_key = select(CallAttempt).where(
                col(CallAttempt.workspace_id) == attempt.workspace_id, col(CallAttempt.idempotency_key) == attempt.idempotency_key
            )
            existing = db.exec(same_key).first()
            if existing is not None:
                return existing
        live = db.exec(
            select(CallAttempt).where(
                col(CallAttempt.lead_id) == attempt.lead_id, col(CallAttempt.status).in_(LIVE_ATTEMPT_STATUSES)
            )
        ).first()
        if live is not None:
            raise LeadBusy(live) from None
        raise
    return attempt


def schedule_call(
    db: Session,
    *,
    workspace_id: int,
    lead_id: int,
    call_request: Mapping[str, Any],
    scheduled_for: datetime,
    now: datetime,
    campaign_id: int | None = None,
    idempotency_key: str | None = None,
    reason: str | None = None,
) -> CallAttempt:
    """A first attempt to call a lead at `scheduled_for` (flushed; the caller commits)."""
    attempt = CallAttempt(
        workspace_id=workspace_id,
        lead_id=lead_id,
        campaign_id=campaign_id,
        call_id=str(uuid4()),
        call_request=dict(call_request),
        scheduled_for=scheduled_for,
        idempotency_key=idempotency_key,
        reason=reason,
        created_at=now,
        updated_at=now,
    )
    return add_attempt(db, attempt)


def replace_waiting(db: Session, live: CallAttempt, now: datetime) -> bool:
    """Cancel a lead's attempt that is only waiting (scheduled or queued, not a campaign's), so a new
    request for the lead takes its place; False when a worker has it already (it may be dialing)."""
    replaced = db.exec(
        sa.update(CallAttempt)
        .where(
            col(CallAttempt.id) == live.id,
            col(CallAttempt.campaign_id).is_(None),
            col(CallAttempt.status).in_((AttemptStatus.SCHEDULED, AttemptStatus.QUEUED)),
        )
        .values(status=AttemptStatus.CANCELED, reason="replaced_by_new_request", updated_at=now)
    )
    return replaced.rowcount == 1


# --- handing out due attempts ----------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignTerms:
    id: int
    status: CampaignStatus
    limits: CampaignLimits
    retry_rule: RetryRule
    # Every call of the campaign runs on this version, whichever one the workspace has active.
    strategy_version_id: int | None = None


def _terms(campaign: Campaign) -> CampaignTerms:
    assert campaign.id is not None  # read from the database
    return CampaignTerms(
        id=campaign.id,
        status=campaign.status,
        limits=CampaignLimits(campaign.calls_per_minute, campaign.max_concurrent_calls),
        retry_rule=RetryRule.of(campaign.max_attempts, campaign.retry_backoff_minutes),
        strategy_version_id=campaign.strategy_version_id,
    )


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(col(CallAttempt.status) == AttemptStatus.SCHEDULED, col(CallAttempt.scheduled_for) <= now)


def campaigns_with_due_attempts(engine: Engine, now: datetime) -> list[CampaignTerms]:
    """Active campaigns that have attempts due: the dispatcher asks their limiter how many to hand out."""
    with Session(engine) as db:
        due_campaigns = select(CallAttempt.campaign_id).where(_due(now), col(CallAttempt.campaign_id).is_not(None)).distinct()
        query = select(Campaign).where(col(Campaign.id).in_(due_campaigns), col(Campaign.status) == CampaignStatus.ACTIVE)
        return [_terms(campaign) for campaign in db.exec(query).all()]


def take_due(engine: Engine, now: datetime, campaign_room: Mapping[int, int], limit: int = DISPATCH_BATCH) -> list[int]:
    """Move due attempts from scheduled to queued and return the ids this call moved.

    Attempts outside campaigns up to `limit`; a campaign's up to its room (campaigns missing from
    `campaign_room`, paused or canceled ones, hand out none). Two dispatchers at once never return
    the same id: the UPDATE re-checks `status = scheduled` row by row.
    """
    with Session(engine) as db:
        postgres = engine.dialect.name == "postgresql"

        def candidates(where: sa.ColumnElement[bool], count: int) -> list[int]:
            query = (
                select(CallAttempt.id)
                .where(_due(now), where)
                .order_by(col(CallAttempt.scheduled_for), col(CallAttempt.id))
                .limit(count)
            )
            if postgres:  # a second dispatcher takes the next rows instead of waiting for these
                query = query.with_for_update(skip_locked=True)
            return [attempt_id for attempt_id in db.exec(query).all() if attempt_id is not None]

        ids = candidates(col(CallAttempt.campaign_id).is_(None), limit)
        for campaign_id, room in campaign_room.items():
            if room > 0:
                ids += candidates(col(CallAttempt.campaign_id) == campaign_id, room)
        if not ids:
            return []
        moved = db.exec(
            sa.update(CallAttempt)
            .where(col(CallAttempt.id).in_(ids), col(CallAttempt.status) == AttemptStatus.SCHEDULED)
            .values(status=AttemptStatus.QUEUED, updated_at=now)
            .returning(col(CallAttempt.id))
        )
        won = [row[0] for row in moved]
        db.commit()
        return won


# --- a worker's claim -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedAttempt:
    """What a worker needs of the attempt it holds, read once when it claims it."""

    id: int
    workspace_id: int
    lead_id: int
    call_id: str
    call_request: dict[str, Any]
    attempt: int
    claimed_by: str
    campaign: CampaignTerms | None
    # It follows a call in which the lead asked to be called back (the policy's spacing does not apply).
    requested_callback: bool = False


def claim(engine: Engine, attempt_id: int, worker: str, now: datetime, lease: timedelta) -> ClaimedAttempt | None:
    """Take an attempt for this worker, or None when someone else has it or it is not due.

    A due attempt can be claimed whether or not a dispatcher queued it, and so can one whose
    claim is older than `lease` (its worker died before dialing): a message delivered again after
    a crash finds it that way.
    """
    claimed_by = new_claim(worker)
    claimable = sa.or_(
        sa.and_(
            col(CallAttempt.status).in_((AttemptStatus.SCHEDULED, AttemptStatus.QUEUED)), col(CallAttempt.scheduled_for) <= now
        ),
        sa.and_(col(CallAttempt.status) == AttemptStatus.CLAIMED, col(CallAttempt.claimed_at) < now - lease),
    )
    with Session(engine) as db:
        taken = db.exec(
            sa.update(CallAttempt)
            .where(col(CallAttempt.id) == attempt_id, claimable)
            .values(status=AttemptStatus.CLAIMED, claimed_by=claimed_by, claimed_at=now, updated_at=now)
        )
        if taken.rowcount != 1:
            db.rollback()
            return None
        db.commit()
        attempt = db.get(CallAttempt, attempt_id)
        assert attempt is not None  # just claimed; attempts are never deleted
        campaign = db.get(Campaign, attempt.campaign_id) if attempt.campaign_id is not None else None
        before = db.get(CallAttempt, attempt.retry_of_id) if attempt.retry_of_id is not None else None
        return ClaimedAttempt(
            id=attempt_id,
            workspace_id=attempt.workspace_id,
            lead_id=attempt.lead_id,
            call_id=attempt.call_id,
            call_request=dict(attempt.call_request),
            attempt=attempt.attempt,
            claimed_by=claimed_by,
            campaign=_terms(campaign) if campaign is not None else None,
            requested_callback=before is not None and before.outcome is CallOutcome.CALLBACK_REQUESTED,
        )


def _held(claimed: ClaimedAttempt, status: AttemptStatus) -> sa.ColumnElement[bool]:
    return sa.and_(
        col(CallAttempt.id) == claimed.id, col(CallAttempt.status) == status, col(CallAttempt.claimed_by) == claimed.claimed_by
    )


def _move(engine: Engine, where: sa.ColumnElement[bool], **values: Any) -> bool:
    with Session(engine) as db:
        moved = db.exec(sa.update(CallAttempt).where(where).values(**values)).rowcount == 1
        db.commit()
        return moved


def put_back(engine: Engine, claimed: ClaimedAttempt, scheduled_for: datetime, reason: str | None, now: datetime) -> bool:
    """Not now: the attempt returns to the schedule, unclaimed."""
    values = {
        "status": AttemptStatus.SCHEDULED,
        "scheduled_for": scheduled_for,
        "claimed_by": None,
        "claimed_at": None,
        "updated_at": now,
    }
    return _move(engine, _held(claimed, AttemptStatus.CLAIMED), reason=reason, **values)


def cancel(engine: Engine, claimed: ClaimedAttempt, reason: str, now: datetime) -> bool:
    return _move(engine, _held(claimed, AttemptStatus.CLAIMED), status=AttemptStatus.CANCELED, reason=reason, updated_at=now)


def settle_policy(
    engine: Engine, claimed: ClaimedAttempt, decision_id: int, verdict: PolicyVerdict, now: datetime
) -> AttemptStatus | None:
    """Act on the policy's decision right before the dial: dialing, back to the schedule at the time
    the policy names, or skipped with its reason. None when the claim was lost meanwhile."""
    held = _held(claimed, AttemptStatus.CLAIMED)
    values: dict[str, Any]
    if verdict.allow_send:
        status, values = AttemptStatus.DIALING, {"reason": None}
    elif verdict.reason_code not in NOT_ALLOWED and verdict.next_allowed_at is not None:
        status = AttemptStatus.SCHEDULED
        values = {
            "reason": verdict.reason_code.value,
            "scheduled_for": verdict.next_allowed_at,
            "claimed_by": None,
            "claimed_at": None,
        }
    else:
        status, values = AttemptStatus.SKIPPED, {"reason": verdict.reason_code.value}
    if not _move(engine, held, status=status, policy_decision_id=decision_id, updated_at=now, **values):
        return None
    if status is AttemptStatus.SKIPPED and claimed.campaign is not None:
        finish_campaign_if_done(engine, claimed.campaign.id, now)
    return status


def mark_dialed(engine: Engine, claimed: ClaimedAttempt, now: datetime) -> bool:
    """The telephony provider took the call: it is in progress until its outcome comes back."""
    return _move(engine, _held(claimed, AttemptStatus.DIALING), status=AttemptStatus.IN_PROGRESS, updated_at=now)


# --- the end of a call, retries and callbacks -------------------------------------------------------


@dataclass(frozen=True)
class CallEnding:
    status: CallStatus
    outcome: CallOutcome | None = None
    # Twilio's last status ("busy", "no-answer", ...), which tells a busy line from an unanswered one.
    telephony_status: str | None = None
    error: str | None = None
    # What the caller said when asking to be called back ("tomorrow at 3").
    callback_text: str | None = None


@dataclass(frozen=True)
class FinishedAttempt:
    attempt_id: int
    status: AttemptStatus
    campaign_id: int | None
    call_id: str
    next_attempt_id: int | None = None
    next_scheduled_for: datetime | None = None


def finish_attempt(
    engine: Engine,
    settings: Settings,
    call_id: str,
    ending: CallEnding,
    now: datetime,
    from_statuses: Sequence[AttemptStatus] = (AttemptStatus.DIALING, AttemptStatus.IN_PROGRESS),
) -> FinishedAttempt | None:
    """Close the attempt that placed `call_id` and schedule what follows: a retry after the backoff,
    or the callback the caller asked for. Once only: None when it was closed already."""
    status = AttemptStatus.FAILED if ending.status is CallStatus.FAILED else AttemptStatus.COMPLETED
    error = ending.error[:500] if ending.error else None
    with Session(engine) as db:
        closed = db.exec(
            sa.update(CallAttempt)
            .where(col(CallAttempt.call_id) == call_id, col(CallAttempt.status).in_(tuple(from_statuses)))
            .values(status=status, outcome=ending.outcome, error=error, updated_at=now)
        )
        if closed.rowcount != 1:
            db.rollback()
            return None
        attempt = db.exec(select(CallAttempt).where(col(CallAttempt.call_id) == call_id)).one()
        successor = _successor(db, settings, attempt, ending, now)
        db.commit()
        assert attempt.id is not None  # read from the database
        finished = FinishedAttempt(attempt.id, status, attempt.campaign_id, call_id)
        if successor is not None:
            finished = replace(finished, next_attempt_id=successor.id, next_scheduled_for=successor.scheduled_for)
    if finished.campaign_id is not None and successor is None:
        finish_campaign_if_done(engine, finished.campaign_id, now)
    return finished


def _successor(db: Session, settings: Settings, attempt: CallAttempt, ending: CallEnding, now: datetime) -> CallAttempt | None:
    workspace, lead = db.get(Workspace, attempt.workspace_id), db.get(Lead, attempt.lead_id)
    campaign = db.get(Campaign, attempt.campaign_id) if attempt.campaign_id is not None else None
    if workspace is None or lead is None or (campaign is not None and campaign.status is not CampaignStatus.ACTIVE):
        return None
    callback = ending.outcome is CallOutcome.CALLBACK_REQUESTED
    facts = gather_facts(db, workspace, lead, settings, now, requested_callback=callback)
    if callback:
        zone = callee_zones(lead.phone, lead.timezone, workspace.timezone)[0][0]
        asked = parse_callback_time(ending.callback_text, now, zone) if ending.callback_text else None
        at, reason = callback_window_time(asked, facts), "callback_requested"
    else:
        kind = retry_kind(ending.status, ending.outcome, ending.telephony_status)
        if kind is None:
            return None
        rule = _terms(campaign).retry_rule if campaign is not None else DEFAULT_RETRY_RULE
        at, reason = retry_at(rule, attempt.attempt, kind, now, facts), f"retry_{kind.value}"
    if at is None:
        return None
    follow = CallAttempt(
        workspace_id=attempt.workspace_id,
        lead_id=attempt.lead_id,
        campaign_id=attempt.campaign_id,
        call_id=str(uuid4()),
        call_request=dict(attempt.call_request),
        scheduled_for=at,
        attempt=attempt.attempt + 1,
        retry_of_id=attempt.id,
        reason=reason,
        created_at=now,
        updated_at=now,
    )
    try:
        return add_attempt(db, follow)
    except LeadBusy as busy:  # something else already has this lead scheduled: that call stands
        log.info("follow_up_not_scheduled_lead_busy", attempt_id=attempt.id, live_attempt_id=busy.live.id)
        return None


def finish_campaign_if_done(engine: Engine, campaign_id: int, now: datetime) -> bool:
    """An active campaign none of whose attempts can still call anyone is finished."""
    live = select(CallAttempt.id).where(
        col(CallAttempt.campaign_id) == campaign_id, col(CallAttempt.status).in_(LIVE_ATTEMPT_STATUSES)
    )
    return _move_campaign(
        engine,
        sa.and_(col(Campaign.id) == campaign_id, col(Campaign.status) == CampaignStatus.ACTIVE, ~sa.exists(live)),
        status=CampaignStatus.FINISHED,
        finished_at=now,
        updated_at=now,
    )


def _move_campaign(engine: Engine, where: sa.ColumnElement[bool], **values: Any) -> bool:
    with Session(engine) as db:
        moved = db.exec(sa.update(Campaign).where(where).values(**values)).rowcount == 1
        db.commit()
        return moved


# --- recovering from lost workers and lost messages -------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    # Claimed by a worker that went silent before dialing: scheduled again.
    reclaimed: int = 0
    # Queued so long that its message must have been lost (a broker restart): scheduled again.
    requeued: int = 0
    # Dialing when its worker went silent: whether the phone rang is unknown, so it is not dialed
    # again as such; it fails and the retry rule decides, after its backoff.
    interrupted: tuple[str, ...] = ()
    # In a call for longer than a call can last, and its end never reached the attempt (a web process
    # that died mid-call, an external stream that never connected, hooks still waiting in the outcome
    # journal): closed from the call's stored row, or as failed, so the lead is not held for ever.
    unreported: tuple[str, ...] = ()


def sweep(engine: Engine, settings: Settings, now: datetime) -> SweepReport:
    lease_cutoff = now - timedelta(seconds=settings.queue_lease_seconds)
    requeue_cutoff = now - timedelta(seconds=settings.queue_requeue_seconds)
    with Session(engine) as db:
        reclaimed = db.exec(
            sa.update(CallAttempt)
            .where(col(CallAttempt.status) == AttemptStatus.CLAIMED, col(CallAttempt.claimed_at) < lease_cutoff)
            .values(status=AttemptStatus.SCHEDULED, claimed_by=None, claimed_at=None, reason="worker_lost", updated_at=now)
        ).rowcount
        requeued = db.exec(
            sa.update(CallAttempt)
            .where(col(CallAttempt.status) == AttemptStatus.QUEUED, col(CallAttempt.updated_at) < requeue_cutoff)
            .values(status=AttemptStatus.SCHEDULED, reason="message_lost", updated_at=now)
        ).rowcount
        db.commit()
        stuck = db.exec(
            select(CallAttempt.call_id).where(
                col(CallAttempt.status) == AttemptStatus.DIALING, col(CallAttempt.claimed_at) < lease_cutoff
            )
        ).all()
    interrupted = CallEnding(CallStatus.FAILED, error="dial interrupted: the worker was lost during the dial")
    closed = tuple(
        call_id
        for call_id in stuck
        if finish_attempt(engine, settings, call_id, interrupted, now, from_statuses=(AttemptStatus.DIALING,))
    )
    unreported = _close_unreported(engine, settings, now)
    report = SweepReport(reclaimed, requeued, closed, unreported)
    if reclaimed or requeued or closed or unreported:
        log.warning(
            "call_queue_recovered", reclaimed=reclaimed, requeued=requeued, interrupted=len(closed), unreported=len(unreported)
        )
    return report


def _close_unreported(engine: Engine, settings: Settings, now: datetime) -> tuple[str, ...]:
    cutoff = now - timedelta(seconds=CALL_JOB_TTL_SECONDS + settings.max_call_seconds + UNREPORTED_MARGIN_SECONDS)
    with Session(engine) as db:
        stale = db.exec(
            select(CallAttempt.call_id).where(
                col(CallAttempt.status) == AttemptStatus.IN_PROGRESS, col(CallAttempt.updated_at) < cutoff
            )
        ).all()
        endings = {}
        for call_id in stale:
            record = db.get(Call, call_id)
            if record is not None and record.status in (CallStatus.COMPLETED, CallStatus.FAILED):
                endings[call_id] = CallEnding(record.status, record.outcome, record.telephony_status, record.error)
            else:
                endings[call_id] = CallEnding(CallStatus.FAILED, error="no outcome was reported for this call")
    return tuple(call_id for call_id, ending in endings.items() if finish_attempt(engine, settings, call_id, ending, now))


# --- what operators see -----------------------------------------------------------------------------


def campaign_counts(db: Session, campaign_id: int) -> dict[str, dict[str, int]]:
    """Counts of a campaign's attempts by status, by outcome, and by skip reason."""

    def grouped(column: Any, *where: Any) -> dict[str, int]:
        rows = db.exec(
            select(column, func.count()).where(col(CallAttempt.campaign_id) == campaign_id, *where).group_by(column)
        ).all()
        return {_label(value): count for value, count in rows if value is not None}

    return {
        "by_status": grouped(CallAttempt.status),
        "by_outcome": grouped(CallAttempt.outcome, col(CallAttempt.outcome).is_not(None)),
        "skipped_by_reason": grouped(CallAttempt.reason, col(CallAttempt.status) == AttemptStatus.SKIPPED),
    }


def _label(value: Any) -> str:
    return value.value if hasattr(value, "value") else str(value)
