"""Campaigns through the API: what a workspace sends to start one, and what it reads back."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.call_request import CallRequest
from models.enums import CampaignStatus, LeadStage

# Any valid number: the template is checked as a call request with it, then each lead's replaces it.
_TEMPLATE_PHONE = "+14155550100"


class RetryRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Attempts per lead, the first included.
    max_attempts: int = Field(default=3, ge=1, le=10)
    # Minutes to wait after each unanswered attempt (no answer, busy, failed, voicemail); the last repeats.
    backoff_minutes: list[float] = Field(default_factory=lambda: [60.0, 240.0], min_length=1, max_length=10)

    @field_validator("backoff_minutes")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(minutes <= 0 or minutes > 60 * 24 * 30 for minutes in value):
            raise ValueError("each backoff must be more than 0 and at most 30 days (in minutes)")
        return value


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    # The strategy version the calls run on; omitted: the workspace's active version.
    strategy_version_id: int | None = None
    # The leads: by id, or every lead of the workspace in these stages and/or with these tags.
    lead_ids: list[int] | None = Field(default=None, max_length=10_000)
    stages: list[LeadStage] | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    calls_per_minute: int = Field(ge=1, le=600)
    max_concurrent_calls: int = Field(ge=1, le=200)
    retry: RetryRuleIn = Field(default_factory=RetryRuleIn)
    # What each call is about: the POST /calls fields other than phone, name and consent (the lead's).
    call: dict[str, Any]

    @model_validator(mode="after")
    def _some_leads(self) -> "CampaignCreate":
        if not (self.lead_ids or self.stages or self.tags):
            raise ValueError("name the leads: lead_ids, or stages and/or tags")
        return self

    @field_validator("call")
    @classmethod
    def _call_is_a_call_request(cls, value: dict[str, Any]) -> dict[str, Any]:
        extra = {"phone", "consent", "turnstile_token"} & set(value)
        if extra:
            raise ValueError(f"call must not carry {', '.join(sorted(extra))}: each lead's own are used")
        try:
            checked = CallRequest.model_validate({**value, "phone": _TEMPLATE_PHONE, "consent": True})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(problems) from None
        return checked.model_dump(mode="json", exclude={"phone", "turnstile_token"}, exclude_none=True)


class SkippedLead(BaseModel):
    lead_id: int
    reason: str


class CampaignCounts(BaseModel):
    queued: int = 0
    scheduled: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    completed_by_outcome: dict[str, int] = {}
    skipped_by_reason: dict[str, int] = {}


class CampaignPublic(BaseModel):
    id: int
    workspace_id: int
    name: str
    status: CampaignStatus
    strategy_version_id: int
    calls_per_minute: int
    max_concurrent_calls: int
    max_attempts: int
    retry_backoff_minutes: list[float]
    lead_selection: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None = None
    counts: CampaignCounts


class CampaignCreated(CampaignPublic):
    # The leads not queued, each with why (policy reason, unknown lead, already in a live call).
    skipped: list[SkippedLead]
