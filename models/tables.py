"""SQLModel tables: what must outlive a call."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from models.call_job import utcnow
from models.enums import CallGoal, CallOutcome, CallStatus, EndReason


class Call(SQLModel, table=True):
    """The durable record of one call, written before its session can expire."""

    __tablename__ = "call"

    id: str = Field(primary_key=True, max_length=36)
    context_id: str = Field(max_length=36)
    phone: str = Field(index=True, max_length=32)
    goal: CallGoal | None = None
    status: CallStatus = Field(default=CallStatus.PENDING, index=True)
    outcome: CallOutcome | None = Field(default=None, index=True)
    end_reason: EndReason | None = None
    error: str | None = None
    twilio_call_sid: str | None = Field(default=None, index=True, max_length=64)
    telephony_status: str | None = None
    stt_provider: str | None = None
    llm_provider: str | None = None
    tts_provider: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    sms_sent: bool = False
    # [{"role": "agent"|"caller", "text": ..., "at": iso, "timing": {...}}]
    transcript: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # {question: answer} for the context's qualification questions.
    answers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # One entry per caller turn: end of speech, STT final, LLM first token,
    # TTS first audio, first audio sent (ms relative to end of speech).
    turn_metrics: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
