"""Enumerations shared by the control API, the voice worker and the database."""

from enum import StrEnum


class TargetAudience(StrEnum):
    CONSUMER = "consumer"
    SME = "sme"
    ENTERPRISE = "enterprise"
    OTHER = "other"


class CallGoal(StrEnum):
    QUALIFY_INTEREST = "qualify_interest"
    BOOK_MEETING = "book_meeting"
    COLLECT_INFO = "collect_info"
    CONFIRM_ORDER = "confirm_order"


class AgentStyle(StrEnum):
    PROFESSIONAL = "professional"
    FRIENDLY = "friendly"
    ASSERTIVE = "assertive"
    LUXURY = "luxury"
    CONCISE = "concise"


class CallStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class CallOutcome(StrEnum):
    """How a completed call ended (design.md, "Outcomes")."""

    QUALIFIED = "qualified"
    NOT_INTERESTED = "not_interested"
    MEETING_BOOKED = "meeting_booked"
    INFO_COLLECTED = "info_collected"
    ORDER_CONFIRMED = "order_confirmed"
    CALLBACK_REQUESTED = "callback_requested"
    OPTED_OUT = "opted_out"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"


class EndReason(StrEnum):
    """Why the call stopped, independent of what it achieved."""

    AGENT_COMPLETED = "agent_completed"
    OPT_OUT = "opt_out"
    SILENCE_TIMEOUT = "silence_timeout"
    MAX_DURATION = "max_duration"
    CALLER_HUNG_UP = "caller_hung_up"
    ERROR = "error"


class ContextSource(StrEnum):
    """What produced a call's context."""

    TEMPLATE = "template"
    OPENAI = "openai"
