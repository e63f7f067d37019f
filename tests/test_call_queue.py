"""The call queue on SQLite and PostgreSQL: one claim wins, a due attempt is handed out once, the policy
is asked again right before each dial, lost workers are recovered, retries and callbacks follow.

The clock is set by each test (`world.clock`); the dial is a recording stand-in for the telephony.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from call_queue import attempt_store
from call_queue.attempt_store import CallEnding, LeadBusy
from call_queue.runner import AttemptRun, DialOrder, dispatch_due, finish_call, run_attempt
from call_queue.scheduler import InProcessScheduler
from models.call_queue import CallAttempt, Campaign
from models.database import make_engine
from models.domain import Lead, PolicyDecision
from models.enums import AttemptStatus, CallOutcome, CallStatus, CampaignStatus
from tests.support.call_queue_world import LA, MORNING, QueueWorld, make_world


@pytest.fixture()
def world(db_url) -> Iterator[QueueWorld]:
    world = make_world(db_url)
    yield world
    world.engine.dispose()


def all_at_once(count: int, work) -> list:
    """Run `work(i)` in `count` threads released together; each thread has its own engine, like a process."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


# --- one winner -------------------------------------------------------------------------------------


def test_of_eight_workers_claiming_one_attempt_exactly_one_wins(world):
    attempts = [world.schedule(world.lead()) for _ in range(3)]
    engines = [make_engine(world.db_url) for _ in range(8)]
    lease = timedelta(seconds=60)

    for attempt in attempts:
        claims = all_at_once(
            8, lambda i, attempt_id=attempt.id: attempt_store.claim(engines[i], attempt_id, f"worker-{i}", world.clock(), lease)
        )

        winners = [claim for claim in claims if claim is not None]
        assert len(winners) == 1
        assert world.attempt(attempt.id).claimed_by == winners[0].claimed_by
    for engine in engines:
        engine.dispose()


def test_dispatchers_running_at_once_hand_out_each_due_attempt_once(world):
    due = {world.schedule(world.lead()).id for _ in range(40)}
    later = world.schedule(world.lead(), at=world.clock() + timedelta(hours=1))
    engines = [make_engine(world.db_url) for _ in range(4)]

    handed_out: list[int] = []
    for _ in range(4):  # batches of 25: a second round takes what the first left
        taken = all_at_once(4, lambda i: attempt_store.take_due(engines[i], world.clock(), {}, limit=25))
        handed_out += [attempt_id for batch in taken for attempt_id in batch]

    assert sorted(handed_out) == sorted(due)  # every due one, none twice
    assert world.attempt(later.id).status is AttemptStatus.SCHEDULED
    for engine in engines:
        engine.dispose()


async def test_one_attempt_delivered_twice_at_once_is_dialed_once(world):
    attempt = world.schedule(world.lead())
    deps = world.deps()

    runs = await asyncio.gather(run_attempt(deps, attempt.id), run_attempt(deps, attempt.id))

    assert sorted(runs) == sorted([AttemptRun.DIALED, AttemptRun.NOT_CLAIMED])
    assert [order.call_id for order in world.dials] == [attempt.call_id]


async def test_an_attempt_run_again_after_its_dial_is_not_dialed_again(world):
    attempt = world.schedule(world.lead())
    deps = world.deps()
    await run_attempt(deps, attempt.id)

    world.clock.advance(hours=2)  # long after any lease

    assert await run_attempt(deps, attempt.id) is AttemptRun.NOT_CLAIMED
    assert len(world.dials) == 1


# --- the schedule ------------------------------------------------------------------------------------


def test_a_lead_has_at_most_one_attempt_that_may_still_call_them(world):
    lead = world.lead()
    first = world.schedule(lead)

    with pytest.raises(LeadBusy) as busy:
        world.schedule(lead, at=world.clock() + timedelta(days=1))

    assert busy.value.live.id == first.id


def test_the_same_idempotency_key_gives_back_the_same_attempt(world):
    lead = world.lead()

    first = world.schedule(lead, key="form-42")
    again = world.schedule(lead, key="form-42")

    assert again.id == first.id
    assert again.call_id == first.call_id
    assert len(world.attempts()) == 1


