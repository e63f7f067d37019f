"""Request and response schemas of the lead routes: leads, their threads, decisions, meetings, history, imports."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.call_request import normalize_e164
from models.enums import Channel, DeliveryStatus, LeadStage, LeadTag, OptOutSource
from models.outreach_policy import zone

SHOWN_VALUE = 40


def shown(value: Any) -> str:
    """A bad value as an error message may quote it: short, and saying how long it really was."""
    text_value = str(value)
    if len(text_value) <= SHOWN_VALUE:
        return repr(text_value)
    return f"{text_value[:SHOWN_VALUE]!r}... ({len(text_value)} characters)"


def _one_of(enum_cls: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return enum_cls(value.strip().upper() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"unknown {what} {shown(value)}; expected one of {', '.join(m.value for m in enum_cls)}") from None


class LeadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(description="E.164, e.g. +14155550123")
    name: str | None = Field(default=None, max_length=200)
    external_id: str | None = Field(default=None, max_length=255)
    timezone: str | None = Field(default=None, max_length=64)
    consent: bool = False
    stage: LeadStage = LeadStage.NEW
    tags: list[LeadTag] = Field(default_factory=list, max_length=len(LeadTag))

    @field_validator("phone", mode="before")
    @classmethod
    def _e164(cls, value: Any) -> str:
        if not isinstance(value, str) or len(value) > 32:
            raise ValueError(f"phone {shown(value)} is not an E.164 number")
        try:
            return normalize_e164(value)
        except ValueError as exc:
            raise ValueError(f"phone {shown(value)}: {exc}") from None

    @field_validator("stage", mode="before")
    @classmethod
    def _stage(cls, value: Any) -> LeadStage:
        return _one_of(LeadStage, value, "stage")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[LeadTag]:
        items = [part for part in re.split(r"[;|,]", value) if part.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError("tags must be a list of tags")
        return sorted({_one_of(LeadTag, item, "tag") for item in items})

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value:
            try:
                zone(value)
            except ValueError:
                raise ValueError(f"unknown time zone {shown(value)}") from None
        return value or None

    @field_validator("name", "external_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class LeadPublic(BaseModel):
    id: int
    external_id: str
    phone: str
    name: str | None
    stage: LeadStage
    tags: list[str]
    timezone: str | None
    consent: bool
    consent_at: datetime | None
    consent_source: str | None
    opted_out_at: datetime | None
    opt_out_source: OptOutSource | None
    last_followup_at: datetime | None
    next_followup_at: datetime | None
    created_at: datetime
    updated_at: datetime
    taken_over_at: datetime | None = None


class MessagePublic(BaseModel):
    id: int
    role: str
    sender_type: str
    sender_name: str | None = None
    content: str
    call_id: str | None
    delivery_status: DeliveryStatus | None
    error_message: str | None
    external_message_id: str | None
    external_conversation_id: str | None
    model_used: str | None
    response_time_ms: int | None
    token_usage: dict[str, Any] | None = None
    is_flagged: bool = False
    flagged_reason: str | None = None
    quality_score: str | None = None
    timing: dict[str, float] | None
    message_metadata: dict[str, Any]
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class ThreadPublic(BaseModel):
    id: int
    channel: Channel
    status: str
    created_at: datetime
    messages: list[MessagePublic]


class DecisionPublic(BaseModel):
    id: int
    channel: Channel
    allow_send: bool
    reason_code: str
    rule_trace: list[dict[str, Any]]
    next_allowed_at: datetime | None
    call_id: str | None
    created_at: datetime


class MeetingPublic(BaseModel):
    id: int
    call_id: str | None
    slot_text: str | None
    slot_at: datetime | None
    link: str | None
    created_at: datetime


class LeadDetail(LeadPublic):
    threads: list[ThreadPublic]
    decisions: list[DecisionPublic]
    meetings: list[MeetingPublic]


class ImportRowError(BaseModel):
    row: int = Field(description="1 is the first row after the header")
    field: str
    error: str


class ImportReport(BaseModel):
    created: int
    lead_ids: list[int]
    errors: list[ImportRowError]


class HistoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel = Channel.SMS
    # Either shape: [{"user", "agent"}] turns or [{"role", "content"}] messages.
    history: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class HistoryOut(BaseModel):
    format: Literal["messages", "turns"]
    history: list[dict[str, str]]
    opted_out: bool = False
