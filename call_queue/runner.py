"""The two steps every scheduler runs: hand out the due attempts, and run one attempt to its dial.

Celery's tasks (call_queue/celery_app.py) and the in-process scheduler
(call_queue/scheduler.py) call exactly these; only how an attempt id travels from
`dispatch_due` to `run_attempt` differs (a broker message, or an asyncio task).

`run_attempt`, in order: claim it in the database (one winner) -> a campaign's pace (rate and
concurrency, across processes) -> the outreach policy again, its decision stored -> mark it
dialing -> the injected dial function -> in progress. Database work runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from call_queue import attempt_store
from call_queue.attempt_store import CallEnding, ClaimedAttempt, FinishedAttempt
from call_queue.campaign_limiter import CampaignLimiter, CampaignLimits, Grant
from call_queue.followups import schedule_due_followups
from call_queue.policy_facts import evaluate
from models.call_job import utcnow
from models.domain import Lead, Workspace
from models.enums import AttemptStatus, CallStatus, CampaignStatus
from models.log_config import get_logger
from models.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class DialOrder:
    """What the dial function is asked to place. `call_id` is the call's id, fixed when the attempt
    was scheduled: a dial function that records it before calling out can recognize a repeat."""

    attempt_id: int
    call_id: str
    workspace_id: int
    lead_id: int
    campaign_id: int | None
    attempt: int
    call_request: dict[str, Any]
    # The strategy version a campaign names for its calls; None: the workspace's active one.
    strategy_version_id: int | None = None


# Places the call (context, session, telephony). Raising means the provider refused it.
DialFunction = Callable[[DialOrder], Awaitable[None]]


class CallScheduler(Protocol):
    """Where due attempts go to be run, and what keeps polling for them."""

    async def hand_over(self, attempt_id: int) -> None:
        """Give one queued attempt to a worker (a task message, or an asyncio task)."""
        ...

    async def wake(self) -> None:
        """An attempt became due now: look at once instead of at the next poll."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class QueueDeps:
    engine: Engine
    settings: Settings
    dial: DialFunction
    limiter: CampaignLimiter
    clock: Callable[[], datetime] = utcnow
    worker: str = field(default_factory=attempt_store.worker_name)
    # Waits for a campaign's next evenly spaced slot; tests pass one that moves their clock instead.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.queue_lease_seconds)


class AttemptRun(StrEnum):
    """What one run of an attempt came to."""

    NOT_CLAIMED = "not_claimed"  # another worker has it, or it is no longer due
    DEFERRED = "deferred"  # back to the schedule (campaign pace, calling hours, spacing, budget, paused)
    SKIPPED = "skipped"  # the policy refused it for good
    CANCELED = "canceled"
    DIALED = "dialed"
    DIAL_FAILED = "dial_failed"
    CLAIM_LOST = "claim_lost"  # this worker was too slow: its lease expired and another took over


def slot_lookahead_seconds(settings: Settings) -> float:
    """How far ahead a campaign's slots are handed out and kept: two polls, since the next one comes a
    poll after this one has finished (which takes a while on a busy database), not a poll after it began."""
    return 2 * settings.queue_poll_seconds


async def dispatch_due(deps: QueueDeps, scheduler: CallScheduler) -> list[int]:
    """Recover what lost workers held, schedule the leads' due follow-ups, then hand every due attempt
    to the scheduler once."""
    now = deps.clock()
    await asyncio.to_thread(attempt_store.sweep, deps.engine, deps.settings, now)
    await asyncio.to_thread(schedule_due_followups, deps.engine, now)
    campaigns = await asyncio.to_thread(attempt_store.campaigns_with_due_attempts, deps.engine, now)
    # A campaign hands out no more than its pace allows now: the rest would only come back.
    # The slots until the next poll: each run waits for its own (see _campaign_slot), evenly spaced.
    horizon = slot_lookahead_seconds(deps.settings)
    # The clock read again: the steps above take a while on a busy database, and the slots kept since
    # by running attempts were placed by the time they ran.
    room_at = deps.clock().timestamp()
    room = {terms.id: await deps.limiter.room(terms.id, terms.limits, room_at, horizon) for terms in campaigns}
    taken = await asyncio.to_thread(attempt_store.take_due, deps.engine, now, room)
    for attempt_id in taken:
        await scheduler.hand_over(attempt_id)
    if taken:
        log.info("call_attempts_dispatched", count=len(taken))
    return taken


