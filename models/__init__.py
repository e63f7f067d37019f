"""Schemas, tables, settings and the session store: the parts every service shares."""

from models.call_job import CALL_JOB_TTL_SECONDS, CallJob
from models.call_request import CallRequest, mask_phone, normalize_e164
from models.context import ContextInstance
from models.enums import (
    AgentStyle,
    CallGoal,
    CallOutcome,
    CallStatus,
    ContextSource,
    EndReason,
    TargetAudience,
)

__all__ = [
    "CALL_JOB_TTL_SECONDS",
    "AgentStyle",
    "CallGoal",
    "CallJob",
    "CallOutcome",
    "CallRequest",
    "CallStatus",
    "ContextInstance",
    "ContextSource",
    "EndReason",
    "TargetAudience",
    "mask_phone",
    "normalize_e164",
]
