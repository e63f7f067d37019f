"""When the queue places an attempt: the calling window, retry backoff, and the callback time a caller asked for.

Every test gives the instant it is about; none reads the clock.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from call_queue.callback_time import parse_callback_time
from call_queue.schedule_rules import (
    DEFAULT_RETRY_RULE,
    RetryKind,
    RetryRule,
    allowed_from,
    callback_window_time,
    projected,
    retry_at,
    retry_kind,
)
from models.enums import BudgetTier, CallOutcome, CallStatus, FollowUpPreset
from models.outreach_policy import FollowUpCadence, OutreachFacts, Reason, decide

LA = ZoneInfo("America/Los_Angeles")
LA_PHONE = "+14155550123"


def la(*args: int) -> datetime:
    return datetime(*args, tzinfo=LA)


def facts_at(now: datetime, **changes) -> OutreachFacts:
    return OutreachFacts(now=now.astimezone(UTC), phone=LA_PHONE, consent=True, **changes)


# --- the calling window -----------------------------------------------------------------------------


def test_a_call_asked_for_at_3_am_is_allowed_from_8_the_same_morning():
    assert allowed_from(facts_at(la(2026, 6, 10, 3, 0))) == la(2026, 6, 10, 8, 0)


def test_a_call_inside_the_window_is_allowed_at_once():
    assert allowed_from(facts_at(la(2026, 6, 10, 10, 15))) == la(2026, 6, 10, 10, 15)


def test_after_9_pm_the_window_is_the_next_morning():
    assert allowed_from(facts_at(la(2026, 6, 10, 21, 0))) == la(2026, 6, 11, 8, 0)


def test_hard_refusals_have_no_time():
    assert allowed_from(facts_at(la(2026, 6, 10, 10, 0), opted_out=True)) is None
    assert allowed_from(replace_consent(facts_at(la(2026, 6, 10, 10, 0)))) is None


def replace_consent(facts: OutreachFacts) -> OutreachFacts:
    from dataclasses import replace

    return replace(facts, consent=False)


def test_a_spent_daily_budget_waits_for_the_next_budget_day_then_the_window():
    facts = facts_at(
        la(2026, 6, 10, 15, 0), budget_tier=BudgetTier.YELLOW, calls_today=60, workspace_timezone="America/Los_Angeles"
    )

    assert allowed_from(facts) == la(2026, 6, 11, 8, 0)


def test_projecting_to_another_budget_day_forgets_todays_calls():
    today = facts_at(
        la(2026, 6, 10, 15, 0), budget_tier=BudgetTier.YELLOW, calls_today=60, workspace_timezone="America/Los_Angeles"
    )

    assert projected(today, la(2026, 6, 10, 18, 0)).calls_today == 60
    assert projected(today, la(2026, 6, 11, 9, 0)).calls_today == 0


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        # The night DST begins (Sunday 8 March 2026, 2:00 -> 3:00): still 8:00 on the wall clock, now UTC-7.
        (la(2026, 3, 8, 1, 30), datetime(2026, 3, 8, 15, 0, tzinfo=UTC)),
        # The night it ends (Sunday 1 November 2026, 2:00 -> 1:00): 8:00 PST is 16:00 UTC.
        (la(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 16, 0, tzinfo=UTC)),
    ],
)
def test_the_window_opens_at_8_local_on_the_nights_the_clocks_change(now, opens):
    assert allowed_from(facts_at(now)) == opens


# --- retries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "telephony_status", "kind"),
    [
        (CallStatus.COMPLETED, CallOutcome.NO_ANSWER, "no-answer", RetryKind.NO_ANSWER),
        (CallStatus.COMPLETED, CallOutcome.NO_ANSWER, "busy", RetryKind.BUSY),
        (CallStatus.FAILED, CallOutcome.NO_ANSWER, "failed", RetryKind.FAILED),
        (CallStatus.FAILED, None, None, RetryKind.FAILED),
        (CallStatus.COMPLETED, CallOutcome.VOICEMAIL, "completed", RetryKind.VOICEMAIL),
        (CallStatus.COMPLETED, CallOutcome.NOT_INTERESTED, "completed", None),
        (CallStatus.COMPLETED, CallOutcome.MEETING_BOOKED, "completed", None),
        (CallStatus.COMPLETED, CallOutcome.OPTED_OUT, "completed", None),
        (CallStatus.COMPLETED, CallOutcome.CALLBACK_REQUESTED, "completed", None),
    ],
)
def test_only_calls_that_reached_nobody_are_retried(status, outcome, telephony_status, kind):
    assert retry_kind(status, outcome, telephony_status) is kind


def test_the_backoff_grows_per_attempt_and_stops_at_the_attempt_limit():
    rule = RetryRule.of(max_attempts=4, backoff_minutes=[30, 120])

    waits = [rule.retry_after(attempt, RetryKind.NO_ANSWER) for attempt in (1, 2, 3, 4)]

    assert waits == [timedelta(minutes=30), timedelta(minutes=120), timedelta(minutes=120), None]


def test_a_busy_line_is_tried_again_sooner_than_the_backoff():
    assert DEFAULT_RETRY_RULE.retry_after(1, RetryKind.BUSY) == timedelta(minutes=15)
    assert DEFAULT_RETRY_RULE.retry_after(1, RetryKind.VOICEMAIL) == timedelta(hours=1)


def test_a_retry_that_would_fall_at_night_waits_for_the_morning():
    ended = la(2026, 6, 10, 20, 30)

    at = retry_at(DEFAULT_RETRY_RULE, 1, RetryKind.NO_ANSWER, ended, facts_at(ended))

    assert at == la(2026, 6, 11, 8, 0)


def test_a_retry_inside_the_window_comes_after_the_backoff():
    ended = la(2026, 6, 10, 10, 0)

    assert retry_at(DEFAULT_RETRY_RULE, 1, RetryKind.NO_ANSWER, ended, facts_at(ended)) == la(2026, 6, 10, 11, 0)


def test_the_last_allowed_attempt_is_not_retried():
    ended = la(2026, 6, 10, 10, 0)

    assert retry_at(DEFAULT_RETRY_RULE, 3, RetryKind.NO_ANSWER, ended, facts_at(ended)) is None


def test_the_strategys_follow_up_spacing_outlasts_a_shorter_backoff():
    ended = la(2026, 6, 10, 10, 0)
    cadence = FollowUpCadence.for_strategy(FollowUpPreset.BALANCED)  # 24 h before attempt 2
    facts = facts_at(ended, cadence=cadence, previous_attempts=[ended.astimezone(UTC)])

    assert retry_at(DEFAULT_RETRY_RULE, 1, RetryKind.NO_ANSWER, ended, facts) == la(2026, 6, 11, 10, 0)


def test_a_retry_across_the_spring_forward_keeps_elapsed_time():
    # 1 h after 1:30 PST is 3:30 PDT; the window then opens at 8:00 PDT.
    ended = la(2026, 3, 8, 1, 30)
    rule = RetryRule.of(3, [60])

    assert retry_at(rule, 1, RetryKind.NO_ANSWER, ended, facts_at(ended, enforce_calling_hours=False)) == la(2026, 3, 8, 3, 30)
    assert retry_at(rule, 1, RetryKind.NO_ANSWER, ended, facts_at(ended)) == la(2026, 3, 8, 8, 0)


# --- callback times -----------------------------------------------------------------------------------

# Wednesday 10 June 2026, 10:00 in Los Angeles.
WEDNESDAY_10 = la(2026, 6, 10, 10, 0)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("tomorrow at 3", la(2026, 6, 11, 15, 0)),
        ("Call me tomorrow at 3.", la(2026, 6, 11, 15, 0)),
        ("tomorrow at 3 pm", la(2026, 6, 11, 15, 0)),
        ("tomorrow at 9 a.m.", la(2026, 6, 11, 9, 0)),
        ("call me next tuesday afternoon", la(2026, 6, 16, 14, 0)),
        ("in two hours", la(2026, 6, 10, 12, 0)),
        ("can you call me back in 30 minutes", la(2026, 6, 10, 10, 30)),
        ("in half an hour", la(2026, 6, 10, 10, 30)),
        ("in an hour", la(2026, 6, 10, 11, 0)),
        ("monday at ten", la(2026, 6, 15, 10, 0)),
        ("try me on thursday at 4:30", la(2026, 6, 11, 16, 30)),
        ("friday morning", la(2026, 6, 12, 9, 0)),
        ("tomorrow evening at seven", la(2026, 6, 11, 19, 0)),
        ("wednesday", la(2026, 6, 17, 10, 0)),  # today is Wednesday: the next one
        ("three thirty", la(2026, 6, 10, 15, 30)),  # hour and minutes: a time, even without "at"
        ("at three thirty", la(2026, 6, 10, 15, 30)),
        ("at 9", la(2026, 6, 11, 9, 0)),  # 9:00 has passed today
        ("half past four tomorrow", la(2026, 6, 11, 16, 30)),
        ("around noon tomorrow", la(2026, 6, 11, 12, 0)),
        ("next week", la(2026, 6, 15, 10, 0)),
        ("the day after tomorrow in the morning", la(2026, 6, 12, 9, 0)),
        ("later", la(2026, 6, 10, 12, 0)),
        ("this evening", la(2026, 6, 10, 18, 0)),
        ("I'm busy, bye", None),
        ("we are a team of 12 people", None),
    ],
)
def test_what_the_caller_said_becomes_a_time_in_their_zone(said, expected):
    assert parse_callback_time(said, WEDNESDAY_10, LA) == expected


def test_tomorrow_at_3_on_the_eve_of_spring_forward_is_3_pm_daylight_time():
    asked = parse_callback_time("tomorrow at 3", la(2026, 3, 7, 20, 0), LA)

    assert asked == la(2026, 3, 8, 15, 0)
    assert asked.astimezone(UTC) == datetime(2026, 3, 8, 22, 0, tzinfo=UTC)  # UTC-7 from 2:00 that night


def test_in_two_hours_across_fall_back_is_two_hours_of_elapsed_time():
    # 0:30 PDT + 2 h = 1:30 PST (the second 1:30 of that night).
    now = la(2026, 11, 1, 0, 30)

    asked = parse_callback_time("in two hours", now, LA)

    assert asked.astimezone(UTC) - now.astimezone(UTC) == timedelta(hours=2)
    assert asked.astimezone(UTC) == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def test_a_callback_inside_the_window_is_kept():
    facts = facts_at(WEDNESDAY_10)

    assert callback_window_time(la(2026, 6, 11, 15, 0), facts) == la(2026, 6, 11, 15, 0)


def test_a_callback_asked_for_at_night_moves_to_the_next_window():
    facts = facts_at(WEDNESDAY_10)

    assert callback_window_time(la(2026, 6, 11, 22, 0), facts) == la(2026, 6, 12, 8, 0)


def test_a_callback_not_understood_goes_to_the_next_window():
    facts = facts_at(la(2026, 6, 10, 23, 0))

    assert callback_window_time(None, facts) == la(2026, 6, 11, 8, 0)


def test_a_callback_time_already_past_is_now():
    facts = facts_at(WEDNESDAY_10)

    assert callback_window_time(la(2026, 6, 10, 9, 0), facts) == WEDNESDAY_10


# --- a callback the lead asked for ------------------------------------------------------------------


def test_a_callback_the_lead_asked_for_is_exempt_from_the_spacing_but_not_from_the_hours_or_the_limit():
    called = la(2026, 6, 10, 10, 0).astimezone(UTC)
    cadence = FollowUpCadence.for_strategy(FollowUpPreset.BALANCED)  # 24 h before attempt 2, at most 4
    an_hour_later = facts_at(la(2026, 6, 10, 11, 0), cadence=cadence, previous_attempts=[called])

    assert decide(an_hour_later).reason_code is Reason.FOLLOWUP_TOO_SOON
    assert decide(replace(an_hour_later, requested_callback=True)).allow_send
    at_night = facts_at(la(2026, 6, 10, 23, 0), cadence=cadence, previous_attempts=[called], requested_callback=True)
    assert decide(at_night).reason_code is Reason.OUTSIDE_CALLING_HOURS
    spent = [called - timedelta(days=d) for d in range(4)]
    assert (
        decide(replace(an_hour_later, previous_attempts=spent, requested_callback=True)).reason_code
        is Reason.MAX_ATTEMPTS_REACHED
    )