async def test_a_future_attempt_is_handed_out_only_once_its_time_has_come(world):
    attempt = world.schedule(world.lead(), at=world.clock() + timedelta(minutes=30))
    scheduler = InProcessScheduler(world.deps())

    assert await scheduler.poll_once() == []
    world.clock.advance(minutes=30)
    assert await scheduler.poll_once() == [attempt.id]
    await scheduler.drain()

    assert [order.call_id for order in world.dials] == [attempt.call_id]
    assert world.attempt(attempt.id).status is AttemptStatus.IN_PROGRESS


async def test_the_in_process_scheduler_dials_a_call_made_due_now_when_woken(world):
    attempt = world.schedule(world.lead())
    dialed = asyncio.Event()

    async def dial(order: DialOrder) -> None:
        world.dials.append(order)
        dialed.set()

    # A poll period far longer than the test: only the wake-up can explain the dial.
    world.settings = world.settings.model_copy(update={"queue_poll_seconds": 3600})
    scheduler = InProcessScheduler(world.deps(dial=dial))
    await scheduler.start()
    try:
        await scheduler.wake()
        await asyncio.wait_for(dialed.wait(), timeout=30)
    finally:
        await scheduler.stop()

    assert [order.call_id for order in world.dials] == [attempt.call_id]


# --- the policy again, right before the dial -------------------------------------------------------------


def decisions(world: QueueWorld) -> list[PolicyDecision]:
    with Session(world.engine) as db:
        return list(db.exec(select(PolicyDecision).order_by(PolicyDecision.id)).all())


async def test_the_dial_gets_the_call_request_and_the_allowing_decision_is_stored(world):
    lead = world.lead()
    attempt = world.schedule(lead)

    assert await run_attempt(world.deps(), attempt.id) is AttemptRun.DIALED

    (order,) = world.dials
    assert (order.call_id, order.lead_id, order.call_request["phone"]) == (attempt.call_id, lead.id, lead.phone)
    (decision,) = decisions(world)
    assert decision.allow_send is True
    assert world.attempt(attempt.id).policy_decision_id == decision.id


async def test_a_lead_who_opted_out_after_scheduling_is_not_called_and_the_refusal_is_stored(world):
    lead = world.lead()
    attempt = world.schedule(lead, at=world.clock() + timedelta(hours=1))
    with Session(world.engine) as db:
        stored = db.get(Lead, lead.id)
        stored.opted_out_at = world.clock()
        db.add(stored)
        db.commit()
    world.clock.advance(hours=1)

    assert await run_attempt(world.deps(), attempt.id) is AttemptRun.SKIPPED

    assert world.dials == []
    skipped = world.attempt(attempt.id)
    assert (skipped.status, skipped.reason) == (AttemptStatus.SKIPPED, "opted_out")
    assert [(d.allow_send, d.reason_code) for d in decisions(world)] == [(False, "opted_out")]


async def test_an_attempt_due_at_3_am_waits_for_8_am_in_the_leads_zone(world):
    world.clock.now = datetime(2026, 6, 10, 3, 0, tzinfo=LA).astimezone(UTC)
    attempt = world.schedule(world.lead())

    assert await run_attempt(world.deps(), attempt.id) is AttemptRun.DEFERRED

    waiting = world.attempt(attempt.id)
    assert waiting.status is AttemptStatus.SCHEDULED
    assert waiting.scheduled_for == datetime(2026, 6, 10, 8, 0, tzinfo=LA)
    assert waiting.reason == "outside_calling_hours"
    assert world.dials == []


# --- lost workers, lost messages --------------------------------------------------------------------------


def test_a_claim_older_than_the_lease_is_taken_over_and_its_first_holder_can_no_longer_act(world):
    attempt = world.schedule(world.lead())
    lease = timedelta(seconds=60)
    first = attempt_store.claim(world.engine, attempt.id, "worker-a", world.clock(), lease)

    world.clock.advance(seconds=30)
    assert attempt_store.claim(world.engine, attempt.id, "worker-b", world.clock(), lease) is None
    world.clock.advance(seconds=31)
    second = attempt_store.claim(world.engine, attempt.id, "worker-b", world.clock(), lease)

    assert second is not None
    assert attempt_store.put_back(world.engine, first, world.clock(), "late", world.clock()) is False
    assert world.attempt(attempt.id).claimed_by == second.claimed_by


