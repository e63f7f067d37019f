"""May this lead be contacted now? Pure functions over the facts they are given.

Nothing here reads a clock, a database or the settings: `OutreachFacts` carries all of it, so
each rule can be tested with a table of cases. `decide` runs every rule (the trace shows them
all), names the first failing one in RULES order as the reason, and, when every failure is
temporary, the earliest instant at which all of them would pass.

The rules:
- opt_out: a lead who opted out (by voice, SMS STOP or the API) is never contacted again.
- consent: the lead consented, or an operator attested consent.
- follow_up: the active strategy's follow-up preset spaces the attempts and caps their number; a
  callback the lead asked for is exempt from the spacing (they chose the time), not from the cap.
- budget: the workspace's budget tier caps the calls per day (its local calendar day).
- calling_hours: 8:00 to 21:00 in the callee's time zone (from the number, or the lead's own
  zone), narrowed by the workspace's business hours in the workspace's zone.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

from models.enums import BudgetTier, FollowUpPreset

CALLING_DAY_START = time(8, 0)
CALLING_DAY_END = time(21, 0)
# How far ahead next_allowed_at is searched; beyond it a window is "never" (None).
SEARCH_DAYS = 8

DAILY_CALL_BUDGET: Mapping[BudgetTier, int] = {BudgetTier.GREEN: 300, BudgetTier.YELLOW: 60, BudgetTier.RED: 0}

# Hours to wait after attempt n before attempt n+1; the number of attempts is one more than that.
FOLLOWUP_INTERVALS_HOURS: Mapping[FollowUpPreset, tuple[float, ...]] = {
    FollowUpPreset.GENTLE: (72, 168),
    FollowUpPreset.BALANCED: (24, 72, 168),
    FollowUpPreset.AGGRESSIVE: (4, 24, 48, 72),
}

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNKNOWN_ZONE = "Etc/Unknown"


class Reason(StrEnum):
    ALLOWED = "allowed"
    OPTED_OUT = "opted_out"
    NO_CONSENT = "no_consent"
    MAX_ATTEMPTS_REACHED = "max_attempts_reached"
    FOLLOWUP_TOO_SOON = "followup_too_soon"
    BUDGET_PAUSED = "budget_paused"
    DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
    OUTSIDE_CALLING_HOURS = "outside_calling_hours"


# Refusals that waiting will not cure answer 422; the others (too soon, budget, hours) 429.
NOT_ALLOWED = frozenset({Reason.OPTED_OUT, Reason.NO_CONSENT, Reason.MAX_ATTEMPTS_REACHED})


@dataclass(frozen=True)
class FollowUpCadence:
    intervals: tuple[timedelta, ...]

    @property
    def max_attempts(self) -> int:
        return len(self.intervals) + 1

    @classmethod
    def for_strategy(cls, preset: FollowUpPreset, overrides: Mapping[str, object] | None = None) -> "FollowUpCadence":
        hours = (overrides or {}).get("intervals_hours") or FOLLOWUP_INTERVALS_HOURS[preset]
        if not isinstance(hours, Sequence):
            raise ValueError("intervals_hours must be a list of hours")
        return cls(tuple(timedelta(hours=float(h)) for h in hours))


@dataclass(frozen=True)
class OutreachFacts:
    now: datetime
    phone: str
    consent: bool = False
    attested: bool = False
    opted_out: bool = False
    lead_timezone: str | None = None
    workspace_timezone: str = "UTC"
    # {"mon": [["09:00", "17:00"]], ...}; None: no narrowing. A weekday left out is closed.
    business_hours: Mapping[str, Sequence[Sequence[str]]] | None = None
    budget_tier: BudgetTier = BudgetTier.GREEN
    calls_today: int = 0
    previous_attempts: Sequence[datetime] = ()
    # None: no active strategy, so no follow-up cadence (a visitor asking the form for a call).
    cadence: FollowUpCadence | None = None
    enforce_calling_hours: bool = True
    # The lead asked to be called back (a callback_requested call): the strategy's spacing, which
    # protects a lead from being pestered, does not apply to a call they asked for. Every other
    # rule still does: calling hours, opt-out, consent, the daily budget and the attempt limit.
    requested_callback: bool = False


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    detail: str
    reason: Reason | None = None
    # When a failing rule would pass again; None: not by waiting.
    retry_at: datetime | None = None

    def as_trace(self) -> dict[str, object]:
        entry: dict[str, object] = {"rule": self.rule, "passed": self.passed, "detail": self.detail}
        if self.reason is not None:
            entry["reason_code"] = self.reason.value
        if self.retry_at is not None:
            entry["retry_at"] = self.retry_at.isoformat()
        return entry


@dataclass(frozen=True)
class PolicyVerdict:
    allow_send: bool
    reason_code: Reason
    rule_trace: list[dict[str, object]] = field(default_factory=list)
    next_allowed_at: datetime | None = None

    @property
    def http_status(self) -> int:
        if self.allow_send:
            return 200
        return 422 if self.reason_code in NOT_ALLOWED else 429


# --- time zones and windows -----------------------------------------------------------------------

Window = tuple[datetime, datetime]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name[:64]!r}") from None


def callee_zones(phone: str, lead_timezone: str | None, fallback: str) -> tuple[list[ZoneInfo], str]:
    """The zones the callee may be in: the lead's own, else every zone of the number's region."""
    if lead_timezone:
        return [zone(lead_timezone)], f"lead time zone {lead_timezone}"
    names = [n for n in phone_timezones.time_zones_for_number(phonenumbers.parse(phone, None)) if n != UNKNOWN_ZONE]
    if not names:
        return [zone(fallback)], f"number has no known time zone; workspace's {fallback}"
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return [zone(n) for n in names], f"number's time zone(s) {shown}"


def _daily_windows(tz: ZoneInfo, first: date, days: int, opens: time, closes: time | None) -> list[Window]:
    """[opens, closes) on each local day, in UTC; closes None means midnight at the end of the day."""
    windows = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        start = datetime.combine(day, opens, tzinfo=tz)
        end = (
            datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
            if closes is None
            else datetime.combine(day, closes, tzinfo=tz)
        )
        windows.append((start.astimezone(UTC), end.astimezone(UTC)))
    return windows


def parse_business_hours(raw: Mapping[str, Sequence[Sequence[str]]]) -> dict[int, list[tuple[time, time | None]]]:
    """{"mon": [["09:00", "17:00"]]} -> {0: [(09:00, 17:00)]}; "24:00" closes at midnight (None)."""
    parsed: dict[int, list[tuple[time, time | None]]] = {}
    for key, spans in raw.items():
        if key not in WEEKDAYS:
            raise ValueError(f"business_hours: {str(key)[:16]!r} is not one of {', '.join(WEEKDAYS)}")
        day_spans = []
        for span in spans:
            if len(span) != 2:
                raise ValueError(f"business_hours.{key}: each span is [open, close]")
            opens, closes = (
                _clock(span[0], f"business_hours.{key}"),
                _clock(span[1], f"business_hours.{key}", allow_midnight=True),
            )
            if opens is None:
                raise ValueError(f"business_hours.{key}: {span[0]} is not an opening time")
            if closes is not None and closes <= opens:
                raise ValueError(f"business_hours.{key}: {span[1]} is not after {span[0]}")
            day_spans.append((opens, closes))
        parsed[WEEKDAYS.index(key)] = day_spans
    return parsed


def _clock(text: str, where: str, allow_midnight: bool = False) -> time | None:
    if allow_midnight and text == "24:00":
        return None
    try:
        hours, minutes = str(text).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{where}: {str(text)[:16]!r} is not a HH:MM time") from None


def _business_windows(hours: Mapping[str, Sequence[Sequence[str]]], tz: ZoneInfo, first: date, days: int) -> list[Window]:
    parsed = parse_business_hours(hours)
    windows: list[Window] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        for opens, closes in parsed.get(day.weekday(), []):
            windows.extend(_daily_windows(tz, day, 1, opens, closes))
    return sorted(windows)


def _intersect(a: list[Window], b: list[Window]) -> list[Window]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def calling_windows(facts: OutreachFacts, around: datetime) -> tuple[list[Window], str]:
    """The instants (UTC) when a call is inside every callee zone's day and the business hours."""
    first = (around - timedelta(days=2)).date()
    days = SEARCH_DAYS + 4
    zones, where = callee_zones(facts.phone, facts.lead_timezone, facts.workspace_timezone)
    windows = _daily_windows(zones[0], first, days, CALLING_DAY_START, CALLING_DAY_END)
    for other in zones[1:]:
        windows = _intersect(windows, _daily_windows(other, first, days, CALLING_DAY_START, CALLING_DAY_END))
    if facts.business_hours is not None:
        windows = _intersect(windows, _business_windows(facts.business_hours, zone(facts.workspace_timezone), first, days))
        where += f"; business hours in {facts.workspace_timezone}"
    return windows, where


