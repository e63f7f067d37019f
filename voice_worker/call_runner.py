"""Runs one call's pipeline from the first word to the stored outcome, whatever happens between."""

import asyncio

from fastapi import WebSocket
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.workers.runner import WorkerRunner

from after_call.outcome_writer import journal_call_in_progress, record_finished_call
from models.enums import EndReason
from models.log_config import get_logger
from models.outcome_journal import JournalEntry
from services import Services
from voice_worker import metrics
from voice_worker.call_record import call_record_if_worker_dies, finished_call_record
from voice_worker.call_recorder import with_disclosure
from voice_worker.call_session import CallSession
from voice_worker.call_transfer import install_handover
from voice_worker.hangup_policy import HangupPolicy
from voice_worker.live_transcript import publish_transcript, stop_publishing
from voice_worker.pipeline import CallPipeline, build_pipeline
from voice_worker.voicemail import leave_voicemail_at_the_beep, watches_for_voicemail

log = get_logger(__name__)


async def run_call(websocket: WebSocket, services: Services, session: CallSession) -> None:
    call = None
    policy = None
    limit_task = None
    voicemail_task = None
    live_transcript = None
    metrics.ACTIVE_CALLS.inc()
    # Should this process die mid-call (SIGKILL, OOM), the journal still finishes the call (failed) after a restart.
    in_progress = await journal_call_in_progress(services, call_record_if_worker_dies(session, services.settings), session.job)
    try:
        call = build_pipeline(websocket, services.settings, session)
        worker = call.worker
        policy = HangupPolicy(session, worker, call.serializer, services.settings)
        session.end_pipeline = policy.finish
        install_handover(services, session, call.serializer)

        @call.transport.event_handler("on_client_connected")
        async def _greet(_transport, _ws):
            opening = with_disclosure(session.agent.opening(), services.settings)
            session.add_agent_line(opening)
            await worker.queue_frame(TTSSpeakFrame(opening))

        @call.transport.event_handler("on_client_disconnected")
        async def _caller_gone(_transport, _ws):
            session.record_end(session.provisional_outcome(), EndReason.CALLER_HUNG_UP)
            await worker.cancel(reason="media stream closed")

        @call.user_aggregator.event_handler("on_user_turn_started")
        async def _caller_started(_aggregator, _strategy):
            if session.agent_speaking:
                session.mark_last_agent_line_interrupted()
            await policy.on_caller_spoke()

        @call.user_aggregator.event_handler("on_user_turn_stopped")
        async def _caller_said(_aggregator, _strategy, message):
            session.add_caller_line(message.content or "")

        @call.user_aggregator.event_handler("on_user_turn_idle")
        async def _caller_silent(_aggregator):
            await policy.on_silence()

        @call.assistant_aggregator.event_handler("on_assistant_turn_stopped")
        async def _agent_said(_aggregator, message):
            session.add_agent_line(message.content, interrupted=message.interrupted, dedupe=True)

        limit_task = asyncio.create_task(policy.enforce_max_duration())
        live_transcript = asyncio.create_task(publish_transcript(services, session))
        if watches_for_voicemail(services):
            voicemail_task = asyncio.create_task(leave_voicemail_at_the_beep(services, session, worker, policy))
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
    except asyncio.CancelledError:
        session.record_end(session.provisional_outcome(), EndReason.ERROR, error="worker shutting down")
        raise
    except Exception as exc:
        log.exception("call_pipeline_failed", call_id=session.call_id)
        session.record_end(session.provisional_outcome(), EndReason.ERROR, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        for task in (limit_task, voicemail_task):
            if task is not None:
                task.cancel()
        if policy is not None:
            await policy.cancel()
        if session.outcome is None:
            session.record_end(session.provisional_outcome(), EndReason.CALLER_HUNG_UP)
        if call is not None:
            for reason, count in call.serializer.rejected.items():
                metrics.MEDIA_MESSAGES_REJECTED.labels(reason).inc(count)
        if session.llm_fallback_used:
            metrics.LLM_FALLBACKS.inc()
        metrics.ACTIVE_CALLS.dec()
        # Shielded: a cancelled connection handler must still leave the recording and outcome behind.
        await asyncio.shield(_store_call(services, session, call, live_transcript, in_progress))


async def _store_call(
    services: Services,
    session: CallSession,
    call: CallPipeline | None,
    live: asyncio.Task | None,
    in_progress: JournalEntry | None,
) -> None:
    await stop_publishing(live)
    if call is not None and call.recorder is not None:
        try:
            session.recording_path = await call.recorder.finish()
        except Exception:
            # A lost recording is logged; the outcome is still written.
            log.exception("recording_not_saved", call_id=session.call_id)
    record = finished_call_record(session, services.settings)
    await record_finished_call(services, record, session.job, in_progress=in_progress)