def test_the_sweep_reschedules_what_dead_workers_and_lost_messages_held(world):
    claimed = world.schedule(world.lead())
    queued = world.schedule(world.lead())
    dialing = world.schedule(world.lead())
    attempt_store.claim(world.engine, claimed.id, "dead", world.clock(), timedelta(seconds=60))
    attempt_store.take_due(world.engine, world.clock(), {})  # queued and dialing are queued now
    held = attempt_store.claim(world.engine, dialing.id, "dead", world.clock(), timedelta(seconds=60))
    attempt_store._move(world.engine, attempt_store._held(held, AttemptStatus.CLAIMED), status=AttemptStatus.DIALING)

    world.clock.advance(seconds=59)
    assert attempt_store.sweep(world.engine, world.settings, world.clock()) == attempt_store.SweepReport()
    world.clock.advance(seconds=601)
    report = attempt_store.sweep(world.engine, world.settings, world.clock())

    assert (report.reclaimed, report.requeued, report.interrupted) == (1, 1, (dialing.call_id,))
    assert world.attempt(claimed.id).status is AttemptStatus.SCHEDULED
    assert world.attempt(queued.id).status is AttemptStatus.SCHEDULED
    interrupted = world.attempt(dialing.id)
    assert interrupted.status is AttemptStatus.FAILED
    # Whether the phone rang is unknown: it is not redialed now, the retry rule schedules it after its backoff.
    retry = next(a for a in world.attempts() if a.retry_of_id == dialing.id)
    assert retry.scheduled_for == world.clock() + timedelta(hours=1)


# --- the end of a call: retries and callbacks --------------------------------------------------------------


async def dialed(world: QueueWorld, lead: Lead | None = None) -> CallAttempt:
    attempt = world.schedule(lead or world.lead())
    assert await run_attempt(world.deps(), attempt.id) is AttemptRun.DIALED
    return world.attempt(attempt.id)


async def test_an_unanswered_call_is_retried_after_the_backoff_once_however_often_its_end_is_reported(world):
    attempt = await dialed(world)
    ending = CallEnding(CallStatus.COMPLETED, CallOutcome.NO_ANSWER, telephony_status="no-answer")
    deps = world.deps()

    first = await finish_call(deps, attempt.call_id, ending)
    again = await finish_call(deps, attempt.call_id, ending)

    assert again is None
    assert first.next_scheduled_for == world.clock() + timedelta(hours=1)
    closed, retry = world.attempts()
    assert (closed.status, closed.outcome) == (AttemptStatus.COMPLETED, CallOutcome.NO_ANSWER)
    assert (retry.status, retry.attempt, retry.reason, retry.retry_of_id) == (
        AttemptStatus.SCHEDULED,
        2,
        "retry_no_answer",
        closed.id,
    )
    assert retry.call_id != closed.call_id


async def test_a_busy_line_is_tried_again_in_15_minutes(world):
    attempt = await dialed(world)

    finished = await finish_call(
        world.deps(), attempt.call_id, CallEnding(CallStatus.COMPLETED, CallOutcome.NO_ANSWER, telephony_status="busy")
    )

    assert finished.next_scheduled_for == world.clock() + timedelta(minutes=15)


async def test_after_the_last_attempt_nothing_more_is_scheduled(world):
    lead = world.lead()
    ending = CallEnding(CallStatus.COMPLETED, CallOutcome.VOICEMAIL)
    deps = world.deps()
    scheduler = InProcessScheduler(deps)
    attempt = await dialed(world, lead)
    for _ in range(2):
        finished = await finish_call(deps, attempt.call_id, ending)
        world.clock.now = finished.next_scheduled_for
        await scheduler.poll_once()
        await scheduler.drain()
        attempt = world.attempts()[-1]

    last = await finish_call(deps, attempt.call_id, ending)

    assert last.next_attempt_id is None
    assert [a.attempt for a in world.attempts()] == [1, 2, 3]
    assert len(world.dials) == 3


