"""Tables of the call queue: campaigns, and the call attempts that they and POST /calls schedule.

The database, not the broker, is the schedule: an attempt is a row with `scheduled_for` and a
status, and every move between statuses is a conditional UPDATE that one process wins
(call_queue/attempt_store.py). Counts of a campaign are computed from its attempts.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from models.call_job import utcnow
from models.column_types import JSONType, UtcDateTime, enum_type
from models.enums import LIVE_ATTEMPT_STATUSES, AttemptStatus, CallOutcome, CampaignStatus

# Enums are stored by member name (models/column_types.enum_type), so the index predicate names them so.
LIVE_ATTEMPT_PREDICATE = "status IN ({})".format(", ".join(f"'{status.name}'" for status in LIVE_ATTEMPT_STATUSES))


class Campaign(SQLModel, table=True):
    """A list of leads a workspace hands over to be called, at a pace and with a retry rule."""

    __tablename__ = "campaign"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    name: str = Field(max_length=200)
    strategy_version_id: int = Field(foreign_key="strategy_version.id")
    # {"lead_ids": [...]} or {"stages": [...], "tags": [...]}: kept as asked, for operators to see.
    lead_selection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # The call request's fields other than the phone (product, offer_pricing, goal, style, ...).
    call_template: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    calls_per_minute: int = Field(ge=1)
    max_concurrent_calls: int = Field(ge=1)
    # Attempts per lead, the first included; the minutes to wait after each unanswered one (the last repeats).
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff_minutes: list[float] = Field(default_factory=lambda: [60.0, 240.0], sa_column=Column(JSONType, nullable=False))
    status: CampaignStatus = Field(default=CampaignStatus.ACTIVE, sa_type=enum_type(CampaignStatus))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CallAttempt(SQLModel, table=True):
    """One call to place: when, for whom, with what, and how far it got."""

    __tablename__ = "call_attempt"
    __table_args__ = (
        # The dispatcher's question: which scheduled attempts are due?
        sa.Index("ix_call_attempt_status_scheduled_for", "status", "scheduled_for"),
        sa.UniqueConstraint("workspace_id", "idempotency_key", name="uq_call_attempt_idempotency_key"),
        # Two requests or two campaigns over one lead never have it called twice at once.
        sa.Index(
            "uq_call_attempt_one_live_per_lead",
            "lead_id",
            unique=True,
            sqlite_where=sa.text(LIVE_ATTEMPT_PREDICATE),
            postgresql_where=sa.text(LIVE_ATTEMPT_PREDICATE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id", index=True)
    # The id the call will have (call.id, GET /calls/{id}): known from the start, so a request can
    # answer with it and a dial interrupted by a crash can be recognized. No foreign key: the call
    # row is written by the dial.
    call_id: str = Field(max_length=36, unique=True)
    # The call request (models/call_request.CallRequest fields) this attempt places.
    call_request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    scheduled_for: datetime = Field(sa_type=UtcDateTime)
    attempt: int = Field(default=1, ge=1)
    status: AttemptStatus = Field(default=AttemptStatus.SCHEDULED, sa_type=enum_type(AttemptStatus))
    # The policy's reason code when skipped or put off, or the limiter's when it had to wait.
    reason: str | None = Field(default=None, max_length=64)
    outcome: CallOutcome | None = Field(default=None, sa_type=enum_type(CallOutcome))
    error: str | None = Field(default=None, max_length=500)
    idempotency_key: str | None = Field(default=None, max_length=255)
    # The attempt this one retries or follows up; each attempt has at most one successor.
    retry_of_id: int | None = Field(default=None, foreign_key="call_attempt.id", unique=True)
    # The last outreach policy decision taken for it (right before the dial).
    policy_decision_id: int | None = Field(default=None, foreign_key="policy_decision.id")
    # "host:pid:nonce" of the worker holding it; unique per claim, so a late worker cannot act on a lost claim.
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # Set at every status change: how long an attempt has been queued or dialing.
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
