"""A finished conversation as the durable `Call` row the after-call path stores."""

from models.call_job import utcnow
from models.enums import CallOutcome, CallStatus, EndReason
from models.settings import Settings
from models.tables import Call
from voice_worker.call_session import CallSession


def finished_call_record(session: CallSession, settings: Settings) -> Call:
    ended = utcnow()
    failed = session.end_reason is EndReason.ERROR
    return Call(
        id=session.call_id,
        context_id=str(session.context.id),
        phone=session.job.phone,
        goal=session.context.goal,
        status=CallStatus.FAILED if failed else CallStatus.COMPLETED,
        outcome=session.outcome or CallOutcome.NO_ANSWER,
        end_reason=session.end_reason,
        error=session.error,
        twilio_call_sid=session.call_sid or session.job.twilio_call_sid,
        telephony_status=session.job.telephony_status,
        stt_provider=settings.stt_provider,
        llm_provider=("openai+rules" if session.llm_fallback_used else settings.llm_provider),
        tts_provider=settings.tts_provider,
        created_at=session.job.created_at,
        started_at=session.started_at,
        ended_at=ended,
        duration_seconds=round((ended - session.started_at).total_seconds(), 3),
        transcript=[entry.as_dict() for entry in session.transcript],
        answers=session.answers,
        turn_metrics=session.turn_metrics,
        recording_path=session.recording_path,
        transferred_to=session.transferred_to,
        voicemail_left=session.voicemail_left,
    )


# What a call becomes if the process running it dies before it ends (journaled at its start).
WORKER_LOST = "the worker process ended mid-call"


def call_record_if_worker_dies(session: CallSession, settings: Settings) -> Call:
    record = finished_call_record(session, settings)
    record.status, record.end_reason, record.error = CallStatus.FAILED, EndReason.ERROR, WORKER_LOST
    return record
