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
    # Outcome `transferred`: the number the caller was handed to.
    transferred_to: str | None = None
    # Outcome `voicemail`: whether the agent left its message after the beep.
    voicemail_left: bool = False
    # A recording is stored (GET /calls/{id}/recording, or the form's player).
    has_recording: bool = False


# Computed for a live job; everything else is copied by name from the job or the stored record.
_LIVE_ONLY = ("expires_at", "seconds_until_expiry")


def call_status(source: Call | CallJob, job: CallJob | None = None) -> CallStatusResponse:
    """The answer about a call from its live job, or from its stored record (with the job while it lives)."""
    live = source if isinstance(source, CallJob) else job
    fields = {
        name: getattr(source, name)
        for name in CallStatusResponse.model_fields
        if name not in _LIVE_ONLY and getattr(source, name, None) is not None
    }
    fields |= {
        "id": str(source.id),
        "phone": mask_phone(source.phone),
        "has_recording": bool(getattr(source, "recording_path", None)),
    }
    if live is not None:
        fields |= {"expires_at": live.expires_at, "seconds_until_expiry": round(live.seconds_until_expiry(), 3)}
    return CallStatusResponse.model_validate(fields)
