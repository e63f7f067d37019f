"""A workspace's business hours in the phone seed's weekly shape, and whether the business is open now.

The workspace stores them once, as {"mon": [["09:00", "17:00"]]} (models/domain.Workspace, the
outreach policy reads the same field); the seed's {"monday": {"open", "close", "enabled"}} is only
how the business settings API shows and takes them.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from models.outreach_policy import WEEKDAYS, parse_business_hours, zone

SEED_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"
DEFAULT_OPEN, DEFAULT_CLOSE = "09:00", "17:00"
# The seed's default: weekdays nine to five. Used for an inbound call when the workspace set none.
DEFAULT_HOURS: dict[str, list[list[str]]] = {day: [[DEFAULT_OPEN, DEFAULT_CLOSE]] for day in WEEKDAYS[:5]}


class DayHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open: str = Field(default=DEFAULT_OPEN, pattern=HHMM)
    close: str = Field(default=DEFAULT_CLOSE, pattern=HHMM)
    enabled: bool = True


WeeklySchedule = dict[str, DayHours]


def from_weekly_schedule(schedule: Mapping[str, DayHours]) -> dict[str, list[list[str]]]:
    """The seed's shape -> the stored one; a disabled or missing day is closed. Raises ValueError naming the day."""
    unknown = set(schedule) - set(SEED_WEEKDAYS)
    if unknown:
        raise ValueError(f"business_hours: {sorted(unknown)[0][:16]!r} is not one of {', '.join(SEED_WEEKDAYS)}")
    hours = {
        short: [[schedule[day].open, schedule[day].close]]
        for day, short in zip(SEED_WEEKDAYS, WEEKDAYS, strict=True)
        if day in schedule and schedule[day].enabled
    }
    parse_business_hours(hours)
    return hours


def to_weekly_schedule(hours: Mapping[str, Sequence[Sequence[str]]] | None) -> WeeklySchedule:
    """The stored shape -> the seed's; a day with several spans shows its first opening and last closing."""
    hours = DEFAULT_HOURS if hours is None else hours
    schedule = {}
    for day, short in zip(SEED_WEEKDAYS, WEEKDAYS, strict=True):
        spans = hours.get(short) or []
        if spans:
            schedule[day] = DayHours(open=spans[0][0], close=spans[-1][1], enabled=True)
        else:
            schedule[day] = DayHours(enabled=False)
    return schedule


def is_open(hours: Mapping[str, Sequence[Sequence[str]]] | None, timezone: str, at: datetime) -> bool:
    """Whether `at` falls in one of the day's spans, in the workspace's zone; None: the seed's default hours."""
    local = at.astimezone(zone(timezone))
    clock = local.time().replace(tzinfo=None)
    for opens, closes in parse_business_hours(DEFAULT_HOURS if hours is None else hours).get(local.weekday(), []):
        if opens <= clock and (closes is None or clock < closes):
            return True
    return False
