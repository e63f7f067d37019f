"""Prometheus metrics the worker reports (exposed by the app's GET /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

STREAMS_REJECTED = Counter("voice_streams_rejected_total", "Media streams refused before any pipeline started", ["reason"])
MEDIA_MESSAGES_REJECTED = Counter("voice_media_messages_rejected_total", "Malformed media stream messages dropped", ["reason"])
ACTIVE_CALLS = Gauge("voice_active_calls", "Calls with a live media stream in this process")
LLM_FALLBACKS = Counter("voice_llm_fallbacks_total", "Calls where the rule-based agent took over from the LLM")
STAGE_LATENCY = Histogram(
    "voice_turn_stage_latency_seconds",
    "Time from the caller's end of speech to each pipeline stage",
    ["stage"],
    buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0),
)