async def test_a_conversation_with_an_outcome_is_not_retried(world):
    attempt = await dialed(world)

    finished = await finish_call(world.deps(), attempt.call_id, CallEnding(CallStatus.COMPLETED, CallOutcome.NOT_INTERESTED))

    assert finished.next_attempt_id is None
    assert len(world.attempts()) == 1


async def test_a_callback_is_scheduled_when_the_caller_asked_in_their_zone(world):
    attempt = await dialed(world)
    ending = CallEnding(CallStatus.COMPLETED, CallOutcome.CALLBACK_REQUESTED, callback_text="call me tomorrow at 3")

    finished = await finish_call(world.deps(), attempt.call_id, ending)

    assert finished.next_scheduled_for == datetime(2026, 6, 11, 15, 0, tzinfo=LA)
    assert world.attempt(finished.next_attempt_id).reason == "callback_requested"


async def test_a_callback_asked_for_at_night_waits_for_the_morning(world):
    attempt = await dialed(world)
    ending = CallEnding(CallStatus.COMPLETED, CallOutcome.CALLBACK_REQUESTED, callback_text="tonight at 11 pm")

    finished = await finish_call(world.deps(), attempt.call_id, ending)

    assert finished.next_scheduled_for == datetime(2026, 6, 11, 8, 0, tzinfo=LA)


async def test_a_dial_the_provider_refuses_fails_and_is_retried_later(world):
    attempt = world.schedule(world.lead())

    async def refusing(order: DialOrder) -> None:
        raise ConnectionError("provider down")

    assert await run_attempt(world.deps(dial=refusing), attempt.id) is AttemptRun.DIAL_FAILED

    failed, retry = world.attempts()
    assert (failed.status, failed.error) == (AttemptStatus.FAILED, "dial failed: ConnectionError: provider down")
    assert (retry.status, retry.reason) == (AttemptStatus.SCHEDULED, "retry_failed")


# --- campaigns --------------------------------------------------------------------------------------


async def test_a_campaign_hands_out_no_more_than_its_rate_allows(world):
    campaign = world.campaign(calls_per_minute=2, max_concurrent_calls=5)
    attempts = [world.schedule(world.lead(), campaign=campaign) for _ in range(5)]
    scheduler = InProcessScheduler(world.deps())

    first = await scheduler.poll_once()
    await scheduler.drain()
    assert await scheduler.poll_once() == []  # the next slot is 30 s away
    world.clock.advance(seconds=30)
    second = await scheduler.poll_once()
    await scheduler.drain()
    assert await scheduler.poll_once() == []  # the minute's two dials are spent

    assert (len(first), len(second)) == (1, 1)
    assert [order.attempt_id for order in world.dials] == sorted(a.id for a in attempts)[:2]


async def test_a_campaigns_dials_are_evenly_spaced_not_a_burst_at_the_start_of_the_minute(world):
    campaign = world.campaign(calls_per_minute=6, max_concurrent_calls=100)
    for _ in range(8):
        world.schedule(world.lead(), campaign=campaign)
    scheduler = InProcessScheduler(world.deps())
    start = world.clock()

    for _ in range(60):  # two minutes of polls, every queue_poll_seconds
        await scheduler.poll_once()
        await scheduler.drain()
        world.clock.advance(seconds=world.settings.queue_poll_seconds)

    offsets = [(at - start).total_seconds() for at in world.dialed_at]
    assert offsets == [0, 10, 20, 30, 40, 50, 60, 70]


async def test_a_campaign_never_has_more_calls_running_than_its_cap(world):
    campaign = world.campaign(calls_per_minute=100, max_concurrent_calls=2)
    for _ in range(4):
        world.schedule(world.lead(), campaign=campaign)
    deps = world.deps()
    scheduler = InProcessScheduler(deps)

    await scheduler.poll_once()
    await scheduler.drain()
    assert len(world.dials) == 2
    assert await scheduler.poll_once() == []
    await finish_call(deps, world.dials[0].call_id, CallEnding(CallStatus.COMPLETED, CallOutcome.QUALIFIED))
    await scheduler.poll_once()
    await scheduler.drain()

    assert len(world.dials) == 3


