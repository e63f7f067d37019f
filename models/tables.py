"""SQLModel tables: what must outlive a call."""

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

# The queue's tables too: the migrations compare the whole metadata with the schema.
from models import call_queue as _call_queue  # noqa: F401

# Call's links point at the domain's tables: they must be in the metadata wherever Call is.
from models import domain as _domain  # noqa: F401
from models.call_job import utcnow
from models.column_types import UtcDateTime, enum_type
from models.enums import CallDirection, CallGoal, CallOutcome, CallStatus, EndReason


class Call(SQLModel, table=True):
    """The durable record of one call, written before its session can expire."""

    __tablename__ = "call"

    id: str = Field(primary_key=True, max_length=36)
    context_id: str = Field(max_length=36)
    phone: str = Field(index=True, max_length=32)
    goal: CallGoal | None = Field(default=None, sa_type=enum_type(CallGoal))
    status: CallStatus = Field(default=CallStatus.PENDING, index=True, sa_type=enum_type(CallStatus))
    outcome: CallOutcome | None = Field(default=None, index=True, sa_type=enum_type(CallOutcome))
    end_reason: EndReason | None = Field(default=None, sa_type=enum_type(EndReason))
    error: str | None = None
    twilio_call_sid: str | None = Field(default=None, index=True, max_length=64)
    telephony_status: str | None = None
    stt_provider: str | None = None
    llm_provider: str | None = None
    tts_provider: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    duration_seconds: float | None = None
    sms_sent: bool = False
    # [{"role": "agent"|"caller", "text": ..., "at": iso, "timing": {...}}]
    transcript: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # {question: answer} for the context's qualification questions.
    answers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # One entry per caller turn: end of speech, STT final, LLM first token,
    # TTS first audio, first audio sent (ms relative to end of speech).
    turn_metrics: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Who the call was for, set when POST /calls admits it (models/domain.py); None for calls
    # recorded before the outreach domain existed.
    workspace_id: int | None = Field(default=None, foreign_key="workspace.id", index=True)
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    strategy_version_id: int | None = Field(default=None, foreign_key="strategy_version.id")
    # An inbound call is one the workspace's number received (POST /twilio/voice): who called from
    # where (Twilio's FromCity/FromState/FromCountry) and which of the workspace's numbers.
    direction: CallDirection = Field(default=CallDirection.OUTBOUND, sa_type=enum_type(CallDirection))
    business_phone: str | None = Field(default=None, max_length=16)
    caller_city: str | None = Field(default=None, max_length=100)
    caller_state: str | None = Field(default=None, max_length=50)
    caller_country: str | None = Field(default=None, max_length=3)
    # The stereo WAV (caller left, agent right) under RECORDINGS_DIR; None when not recorded.
    recording_path: str | None = Field(default=None, max_length=500)
    # The number the caller was handed to (outcome `transferred`).
    transferred_to: str | None = Field(default=None, max_length=32)
    # A machine answered and the agent left its message after the beep (outcome `voicemail`).
    voicemail_left: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})

    # Set when the call is admitted (POST /calls, POST /twilio/voice), not known to the worker: an
    # outcome write must keep them.
    LINK_FIELDS: ClassVar[tuple[str, ...]] = (
        "workspace_id",
        "lead_id",
        "strategy_version_id",
        "direction",
        "business_phone",
        "caller_city",
        "caller_state",
        "caller_country",
    )
