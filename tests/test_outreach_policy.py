"""The outreach policy, rule by rule, as tables of facts and the decision each must give."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from models.enums import BudgetTier, FollowUpPreset
from models.outreach_policy import (
    DAILY_CALL_BUDGET,
    FollowUpCadence,
    OutreachFacts,
    Reason,
    decide,
    parse_business_hours,
)

LA_PHONE = "+14155550123"  # America/Los_Angeles
NY_PHONE = "+12125551234"  # America/New_York
AU_MOBILE = "+61412345678"  # every Australian zone, Perth to Lord Howe, and two island territories


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Wednesday 10 June 2026, 17:00 UTC: 10:00 in Los Angeles, 13:00 in New York.
NOON_ISH = utc(2026, 6, 10, 17, 0)
WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def facts(**changes) -> OutreachFacts:
    return replace(OutreachFacts(now=NOON_ISH, phone=LA_PHONE, consent=True), **changes)


def balanced() -> FollowUpCadence:
    return FollowUpCadence.for_strategy(FollowUpPreset.BALANCED)


# --- consent and opt-out --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "attested", "opted_out", "allowed", "reason"),
    [
        (True, False, False, True, Reason.ALLOWED),
        (False, True, False, True, Reason.ALLOWED),
        (False, False, False, False, Reason.NO_CONSENT),
        (True, True, True, False, Reason.OPTED_OUT),
        (False, False, True, False, Reason.OPTED_OUT),  # opt-out is named first
    ],
)
def test_contact_needs_consent_or_attestation_and_no_opt_out(consent, attested, opted_out, allowed, reason):
    verdict = decide(facts(consent=consent, attested=attested, opted_out=opted_out))

    assert (verdict.allow_send, verdict.reason_code) == (allowed, reason)
    if not allowed:
        assert verdict.http_status == 422
        assert verdict.next_allowed_at is None  # waiting does not help


@pytest.mark.parametrize("later", [timedelta(0), timedelta(days=1), timedelta(days=400), timedelta(days=3650)])
def test_an_opt_out_is_final_whatever_else_is_true(later):
    verdict = decide(facts(opted_out=True, consent=True, attested=True, now=NOON_ISH + later, enforce_calling_hours=False))

    assert verdict.reason_code is Reason.OPTED_OUT
    assert verdict.next_allowed_at is None


def test_the_trace_shows_every_rule_even_after_the_first_refusal():
    verdict = decide(facts(opted_out=True, consent=False, budget_tier=BudgetTier.RED))

    assert [entry["rule"] for entry in verdict.rule_trace] == ["opt_out", "consent", "follow_up", "budget", "calling_hours"]
    assert [entry["passed"] for entry in verdict.rule_trace] == [False, False, True, False, True]


# --- calling hours in the callee's time zone -------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "phone", "lead_timezone", "allowed", "next_allowed_at"),
    [
        (utc(2026, 6, 10, 14, 59), LA_PHONE, None, False, utc(2026, 6, 10, 15, 0)),  # 07:59 in LA
        (utc(2026, 6, 10, 15, 0), LA_PHONE, None, True, None),  # 08:00 in LA
        (utc(2026, 6, 11, 3, 59), LA_PHONE, None, True, None),  # 20:59 in LA
        (utc(2026, 6, 11, 4, 0), LA_PHONE, None, False, utc(2026, 6, 11, 15, 0)),  # 21:00 in LA: closed
        # 07:30 in LA while it is 10:30 in New York: the callee's clock decides.
        (utc(2026, 6, 10, 14, 30), LA_PHONE, None, False, utc(2026, 6, 10, 15, 0)),
        (utc(2026, 6, 10, 14, 30), NY_PHONE, None, True, None),
        # The lead's own zone beats the number's: a US number whose owner lives in London.
        (utc(2026, 6, 10, 21, 0), NY_PHONE, "Europe/London", False, utc(2026, 6, 11, 7, 0)),
        (utc(2026, 6, 10, 7, 0), NY_PHONE, "Europe/London", True, None),
    ],
)
def test_calls_only_between_8_and_21_in_the_callee_time_zone(now, phone, lead_timezone, allowed, next_allowed_at):
    verdict = decide(facts(now=now, phone=phone, lead_timezone=lead_timezone, workspace_timezone="America/New_York"))

    assert verdict.allow_send is allowed
    assert verdict.next_allowed_at == next_allowed_at
    if not allowed:
        assert (verdict.reason_code, verdict.http_status) == (Reason.OUTSIDE_CALLING_HOURS, 429)


@pytest.mark.parametrize(
    ("now", "allowed", "next_allowed_at"),
    [
        # Spring forward in New York (Sunday 8 March 2026, 02:00 EST -> 03:00 EDT).
        (utc(2026, 3, 7, 12, 30), False, utc(2026, 3, 7, 13, 0)),  # Saturday 07:30 EST
        (utc(2026, 3, 8, 12, 30), True, None),  # Sunday 08:30 EDT: same UTC time, an hour later locally
        # Saturday 21:30 EST: the next 08:00 is already EDT, so it comes at 12:00 UTC, not 13:00.
        (utc(2026, 3, 8, 2, 30), False, utc(2026, 3, 8, 12, 0)),
        # Fall back (Sunday 1 November 2026, 02:00 EDT -> 01:00 EST).
        (utc(2026, 10, 31, 12, 30), True, None),  # Saturday 08:30 EDT
        (utc(2026, 11, 1, 12, 30), False, utc(2026, 11, 1, 13, 0)),  # Sunday 07:30 EST
        (utc(2026, 11, 2, 1, 59), True, None),  # Sunday 20:59 EST
        (utc(2026, 11, 2, 2, 0), False, utc(2026, 11, 2, 13, 0)),  # Sunday 21:00 EST
    ],
)
def test_calling_hours_follow_the_daylight_saving_change(now, allowed, next_allowed_at):
    verdict = decide(facts(now=now, phone=NY_PHONE))

    assert verdict.allow_send is allowed
    assert verdict.next_allowed_at == next_allowed_at


def test_a_number_spanning_several_zones_is_called_only_when_all_of_them_are_awake():
    # June: Cocos Islands (UTC+6:30) wake last, Lord Howe Island (UTC+10:30) sleeps first.
    perth_8am = utc(2026, 6, 10, 0, 0)
    verdict = decide(facts(phone=AU_MOBILE, now=perth_8am))

    assert verdict.allow_send is False
    assert verdict.next_allowed_at == utc(2026, 6, 10, 1, 30)  # 08:00 on the Cocos Islands
    assert decide(facts(phone=AU_MOBILE, now=utc(2026, 6, 10, 10, 29))).allow_send is True
    assert decide(facts(phone=AU_MOBILE, now=utc(2026, 6, 10, 10, 30))).allow_send is False  # 21:00 on Lord Howe
    # Knowing where the lead lives opens the whole of its own day.
    assert decide(facts(phone=AU_MOBILE, lead_timezone="Australia/Perth", now=utc(2026, 6, 10, 12, 0))).allow_send is True


@pytest.mark.parametrize(
    ("now", "allowed", "next_allowed_at"),
    [
        (utc(2026, 6, 10, 17, 0), True, None),  # Wednesday 13:00 NY, 10:00 LA
        (utc(2026, 6, 10, 22, 0), False, utc(2026, 6, 11, 15, 0)),  # 18:00 NY: the business is closed
        # Saturday: closed all weekend; Monday 09:00 NY is 06:00 in LA, so 08:00 LA (11:00 NY).
        (utc(2026, 6, 13, 17, 0), False, utc(2026, 6, 15, 15, 0)),
    ],
)
def test_business_hours_narrow_the_calling_window(now, allowed, next_allowed_at):
    verdict = decide(facts(now=now, workspace_timezone="America/New_York", business_hours=WEEKDAYS_9_TO_5))

    assert verdict.allow_send is allowed
    assert verdict.next_allowed_at == next_allowed_at


def test_no_common_window_means_no_next_allowed_time():
    verdict = decide(facts(business_hours={}))  # every day closed

    assert verdict.reason_code is Reason.OUTSIDE_CALLING_HOURS
    assert verdict.next_allowed_at is None


def test_calling_hours_can_be_switched_off_and_say_so():
    verdict = decide(facts(now=utc(2026, 6, 10, 9, 0), enforce_calling_hours=False))  # 02:00 in LA

    assert verdict.allow_send is True
    assert "not enforced" in verdict.rule_trace[-1]["detail"]


# --- follow-up spacing and attempts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts_hours_ago", "allowed", "reason", "next_allowed_at"),
    [
        ((), True, Reason.ALLOWED, None),
        ((23,), False, Reason.FOLLOWUP_TOO_SOON, NOON_ISH + timedelta(hours=1)),
        ((24,), True, Reason.ALLOWED, None),
        ((100, 71), False, Reason.FOLLOWUP_TOO_SOON, NOON_ISH + timedelta(hours=1)),  # second gap is 72 h
        ((200, 100), True, Reason.ALLOWED, None),
        ((400, 300, 200, 1), False, Reason.MAX_ATTEMPTS_REACHED, None),  # BALANCED allows 4
    ],
)
def test_balanced_preset_spaces_attempts_and_caps_them(attempts_hours_ago, allowed, reason, next_allowed_at):
    attempts = [NOON_ISH - timedelta(hours=h) for h in attempts_hours_ago]
    verdict = decide(facts(cadence=balanced(), previous_attempts=attempts))

    assert (verdict.allow_send, verdict.reason_code, verdict.next_allowed_at) == (allowed, reason, next_allowed_at)
    if reason is Reason.MAX_ATTEMPTS_REACHED:
        assert verdict.http_status == 422


@pytest.mark.parametrize(
    ("preset", "max_attempts"), [(FollowUpPreset.GENTLE, 3), (FollowUpPreset.BALANCED, 4), (FollowUpPreset.AGGRESSIVE, 5)]
)
def test_each_preset_has_its_number_of_attempts(preset, max_attempts):
    assert FollowUpCadence.for_strategy(preset).max_attempts == max_attempts


def test_interval_overrides_replace_the_preset_spacing():
    cadence = FollowUpCadence.for_strategy(FollowUpPreset.GENTLE, {"intervals_hours": [2]})
    one_attempt = [NOON_ISH - timedelta(hours=3)]

    assert cadence.max_attempts == 2
    assert decide(facts(cadence=cadence, previous_attempts=one_attempt)).allow_send is True
    assert (
        decide(facts(cadence=cadence, previous_attempts=[*one_attempt, NOON_ISH - timedelta(hours=1)])).reason_code
        is Reason.MAX_ATTEMPTS_REACHED
    )


def test_a_follow_up_due_at_night_waits_for_the_morning():
    # Due at 22:00 in LA: spacing alone would say 22:00, the calling window says 08:00 next day.
    last_attempt = utc(2026, 6, 10, 5, 0)  # 22:00 LA on 9 June, so the next is due 22:00 LA on 10 June
    verdict = decide(facts(now=utc(2026, 6, 10, 20, 0), cadence=balanced(), previous_attempts=[last_attempt]))

    assert verdict.reason_code is Reason.FOLLOWUP_TOO_SOON
    assert verdict.next_allowed_at == utc(2026, 6, 11, 15, 0)


def test_without_an_active_strategy_no_cadence_applies():
    attempts = [NOON_ISH - timedelta(minutes=m) for m in (50, 40, 30, 20, 10)]
    assert decide(facts(cadence=None, previous_attempts=attempts)).allow_send is True


# --- budget --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [BudgetTier.GREEN, BudgetTier.YELLOW])
def test_the_last_call_of_the_daily_budget_is_allowed_and_the_next_is_not(tier):
    limit = DAILY_CALL_BUDGET[tier]

    assert decide(facts(budget_tier=tier, calls_today=limit - 1)).allow_send is True
    refused = decide(facts(budget_tier=tier, calls_today=limit))
    assert (refused.reason_code, refused.http_status) == (Reason.DAILY_BUDGET_EXHAUSTED, 429)


def test_an_exhausted_budget_reopens_at_the_workspace_midnight_then_waits_for_calling_hours():
    spent = facts(workspace_timezone="America/New_York", calls_today=DAILY_CALL_BUDGET[BudgetTier.GREEN])

    assert decide(replace(spent, enforce_calling_hours=False)).next_allowed_at == utc(2026, 6, 11, 4, 0)  # 00:00 NY
    assert decide(spent).next_allowed_at == utc(2026, 6, 11, 15, 0)  # 08:00 LA that day


def test_red_budget_pauses_outreach_with_no_date_to_retry():
    verdict = decide(facts(budget_tier=BudgetTier.RED))

    assert (verdict.reason_code, verdict.http_status, verdict.next_allowed_at) == (Reason.BUDGET_PAUSED, 429, None)


# --- inputs --------------------------------------------------------------------------------------------


def test_naive_clock_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(facts(now=datetime(2026, 6, 10, 17, 0)))


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"monday": [["09:00", "17:00"]]}, "'monday' is not one of"),
        ({"mon": [["9am", "17:00"]]}, "'9am' is not a HH:MM time"),
        ({"mon": [["17:00", "09:00"]]}, "09:00 is not after 17:00"),
        ({"mon": [["09:00"]]}, "each span is \\[open, close\\]"),
    ],
)
def test_bad_business_hours_name_the_day_and_the_problem(hours, message):
    with pytest.raises(ValueError, match=message):
        parse_business_hours(hours)


def test_business_hours_may_close_at_midnight():
    assert parse_business_hours({"fri": [["18:00", "24:00"]]}) == {4: [(datetime(1, 1, 1, 18).time(), None)]}
