"""The time a caller asked to be called back, from what they said, in their own time zone.

A small rule set rather than a general date parser: what people say on a call is a handful of
shapes, and they must come out right. (dateparser 1.5 was tried: it reads "tomorrow at 3" as
tomorrow at the current time, "monday at ten" as the 10th of a month and "thursday at 4:30" as
4:30 in the morning.)

The rules, in order:
- "in two hours", "in 30 minutes", "in an hour", "in half an hour", "in three days": that long from now.
- "later", "later today": two hours from now.
- A day: "today", "tonight", "tomorrow", "the day after tomorrow", a weekday ("tuesday", "on
  tuesday", "next tuesday": the first such day after today), "next week" (its Monday).
- A time: "at 3", "3 pm", "3:30", "15:00", "3 o'clock", "half past 3", "noon"; spoken numbers
  ("three thirty") too. An hour from 1 to 7 without am/pm is in the afternoon, as in business talk;
  "morning", "afternoon", "evening", "tonight" settle it and, alone, mean 9:00, 14:00, 18:00, 19:00.
- A time without a day is today, or tomorrow when it has passed; a day without a time is 10:00.
Anything else is not understood (None): the caller of this module falls back to the next window.
Local times are built on the calendar (zoneinfo), so a day with a DST change keeps its wall clock.
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "forty five": 45,
    "fifty": 50,
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PART_OF_DAY = {"morning": time(9), "afternoon": time(14), "evening": time(18), "tonight": time(19)}
DAY_WITHOUT_TIME = time(10)
LATER = timedelta(hours=2)
UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}

_RELATIVE = re.compile(r"\bin (?:(\d+)|an?|half an?) (minute|hour|day|week)s?\b")
_HALF_HOUR = re.compile(r"\bin half an hour\b")
_CLOCK = re.compile(
    r"\b(?:(half past|quarter past|quarter to) (\d{1,2})|(\d{1,2})(?::(\d{2})| (\d{2}))?\s*(?:(a ?m|p ?m)\b|(o'?clock)\b)?)"
)
_NOON = re.compile(r"\b(noon|midday|lunchtime)\b")


def _spoken_numbers_as_digits(text: str) -> str:
    # Longest first, so "forty five" is one number and not "forty" then "five".
    for word in sorted(NUMBER_WORDS, key=len, reverse=True):
        text = re.sub(rf"\b{word}\b", str(NUMBER_WORDS[word]), text)
    return text


def normalize(text: str) -> str:
    # "3 p.m." becomes "3 p m", which the clock pattern reads as pm.
    text = re.sub(r"[^\w:' ]+", " ", text.lower())
    return re.sub(r"\s+", " ", _spoken_numbers_as_digits(text)).strip()


def _relative(said: str) -> timedelta | None:
    if _HALF_HOUR.search(said):
        return timedelta(minutes=30)
    match = _RELATIVE.search(said)
    if match is None:
        return None
    count = int(match.group(1)) if match.group(1) else 1
    return count * UNITS[match.group(2)]


def _day(said: str, today: date) -> date | None:
    if "day after tomorrow" in said:
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", said):
        return today + timedelta(days=1)
    if re.search(r"\b(today|tonight)\b", said):
        return today
    if re.search(r"\bnext week\b", said):
        return today + timedelta(days=7 - today.weekday())
    for index, name in enumerate(WEEKDAYS):
        if re.search(rf"\b{name}\b", said):
            ahead = (index - today.weekday()) % 7
            return today + timedelta(days=ahead or 7)
    return None


def _part_of_day(said: str) -> str | None:
    return next((part for part in PART_OF_DAY if re.search(rf"\b{part}\b", said)), None)


def _clock(said: str, part: str | None) -> time | None:
    if _NOON.search(said):
        return time(12)
    # Numbers that count something ("in 2 hours", "2 days") are not clock times.
    candidates = re.sub(r"\b\d+ (minute|hour|day|week)s?\b", " ", said)
    for match in _CLOCK.finditer(candidates):
        phrase, phrase_hour, hour_text, minutes_colon, minutes_spoken, meridiem, oclock = match.groups()
        spoken_clock = phrase or minutes_colon or minutes_spoken or meridiem or oclock
        preceded_by_at = candidates[: match.start()].rstrip().endswith(("at", "around", "about", "by"))
        if not spoken_clock and not preceded_by_at:
            continue  # a bare number ("the 2 of us") is not a time
        hour = int(phrase_hour or hour_text)
        minute = int(minutes_colon or minutes_spoken or 0)
        if phrase == "half past":
            minute = 30
        elif phrase == "quarter past":
            minute = 15
        elif phrase == "quarter to":
            hour, minute = hour - 1, 45
        if hour > 23 or minute > 59:
            continue
        return time(_hour_of_day(hour, meridiem, part), minute)
    return None


def _hour_of_day(hour: int, meridiem: str | None, part: str | None) -> int:
    if meridiem:
        pm = meridiem.replace(" ", "") == "pm"
        return hour % 12 + (12 if pm else 0)
    if hour >= 12 or hour == 0:
        return hour
    if part in ("afternoon", "evening", "tonight"):
        return hour + 12
    if part == "morning":
        return hour
    return hour + 12 if 1 <= hour <= 7 else hour


def parse_callback_time(text: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The instant the caller asked for (aware, in `tz`), or None when the words name no time."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    said = normalize(text)
    # Durations are added in UTC: aware arithmetic in a local zone would add wall-clock time across a DST change.
    delta = _relative(said) or (LATER if re.search(r"\blater\b", said) else None)
    if delta is not None:
        return (now.astimezone(UTC) + delta).astimezone(tz)
    local_now = now.astimezone(tz)
    part = _part_of_day(said)
    day = _day(said, local_now.date())
    clock = _clock(said, part) or (PART_OF_DAY[part] if part else None)
    if day is None and clock is None:
        return None
    at = datetime.combine(day or local_now.date(), clock or DAY_WITHOUT_TIME, tzinfo=tz)
    if day is None and at <= local_now:
        at = datetime.combine(local_now.date() + timedelta(days=1), clock or DAY_WITHOUT_TIME, tzinfo=tz)
    return at
