"""One call's Pipecat pipeline. The list in `build_pipeline` is the architecture."""

from dataclasses import dataclass

from fastapi import WebSocket
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

from models.settings import Settings
from models.twilio_media import SAMPLE_RATE
from voice_worker.call_recorder import CallRecorder
from voice_worker.call_session import CallSession
from voice_worker.processors.checked_twilio_serializer import CheckedTwilioFrameSerializer
from voice_worker.processors.keypad_opt_out import KeypadOptOut
from voice_worker.processors.turn_timing_observer import TurnTimingObserver
from voice_worker.providers.selection import make_llm, make_stt, make_tts
from voice_worker.turn_taking import user_turn_strategies, vad_analyzer


@dataclass
class CallPipeline:
    worker: PipelineWorker
    transport: FastAPIWebsocketTransport
    serializer: CheckedTwilioFrameSerializer
    user_aggregator: object
    assistant_aggregator: object
    recorder: CallRecorder | None = None


def make_serializer(settings: Settings, session: CallSession) -> CheckedTwilioFrameSerializer:
    on_twilio = bool(session.call_sid and settings.telephony_provider == "twilio" and settings.twilio_configured)
    return CheckedTwilioFrameSerializer(
        stream_sid=session.stream_sid,
        call_sid=session.call_sid,
        account_sid=settings.twilio_account_sid if on_twilio else None,
        auth_token=settings.twilio_auth_token.get_secret_value() if on_twilio and settings.twilio_auth_token else None,
        base_url=settings.twilio_api_base_url if on_twilio else None,
        # Ending the call is a REST hang-up on Twilio; elsewhere closing the stream ends it.
        params=CheckedTwilioFrameSerializer.InputParams(auto_hang_up=on_twilio),
        call_id=session.call_id,
    )


def build_pipeline(websocket: WebSocket, settings: Settings, session: CallSession) -> CallPipeline:
    serializer = make_serializer(settings, session)
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
            allowed_origins=[],
        ),
    )
    context = LLMContext(messages=[{"role": "system", "content": session.context.agent_instructions}])
    if settings.llm_provider == "openai":
        from voice_worker.providers.openai_llm import CALL_TOOLS

        context = LLMContext(messages=context.get_messages(), tools=CALL_TOOLS)
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            user_turn_strategies=user_turn_strategies(settings),
            user_idle_timeout=settings.silence_timeout_seconds,
        ),
    )
    recorder = CallRecorder(settings, session.call_id, session.context) if settings.record_calls else None
    pipeline = Pipeline(
        [
            transport.input(),  # Twilio media in: 8 kHz mu-law -> PCM
            KeypadOptOut(session),  # DTMF 0 opts out
            VADProcessor(vad_analyzer=vad_analyzer(settings)),
            make_stt(settings, session),
            aggregators.user(),
            make_llm(settings, session),
            make_tts(settings, session.context.language),
            transport.output(),  # PCM -> mu-law media out; `clear` on barge-in
            *([recorder.buffer] if recorder else []),  # both sides as sent and heard -> stereo WAV
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=SAMPLE_RATE,
            audio_out_sample_rate=SAMPLE_RATE,
            enable_metrics=True,
        ),
        # Once per frame, not once per processor it passes: with tens of calls every hop is CPU.
        observers=[TurnTimingObserver(session, observe_every_push=False)],
        idle_timeout_secs=None,  # the hang-up policy owns silence and duration limits
        enable_rtvi=False,
        enable_turn_tracking=False,  # pipecat's own turn observer: TurnTimingObserver times the turns
    )
    return CallPipeline(worker, transport, serializer, aggregators.user(), aggregators.assistant(), recorder)
