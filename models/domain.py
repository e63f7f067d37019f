"""SQLModel tables of the outreach domain: who is called, for whom, how, and what was said.

Names and fields follow the domain seed (Migration M1) and the messaging seed; what a phone
call needs besides (business hours, hashed API keys, E.164 phone and consent, channels,
meetings) is added here. The call itself is `models.tables.Call`.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, event, inspect
from sqlmodel import Field, SQLModel

from models.call_job import utcnow
from models.column_types import JSONType, UtcDateTime, enum_type
from models.enums import (
    BudgetTier,
    Channel,
    DeliveryStatus,
    FollowUpPreset,
    Language,
    LeadStage,
    MessageRole,
    OptOutSource,
    PhoneNumberStatus,
    SenderType,
    StrategyStatus,
)

DEFAULT_WORKSPACE_NAME = "Web form"
# The phone seed's business settings defaults; "{trade}" in the greeting is the workspace's trade.
DEFAULT_AUTO_RESPONSE = "Hi! Sorry we missed your call. How can we help?"
DEFAULT_GREETING_TEMPLATE = "Hello! I'm here to help with your {trade} needs. What can I assist you with today?"


class Workspace(SQLModel, table=True):
    """One business: its leads, strategies and API keys never mix with another's."""

    __tablename__ = "workspace"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    budget_tier: BudgetTier = Field(default=BudgetTier.GREEN, sa_type=enum_type(BudgetTier))
    # {"mon": [["09:00", "17:00"]], ...} in the workspace's time zone; None: open whenever the
    # callee's 8:00-21:00 allows. A missing weekday is a closed day.
    business_hours: dict[str, list[list[str]]] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    # The anonymous web form's calls belong to this one (created by the first migration).
    is_default: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # The inbound side's business settings (phone seed): what the business does, the language its
    # agent speaks, the text a missed caller gets, and how the agent greets a caller.
    trade: str | None = Field(default=None, max_length=100)
    language: Language = Field(default=Language.ENGLISH, sa_type=enum_type(Language))
    auto_response_enabled: bool = Field(default=True)
    auto_response_message: str = Field(default=DEFAULT_AUTO_RESPONSE, sa_type=sa.Text)
    ai_greeting_template: str = Field(default=DEFAULT_GREETING_TEMPLATE, sa_type=sa.Text)
    # Seconds a human who took a conversation over may stay silent before the agent answers again.
    ai_takeover_delay_seconds: int = Field(default=60)
    # Keys the HMAC-SHA256 of POST /webhooks/* bodies; kept as is because checking needs it (like
    # Twilio's auth token). Issued by POST /workspaces/{id}/webhook-secret, shown once.
    webhook_secret: str | None = Field(default=None, max_length=128)


