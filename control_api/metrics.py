"""Prometheus metrics of the control API (the worker's are in voice_worker/metrics.py; one GET /metrics shows both)."""

import asyncio
import contextlib

from prometheus_client import Counter, Gauge, Histogram

from models.session_store import SessionStore, SessionStoreUnavailable

CALL_REQUESTS = Counter("control_call_requests_total", "Call requests answered, by HTTP status", ["status"])
CALLS_CREATED = Counter("control_calls_created_total", "Calls created and dialed, by telephony provider", ["telephony"])
RATE_LIMIT_REFUSALS = Counter("control_rate_limit_refusals_total", "Call requests refused by the per-address rate limit")
TURNSTILE_REFUSALS = Counter("control_turnstile_refusals_total", "Call requests refused by the Turnstile check", ["reason"])
API_KEY_REFUSALS = Counter("control_api_key_refusals_total", "Requests refused for a missing or wrong API key")
CONTEXTS_GENERATED = Counter("control_contexts_generated_total", "Call contexts generated, by source", ["source"])
TWILIO_CALLBACKS = Counter(
    "control_twilio_callbacks_total", "Accepted Twilio callbacks, by call status or AMD verdict", ["status"]
)
TWILIO_CALLBACKS_REJECTED = Counter("control_twilio_callbacks_rejected_total", "Refused Twilio callbacks", ["reason"])
# Calls in the session store, across processes (voice_active_calls counts this process's streams).
SESSIONS_ACTIVE = Gauge("control_active_calls", "Calls whose session is live in the session store")
STAGE_LATENCY = Histogram(
    "control_call_request_stage_seconds",
    "Time spent in each stage of POST /calls",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


async def refresh_active_calls(store: SessionStore, every_seconds: float = 5.0) -> None:
    """Keep SESSIONS_ACTIVE current: a scrape cannot await the store, so the gauge is kept warm."""
    while True:
        # On an outage /health/ready reports it; the gauge keeps its last value.
        with contextlib.suppress(SessionStoreUnavailable):
            SESSIONS_ACTIVE.set(await store.count_active_calls())
        await asyncio.sleep(every_seconds)
