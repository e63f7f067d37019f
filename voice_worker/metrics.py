"""Prometheus metrics the worker reports (exposed by the app's GET /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

STREAMS_REJECTED = Counter("voice_streams_rejected_total", "Media streams refused before any pipeline started", ["reason"])
MEDIA_MESSAGES_REJECTED = Counter("voice_media_messages_rejected_total", "Malformed media stream messages dropped", ["reason"])
ACTIVE_CALLS = Gauge("voice_active_calls", "Calls with a live media stream in this process")
LLM_FALLBACKS = Counter("voice_llm_fallbacks_total", "Calls where the rule-based agent took over from the LLM")
STAGE_LATENCY = Histogram(
    "voice_turn_stage_latency_seconds",
    "Time from the caller's end of speech to each pipeline stage: endpointing (turn end decided), stt_final, "
    "llm_first_token, tts_first_audio, first_audio_sent; observed as each turn is answered",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0),
)
TURN_LATENCY = Histogram(
    "voice_turn_latency_seconds",
    "Turn latency as the caller hears it, server side: caller's end of speech to the agent's first audio sent",
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0),
)
EVENT_LOOP_LAG = Histogram(
    "voice_event_loop_lag_seconds",
    "How late the event loop woke a sleeping task: a busy loop delays every call's audio by as much",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