def next_window_open(facts: OutreachFacts, at: datetime) -> datetime | None:
    """`at` itself when it is inside the calling window, else the window's next opening."""
    windows, _ = calling_windows(facts, at)
    for start, end in windows:
        if end > at and start <= at + timedelta(days=SEARCH_DAYS):
            return max(start, at)
    return None


def budget_day(now: datetime, workspace_timezone: str) -> Window:
    """The workspace's local calendar day around `now`, in UTC: what "calls per day" counts."""
    tz = zone(workspace_timezone)
    local_day = now.astimezone(tz).date()
    start = datetime.combine(local_day, time(0), tzinfo=tz)
    end = datetime.combine(local_day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- the rules ------------------------------------------------------------------------------------


def check_opt_out(facts: OutreachFacts) -> RuleResult:
    if facts.opted_out:
        return RuleResult("opt_out", False, "the lead opted out; opt-outs are final", Reason.OPTED_OUT)
    return RuleResult("opt_out", True, "the lead has not opted out")


def check_consent(facts: OutreachFacts) -> RuleResult:
    if facts.consent:
        return RuleResult("consent", True, "the lead consented")
    if facts.attested:
        return RuleResult("consent", True, "an operator attested consent")
    return RuleResult("consent", False, "no consent and no attestation on record", Reason.NO_CONSENT)


def check_follow_up(facts: OutreachFacts) -> RuleResult:
    cadence = facts.cadence
    if cadence is None:
        return RuleResult("follow_up", True, "no active strategy: no follow-up cadence applies")
    attempts = sorted(a for a in facts.previous_attempts if a <= facts.now)
    if len(attempts) >= cadence.max_attempts:
        return RuleResult(
            "follow_up", False, f"{len(attempts)} of {cadence.max_attempts} attempts made", Reason.MAX_ATTEMPTS_REACHED
        )
    if not attempts:
        return RuleResult("follow_up", True, f"first of {cadence.max_attempts} attempts")
    if facts.requested_callback:
        return RuleResult(
            "follow_up", True, f"attempt {len(attempts) + 1} of {cadence.max_attempts}: a callback the lead asked for"
        )
    due = attempts[-1] + cadence.intervals[len(attempts) - 1]
    if facts.now < due:
        return RuleResult(
            "follow_up", False, f"attempt {len(attempts) + 1} is due {due.isoformat()}", Reason.FOLLOWUP_TOO_SOON, due
        )
    return RuleResult("follow_up", True, f"attempt {len(attempts) + 1} of {cadence.max_attempts}, due since {due.isoformat()}")


def check_budget(facts: OutreachFacts) -> RuleResult:
    limit = DAILY_CALL_BUDGET[facts.budget_tier]
    if limit == 0:
        return RuleResult("budget", False, f"budget tier {facts.budget_tier}: outreach is paused", Reason.BUDGET_PAUSED)
    if facts.calls_today >= limit:
        _, tomorrow = budget_day(facts.now, facts.workspace_timezone)
        detail = f"{facts.calls_today} of {limit} calls today (tier {facts.budget_tier})"
        return RuleResult("budget", False, detail, Reason.DAILY_BUDGET_EXHAUSTED, tomorrow)
    return RuleResult("budget", True, f"{facts.calls_today} of {limit} calls today (tier {facts.budget_tier})")


def check_calling_hours(facts: OutreachFacts) -> RuleResult:
    if not facts.enforce_calling_hours:
        return RuleResult("calling_hours", True, "not enforced (ENFORCE_CALLING_HOURS=false)")
    windows, where = calling_windows(facts, facts.now)
    if any(start <= facts.now < end for start, end in windows):
        return RuleResult("calling_hours", True, f"inside calling hours ({where})")
    opens = next_window_open(facts, facts.now)
    detail = f"outside calling hours ({where})" + ("" if opens else "; no common window: set the lead's time zone")
    return RuleResult("calling_hours", False, detail, Reason.OUTSIDE_CALLING_HOURS, opens)


RULES = (check_opt_out, check_consent, check_follow_up, check_budget, check_calling_hours)


def decide(facts: OutreachFacts) -> PolicyVerdict:
    if facts.now.tzinfo is None:
        raise ValueError("facts.now must be timezone-aware")
    results = [rule(facts) for rule in RULES]
    trace = [result.as_trace() for result in results]
    failed = [result for result in results if not result.passed]
    if not failed:
        return PolicyVerdict(True, Reason.ALLOWED, trace)
    return PolicyVerdict(False, failed[0].reason or Reason.NO_CONSENT, trace, _next_allowed_at(facts, failed))


def _next_allowed_at(facts: OutreachFacts, failed: list[RuleResult]) -> datetime | None:
    if any(result.retry_at is None for result in failed):
        return None
    # Wait out spacing and budget first, then for the calling window to be open at that time.
    candidate = max([facts.now, *(result.retry_at for result in failed if result.retry_at is not None)])
    if not facts.enforce_calling_hours:
        return candidate
    return next_window_open(facts, candidate)
