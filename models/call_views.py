"""What the API answers about a call: the live job while it has one, the stored record after."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from models.call_job import CallJob
from models.call_queue import CallAttempt
from models.call_request import mask_phone
from models.enums import AttemptStatus, CallOutcome, CallStatus, EndReason
from models.tables import Call


class CallAccepted(BaseModel):
    """POST /calls's 202: the call is the queue's now; follow it at status_url."""

    id: str
    # "queued": due now, dialed as soon as a worker takes it; "scheduled": due at scheduled_for.
    status: Literal["queued", "scheduled"]
    scheduled_for: datetime
    status_url: str
    telephony: str
    # Only with TELEPHONY_PROVIDER=none: what an external client sends in its `start` message
    # (connect once GET status_url shows the call pending: the queue saves its session first), and
    # `url`, the /ws to connect to (the voice pool's when VOICE_PUBLIC_URL is set).
    stream: dict[str, str] | None = None


class CallStatusResponse(BaseModel):
    id: str
    status: CallStatus
    phone: str
    created_at: datetime
    # Once the call is placed: the context it runs on (GET /contexts/{context_id}).
    context_id: str | None = None
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
    # Before the call is placed: where its attempt is in the queue (scheduled, queued, claimed,
    # dialing; skipped or canceled with the reason in `error`), and when it is due.
    attempt_status: str | None = None
    scheduled_for: datetime | None = None


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
    if source.context_id is not None:
        fields["context_id"] = str(source.context_id)
    if live is not None:
        fields |= {"expires_at": live.expires_at, "seconds_until_expiry": round(live.seconds_until_expiry(), 3)}
    return CallStatusResponse.model_validate(fields)


def attempt_status_view(attempt: CallAttempt) -> CallStatusResponse:
    """A call not placed yet (or never: skipped by the policy, canceled), from its queue attempt."""
    never = attempt.status in (AttemptStatus.SKIPPED, AttemptStatus.CANCELED, AttemptStatus.FAILED)
    return CallStatusResponse(
        id=attempt.call_id,
        status=CallStatus.FAILED if never else CallStatus.PENDING,
        phone=mask_phone(str(attempt.call_request.get("phone", ""))),
        created_at=attempt.created_at,
        error=(attempt.error or f"not called: {attempt.reason or attempt.status.value}") if never else None,
        attempt_status=attempt.status.value,
        scheduled_for=attempt.scheduled_for,
    )