async def test_a_paused_campaign_dials_nobody_until_resumed(world):
    campaign = world.campaign()
    attempt = world.schedule(world.lead(), campaign=campaign)
    world.set_campaign_status(campaign, CampaignStatus.PAUSED)
    scheduler = InProcessScheduler(world.deps())

    assert await scheduler.poll_once() == []
    world.set_campaign_status(campaign, CampaignStatus.ACTIVE)
    assert await scheduler.poll_once() == [attempt.id]
    await scheduler.drain()

    assert len(world.dials) == 1


async def test_a_campaign_counts_its_attempts_and_finishes_when_none_can_call_anymore(world):
    campaign = world.campaign(calls_per_minute=60, max_attempts=1)  # one a second: all three within the poll
    answered = world.schedule(world.lead(), campaign=campaign)
    unanswered = world.schedule(world.lead(), campaign=campaign)
    opted_out = world.schedule(world.lead(opted_out_at=MORNING), campaign=campaign)
    deps = world.deps()
    await dispatch_due(deps, scheduler := InProcessScheduler(deps))
    await scheduler.drain()

    await finish_call(deps, answered.call_id, CallEnding(CallStatus.COMPLETED, CallOutcome.MEETING_BOOKED))
    await finish_call(deps, unanswered.call_id, CallEnding(CallStatus.COMPLETED, CallOutcome.NO_ANSWER))

    with Session(world.engine) as db:
        counts = attempt_store.campaign_counts(db, campaign.id)
        finished = db.get(Campaign, campaign.id)
    assert counts == {
        "by_status": {"completed": 2, "skipped": 1},
        "by_outcome": {"meeting_booked": 1, "no_answer": 1},
        "skipped_by_reason": {"opted_out": 1},
    }
    assert world.attempt(opted_out.id).status is AttemptStatus.SKIPPED
    assert finished.status is CampaignStatus.FINISHED


# --- a lead's next_followup_at ------------------------------------------------------------------------


async def test_a_leads_due_follow_up_is_scheduled_once_and_dialed(world):
    lead = world.lead()
    first = await dialed(world, lead)
    await finish_call(world.deps(), first.call_id, CallEnding(CallStatus.COMPLETED, CallOutcome.INFO_COLLECTED))
    with Session(world.engine) as db:
        stored = db.get(Lead, lead.id)
        stored.next_followup_at = world.clock() - timedelta(minutes=1)  # what lead_updates set after that call
        db.add(stored)
        db.commit()

    scheduler = InProcessScheduler(world.deps())
    taken = await scheduler.poll_once()
    await scheduler.drain()
    again = await dispatch_due(world.deps(), scheduler)

    [follow_up] = [a for a in world.attempts() if a.id != first.id]
    assert taken == [follow_up.id] and again == []
    assert (follow_up.status, follow_up.call_request) == (AttemptStatus.IN_PROGRESS, first.call_request)
    assert [order.call_id for order in world.dials] == [first.call_id, follow_up.call_id]
    with Session(world.engine) as db:
        assert db.get(Lead, lead.id).next_followup_at is None


async def test_a_call_that_never_reports_its_end_frees_its_lead_after_the_longest_call(world):
    attempt = await dialed(world)  # in progress, and then nothing: the web process died mid-call
    world.clock.advance(seconds=600 + world.settings.max_call_seconds + 30)
    assert attempt_store.sweep(world.engine, world.settings, world.clock()).unreported == ()

    world.clock.advance(seconds=60)
    report = attempt_store.sweep(world.engine, world.settings, world.clock())

    assert report.unreported == (attempt.call_id,)
    closed, retry = world.attempts()
    assert (closed.status, closed.error) == (AttemptStatus.FAILED, "no outcome was reported for this call")
    assert (retry.status, retry.reason) == (AttemptStatus.SCHEDULED, "retry_failed")
