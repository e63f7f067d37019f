"""What the API answers about a call: the live job while it has one, the stored record after."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from models.call_job import CallJob
from models.call_request import mask_phone
from models.enums import CallOutcome, CallStatus, EndReason
from models.tables import Call


class CallCreated(BaseModel):
    id: str
    status: CallStatus
    created_at: datetime
    expires_at: datetime
    seconds_until_expiry: float
    context_id: str
    context_url: str
    status_url: str
    telephony: str
    twilio_call_sid: str | None = None
    # Only with TELEPHONY_PROVIDER=none: what an external client sends in its `start` message.
    stream: dict[str, str] | None = None


class CallStatusResponse(BaseModel):
    id: str
    status: CallStatus
    phone: str
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    expires_at: datetime | None = None
    seconds_until_expiry: float | None = None
    outcome: CallOutcome | None = None
    end_reason: EndReason | None = None
    error: str | None = None
    sms_sent: bool = False
    twilio_call_sid: str | None = None
    telephony_status: str | None = None
    duration_seconds: float | None = None
    transcript: list[dict[str, Any]] = []
    answers: dict[str, Any] = {}
    turn_metrics: list[dict[str, Any]] = []


def from_job(job: CallJob) -> CallStatusResponse:
    return CallStatusResponse(
        id=str(job.id),
        status=job.status,
        phone=mask_phone(job.phone),
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        expires_at=job.expires_at,
        seconds_until_expiry=round(job.seconds_until_expiry(), 3),
        outcome=job.outcome,
        error=job.error,
        sms_sent=job.sms_sent,
        twilio_call_sid=job.twilio_call_sid,
        telephony_status=job.telephony_status,
    )


def from_record(record: Call, job: CallJob | None = None) -> CallStatusResponse:
    view = CallStatusResponse(
        id=record.id,
        status=record.status,
        phone=mask_phone(record.phone),
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        outcome=record.outcome,
        end_reason=record.end_reason,
        error=record.error,
        sms_sent=record.sms_sent,
        twilio_call_sid=record.twilio_call_sid,
        telephony_status=record.telephony_status,
        duration_seconds=record.duration_seconds,
        transcript=record.transcript,
        answers=record.answers,
        turn_metrics=record.turn_metrics,
    )
    if job is not None:
        view.expires_at = job.expires_at
        view.seconds_until_expiry = round(job.seconds_until_expiry(), 3)
    return view