class PhoneNumber(SQLModel, table=True):
    """One of a workspace's Twilio numbers: calls and texts to it are the workspace's."""

    __tablename__ = "phone_number"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    # E.164; one number belongs to one workspace.
    phone_number: str = Field(max_length=16, unique=True)
    phone_number_sid: str | None = Field(default=None, max_length=64, unique=True)
    messaging_service_sid: str | None = Field(default=None, max_length=64)
    capabilities: list[str] = Field(default_factory=lambda: ["voice", "sms"], sa_column=Column(JSONType, nullable=False))
    status: PhoneNumberStatus = Field(default=PhoneNumberStatus.ACTIVE, sa_type=enum_type(PhoneNumberStatus))
    # The business's own phone, rung first within business hours; None: the agent answers at once.
    forward_to: str | None = Field(default=None, max_length=16)
    friendly_name: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class WorkspaceApiKey(SQLModel, table=True):
    """A key scoped to one workspace. Only its SHA-256 is stored; the key is shown once."""

    __tablename__ = "workspace_api_key"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    name: str = Field(default="default", max_length=100)
    # The first characters, to tell keys apart in listings and logs.
    key_prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class StrategyVersion(SQLModel, table=True):
    """How a workspace talks to its leads. Versions are append-only; an ACTIVE one is immutable."""

    __tablename__ = "strategy_version"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "version_number", name="uq_strategy_version_number"),
        # At most one ACTIVE version per workspace, guaranteed by the database itself.
        sa.Index(
            "uq_strategy_version_one_active",
            "workspace_id",
            unique=True,
            sqlite_where=sa.text("status = 'ACTIVE'"),
            postgresql_where=sa.text("status = 'ACTIVE'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    version_number: int
    status: StrategyStatus = Field(default=StrategyStatus.DRAFT, sa_type=enum_type(StrategyStatus))
    tone: str = Field(default="", sa_type=sa.Text)
    objectives: str = Field(default="", sa_type=sa.Text)
    objection_handling: str = Field(default="", sa_type=sa.Text)
    cta_rules: str = Field(default="", sa_type=sa.Text)
    followup_preset: FollowUpPreset = Field(default=FollowUpPreset.BALANCED, sa_type=enum_type(FollowUpPreset))
    # {"intervals_hours": [24, 72]}: replaces the preset's spacing (and so its attempt count).
    interval_overrides: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    activated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


STRATEGY_CONTENT_FIELDS = (
    "tone",
    "objectives",
    "objection_handling",
    "cta_rules",
    "followup_preset",
    "interval_overrides",
    "version_number",
    "workspace_id",
)


class ImmutableStrategyError(ValueError):
    """Raised when an ACTIVE (or retired) strategy version's content would change."""


@event.listens_for(StrategyVersion, "before_update")
def _refuse_changes_to_published_versions(_mapper, _connection, target: StrategyVersion) -> None:
    # Calls record the version they ran on; editing it afterwards would rewrite history.
    state = inspect(target)
    status_history = state.attrs.status.history
    was = status_history.deleted[0] if status_history.deleted else target.status
    if was == StrategyStatus.DRAFT:
        return
    changed = [name for name in STRATEGY_CONTENT_FIELDS if state.attrs[name].history.has_changes()]
    if changed:
        raise ImmutableStrategyError(
            f"strategy version {target.id} is {was}: {', '.join(changed)} cannot change; create a new version"
        )


class Lead(SQLModel, table=True):
    """A person a workspace may contact, identified by an E.164 phone number."""

    __tablename__ = "lead"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "phone", name="uq_lead_workspace_phone"),
        sa.Index("ix_lead_workspace_stage", "workspace_id", "stage"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    # The lead's id in the business's own system (or channel id); the phone when none is given.
    external_id: str = Field(max_length=255, index=True)
    phone: str = Field(max_length=16)
    name: str | None = Field(default=None, max_length=200)
    stage: LeadStage = Field(default=LeadStage.NEW, sa_type=enum_type(LeadStage))
    # LeadTag values, sorted and unique.
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # Overrides the zone guessed from the phone number (a number can span several zones).
    timezone: str | None = Field(default=None, max_length=64)
    consent: bool = Field(default=False)
    consent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    consent_source: str | None = Field(default=None, max_length=64)
    # Set once, never cleared: an opt-out by any channel is final.
    opted_out_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    opt_out_source: OptOutSource | None = Field(default=None, sa_type=enum_type(OptOutSource))
    last_followup_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    next_followup_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_followup_review_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    # When a person took the conversation over (stage TAKE_OVER); with the workspace's
    # ai_takeover_delay_seconds it decides when the agent answers again.
    taken_over_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ConversationThread(SQLModel, table=True):
    """All messages with one lead on one channel."""

    __tablename__ = "conversation_thread"
    __table_args__ = (sa.UniqueConstraint("lead_id", "channel", name="uq_conversation_thread_lead_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    lead_id: int = Field(foreign_key="lead.id")
    channel: Channel = Field(default=Channel.VOICE, sa_type=enum_type(Channel))
    status: str = Field(default="active", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class ChatMessage(SQLModel, table=True):
    """One utterance or text. `role` is the model's view, `sender_type` the conversation's."""

    __tablename__ = "chat_message"
    # Ascending indexes serve "newest first" too: a B-tree is read backwards as cheaply.
    __table_args__ = (
        sa.Index("ix_chat_message_thread_created", "thread_id", "created_at"),
        sa.Index("ix_chat_message_lead_created", "lead_id", "created_at"),
        sa.Index("ix_chat_message_external_conversation", "external_conversation_id"),
        sa.Index("ix_chat_message_sender_delivery", "sender_type", "delivery_status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="conversation_thread.id")
    lead_id: int = Field(foreign_key="lead.id")
    call_id: str | None = Field(default=None, foreign_key="call.id", max_length=36, index=True)
    role: MessageRole = Field(sa_type=enum_type(MessageRole))
    sender_type: SenderType = Field(sa_type=enum_type(SenderType))
    sender_name: str | None = Field(default=None, max_length=255)
    content: str = Field(sa_type=sa.Text)
    message_type: str = Field(default="text", max_length=50)
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    delivery_status: DeliveryStatus | None = Field(default=None, sa_type=enum_type(DeliveryStatus))
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    external_message_id: str | None = Field(default=None, max_length=255)
    external_conversation_id: str | None = Field(default=None, max_length=255)
    external_platform: str | None = Field(default=None, max_length=100)
    message_metadata: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    prompt_used: str | None = Field(default=None, sa_type=sa.Text)
    model_used: str | None = Field(default=None, max_length=100)
    response_time_ms: int | None = None
    token_usage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    # A voice turn's timing (ms from the end of the caller's speech to each stage).
    timing: dict[str, float] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    parent_message_id: int | None = Field(default=None, foreign_key="chat_message.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Content moderation (messaging seed).
    is_flagged: bool = Field(default=False)
    flagged_reason: str | None = Field(default=None, max_length=255)
    quality_score: str | None = Field(default=None, max_length=10)


class PolicyDecision(SQLModel, table=True):
    """The audit of one outreach policy evaluation, written before any dial."""

    __tablename__ = "policy_decision"
    __table_args__ = (sa.Index("ix_policy_decision_lead_created", "lead_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    lead_id: int = Field(foreign_key="lead.id")
    # The call this decision let through, once it exists.
    call_id: str | None = Field(default=None, foreign_key="call.id", max_length=36)
    channel: Channel = Field(default=Channel.VOICE, sa_type=enum_type(Channel))
    allow_send: bool
    reason_code: str = Field(max_length=64)
    rule_trace: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    next_allowed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class OutreachAttestation(SQLModel, table=True):
    """An operator's statement that consent exists: for one lead, or (lead_id None) for all of them."""

    __tablename__ = "outreach_attestation"
    __table_args__ = (sa.Index("ix_outreach_attestation_workspace_lead", "workspace_id", "lead_id"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id")
    lead_id: int | None = Field(default=None, foreign_key="lead.id")
    operator_id: str = Field(max_length=200)
    timestamp: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    granted: bool = Field(default=True)


class Meeting(SQLModel, table=True):
    """A meeting a call booked: the slot as agreed, and the link the lead was sent."""

    __tablename__ = "meeting"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    call_id: str | None = Field(default=None, foreign_key="call.id", max_length=36, unique=True)
    # What was agreed, in the lead's words ("tuesday at ten"); slot_at only when it was exact.
    slot_text: str | None = Field(default=None, max_length=500)
    slot_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    link: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
