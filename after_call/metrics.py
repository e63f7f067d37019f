"""Prometheus metrics of the after-call path (exposed by the app's GET /metrics with the others)."""

from prometheus_client import Counter, Gauge

CALLS_FINISHED = Counter("voice_calls_finished_total", "Calls that ended, by status and outcome", ["status", "outcome"])
OUTCOME_WRITE_FAILURES = Counter("voice_outcome_write_failures_total", "Outcome writes that needed the fallback file", ["target"])
SMS_FOLLOWUPS = Counter("control_sms_followups_total", "SMS follow-ups, by result", ["result"])
MISSED_CALL_TEXTBACKS = Counter("control_missed_call_textbacks_total", "Missed-call text-backs, by result", ["result"])
JOURNAL_UNCONFIRMED = Gauge(
    "voice_outcome_journal_unconfirmed", "Finished calls journaled whose outcome or after-call effects await replay"
)
