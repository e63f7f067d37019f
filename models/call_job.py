"""The short-lived record of one call, kept in the session store."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, Field, computed_field

from models.enums import CallOutcome, CallStatus

CALL_JOB_TTL_SECONDS = 600


def utcnow() -> datetime:
    return datetime.now(UTC)


class CallJob(BaseModel):
    id: UUID = Field(default_factory=uuid4)
    created_at: datetime = Field(default_factory=utcnow)
    context_id: UUID
    phone: str
    status: CallStatus = CallStatus.PENDING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    sms_sent: bool = False
    error: str | None = None
    outcome: CallOutcome | None = None
    twilio_call_sid: str | None = None
    telephony_status: str | None = None
    # The conversation so far, published by the worker while the call is under way.
    transcript: list[dict[str, Any]] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(seconds=CALL_JOB_TTL_SECONDS)

    def seconds_until_expiry(self, now: datetime | None = None) -> float:
        return (self.expires_at - (now or utcnow())).total_seconds()

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.seconds_until_expiry(now) <= 0
