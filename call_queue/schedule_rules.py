"""When an attempt may be placed: inside the policy's time rules, after a backoff, at a callback time.

Pure functions over the facts and the instants they are given, like the outreach policy they lean
on (control_api/outreach_policy.py): the calling window, the follow-up spacing and the daily budget
are the policy's own, asked through `decide`; nothing here reads a clock or a database.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from models.enums import CallOutcome, CallStatus
from models.outreach_policy import OutreachFacts, budget_day, decide, next_window_open


class RetryKind(StrEnum):
    """Why a call reached nobody; only these are tried again."""

    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    VOICEMAIL = "voicemail"


# A busy line means the person is there and on another call: try again soon, whatever the backoff.
BUSY_RETRY_AFTER = timedelta(minutes=15)


def retry_kind(status: CallStatus | None, outcome: CallOutcome | None, telephony_status: str | None = None) -> RetryKind | None:
    """What a finished call says about trying again; None when someone answered and the outcome stands."""
    if telephony_status == "busy":
        return RetryKind.BUSY
    if outcome is CallOutcome.VOICEMAIL:
        return RetryKind.VOICEMAIL
    if status is CallStatus.FAILED:
        return RetryKind.FAILED
    if outcome is CallOutcome.NO_ANSWER:
        return RetryKind.NO_ANSWER
    return None


@dataclass(frozen=True)
class RetryRule:
    """Attempts per lead (the first included) and the wait after each unanswered one; the last wait repeats."""

    max_attempts: int = 3
    backoff: tuple[timedelta, ...] = (timedelta(hours=1), timedelta(hours=4))

    @classmethod
    def of(cls, max_attempts: int, backoff_minutes: Sequence[float]) -> "RetryRule":
        return cls(max_attempts, tuple(timedelta(minutes=float(m)) for m in backoff_minutes) or cls.backoff)

    def retry_after(self, attempt: int, kind: RetryKind) -> timedelta | None:
        """The wait after attempt number `attempt` ended as `kind`; None when it was the last one allowed."""
        if attempt >= self.max_attempts:
            return None
        wait = self.backoff[min(attempt, len(self.backoff)) - 1]
        return min(wait, BUSY_RETRY_AFTER) if kind is RetryKind.BUSY else wait


# Calls requested one at a time (POST /calls) are retried by this rule; campaigns bring their own.
DEFAULT_RETRY_RULE = RetryRule()


def projected(facts: OutreachFacts, at: datetime) -> OutreachFacts:
    """The same facts, asked about a later instant: on another budget day, today's calls no longer count."""
    same_day = budget_day(at, facts.workspace_timezone) == budget_day(facts.now, facts.workspace_timezone)
    return replace(facts, now=at, calls_today=facts.calls_today if same_day else 0)


def allowed_from(facts: OutreachFacts) -> datetime | None:
    """The first instant from `facts.now` at which the policy lets the call through.

    None when it never will by waiting (opted out, no consent, attempts used up), or when no
    calling window opens within the policy's search horizon.
    """
    verdict = decide(facts)
    if verdict.allow_send:
        return facts.now
    return verdict.next_allowed_at


def retry_at(rule: RetryRule, attempt: int, kind: RetryKind, ended_at: datetime, facts: OutreachFacts) -> datetime | None:
    """When to try again after attempt `attempt` ended unanswered: after the backoff, inside the policy's time rules."""
    wait = rule.retry_after(attempt, kind)
    if wait is None:
        return None
    return allowed_from(projected(facts, ended_at.astimezone(UTC) + wait))


def callback_window_time(asked: datetime | None, facts: OutreachFacts) -> datetime | None:
    """A callback at the time the caller asked for, or the next calling window's opening when that is
    outside it, past, or was not understood (asked None)."""
    at = max(asked, facts.now) if asked is not None else facts.now
    if not facts.enforce_calling_hours:
        return at
    return next_window_open(facts, at)