async def run_attempt(deps: QueueDeps, attempt_id: int) -> AttemptRun:
    claimed = await asyncio.to_thread(attempt_store.claim, deps.engine, attempt_id, deps.worker, deps.clock(), deps.lease)
    if claimed is None:
        return AttemptRun.NOT_CLAIMED
    log_ = log.bind(attempt_id=claimed.id, call_id=claimed.call_id, attempt=claimed.attempt)
    campaign = claimed.campaign
    if campaign is not None:
        if campaign.status is CampaignStatus.CANCELED or campaign.status is CampaignStatus.FINISHED:
            await asyncio.to_thread(attempt_store.cancel, deps.engine, claimed, f"campaign_{campaign.status.value}", deps.clock())
            return AttemptRun.CANCELED
        if campaign.status is CampaignStatus.PAUSED:
            await _put_back(deps, claimed, deps.clock(), "campaign_paused")
            return AttemptRun.DEFERRED
        grant, now = await _campaign_slot(deps, campaign.id, claimed.call_id, campaign.limits)
        if not grant.granted:
            await _put_back(deps, claimed, now + timedelta(seconds=grant.retry_in), f"campaign_{grant.limit}")
            return AttemptRun.DEFERRED

    settled = await asyncio.to_thread(_recheck_policy, deps, claimed)
    if settled is not AttemptStatus.DIALING:
        if campaign is not None:
            await deps.limiter.refund(campaign.id, claimed.call_id)
        if settled is None:
            log_.warning("call_attempt_claim_lost")
            return AttemptRun.CLAIM_LOST
        log_.info("call_attempt_refused_by_policy", status=settled.value)
        return AttemptRun.SKIPPED if settled is AttemptStatus.SKIPPED else AttemptRun.DEFERRED

    try:
        await deps.dial(_order(claimed))
    except Exception as exc:
        log_.error("call_attempt_dial_failed", error=type(exc).__name__)
        ending = CallEnding(CallStatus.FAILED, error=f"dial failed: {type(exc).__name__}: {exc}")
        await _finish(deps, claimed.call_id, ending, from_statuses=(AttemptStatus.DIALING,))
        return AttemptRun.DIAL_FAILED
    if not await asyncio.to_thread(attempt_store.mark_dialed, deps.engine, claimed, deps.clock()):
        # The sweep took it for interrupted while the provider was slow; the call itself went out.
        log_.warning("call_attempt_dialed_after_its_lease")
    log_.info("call_attempt_dialed")
    return AttemptRun.DIALED


async def _campaign_slot(deps: QueueDeps, campaign_id: int, call_id: str, limits: CampaignLimits) -> tuple[Grant, datetime]:
    """The campaign's next dial for this call. A slot due before the next poll is reserved for it and
    waited for here (the claim is held far longer), so the pace is one dial every
    60 / calls_per_minute seconds rather than one per poll; a later one goes back to the schedule."""
    waited = 0.0
    while True:
        now = deps.clock()
        grant = await deps.limiter.acquire(
            campaign_id, call_id, limits, now.timestamp(), reserve_within=slot_lookahead_seconds(deps.settings)
        )
        # Bounded: runs handed out together take turns, and none waits past a poll and a lease's half.
        if grant.granted or grant.limit != "rate" or waited + grant.retry_in > deps.settings.queue_lease_seconds / 2:
            return grant, now
        if grant.retry_in > slot_lookahead_seconds(deps.settings):
            return grant, now
        await deps.sleep(grant.retry_in)
        waited += grant.retry_in


def _order(claimed: ClaimedAttempt) -> DialOrder:
    return DialOrder(
        attempt_id=claimed.id,
        call_id=claimed.call_id,
        workspace_id=claimed.workspace_id,
        lead_id=claimed.lead_id,
        campaign_id=claimed.campaign.id if claimed.campaign else None,
        attempt=claimed.attempt,
        call_request=claimed.call_request,
        strategy_version_id=claimed.campaign.strategy_version_id if claimed.campaign else None,
    )


async def _put_back(deps: QueueDeps, claimed: ClaimedAttempt, at: datetime, reason: str) -> None:
    await asyncio.to_thread(attempt_store.put_back, deps.engine, claimed, at, reason, deps.clock())


def _recheck_policy(deps: QueueDeps, claimed: ClaimedAttempt) -> AttemptStatus | None:
    """The outreach policy right before the dial (a lead may have opted out since), decision stored."""
    now = deps.clock()
    with Session(deps.engine) as db:
        workspace, lead = db.get(Workspace, claimed.workspace_id), db.get(Lead, claimed.lead_id)
        if workspace is None or lead is None:  # deleted meanwhile; nothing to call
            return None
        decision, verdict = evaluate(
            db,
            workspace,
            lead,
            deps.settings,
            now,
            exclude_call_id=claimed.call_id,
            requested_callback=claimed.requested_callback,
        )
        decision_id = decision.id
    assert decision_id is not None  # evaluate commits it
    return attempt_store.settle_policy(deps.engine, claimed, decision_id, verdict, now)


async def _finish(deps: QueueDeps, call_id: str, ending: CallEnding, **kwargs: Any) -> FinishedAttempt | None:
    finished = await asyncio.to_thread(
        attempt_store.finish_attempt, deps.engine, deps.settings, call_id, ending, deps.clock(), **kwargs
    )
    if finished is not None and finished.campaign_id is not None:
        await deps.limiter.release(finished.campaign_id, call_id)
    return finished


async def finish_call(deps: QueueDeps, call_id: str, ending: CallEnding) -> FinishedAttempt | None:
    """After a call's outcome is stored: close its attempt, free its campaign slot, schedule what follows."""
    return await _finish(deps, call_id, ending)
