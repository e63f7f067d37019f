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
    TRANSFERRED = "transferred"


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


# --- Outreach domain (workspaces, leads, strategies, conversations) -----------------------------


class LeadStage(StrEnum):
    NEW = "NEW"
    CONTACTED = "CONTACTED"
    ENGAGED = "ENGAGED"
    QUALIFIED = "QUALIFIED"
    OUTCOME_APPOINTMENT = "OUTCOME_APPOINTMENT"
    OUTCOME_PURCHASE = "OUTCOME_PURCHASE"
    TAKE_OVER = "TAKE_OVER"
    CLOSED_LOST = "CLOSED_LOST"
    SUPPRESSED = "SUPPRESSED"


class LeadTag(StrEnum):
    NO_RESPONSE = "NO_RESPONSE"
    NEUTRAL = "NEUTRAL"
    POSITIVE = "POSITIVE"
    RESISTIVE = "RESISTIVE"
    DISCONNECT = "DISCONNECT"
    STRATEGY_REVIEW_REQUIRED = "STRATEGY_REVIEW_REQUIRED"
    INTENT_APPOINTMENT = "INTENT_APPOINTMENT"
    INTENT_PURCHASE = "INTENT_PURCHASE"


class BudgetTier(StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


class FollowUpPreset(StrEnum):
    GENTLE = "GENTLE"
    BALANCED = "BALANCED"
    AGGRESSIVE = "AGGRESSIVE"


class StrategyStatus(StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    ROLLED_BACK = "ROLLED_BACK"


class Channel(StrEnum):
    """Where a conversation with a lead happens."""

    VOICE = "voice"
    SMS = "sms"
    # Another system's conversation (a lead webhook's platform): it delivers our replies itself.
    EXTERNAL = "external"


class SenderType(StrEnum):
    AGENT = "agent"
    LEAD = "lead"
    SYSTEM = "system"
    # A person at the business who took the conversation over.
    HUMAN = "human"


class MessageRole(StrEnum):
    """A stored message's role in the model's terms (the domain seed's user/model/system)."""

    USER = "user"
    MODEL = "model"
    SYSTEM = "system"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT_TO_EXTERNAL = "sent_to_external"
    DELIVERED = "delivered"
    FAILED = "failed"
    # Twilio's message statuses besides the ones above (its `delivered` and `failed` are shared).
    QUEUED = "queued"
    SENT = "sent"
    UNDELIVERED = "undelivered"
    RECEIVED = "received"


class OptOutSource(StrEnum):
    """How a lead opted out; every source is final."""

    VOICE = "voice"
    SMS = "sms"
    API = "api"


# --- Inbound side (the workspace's own numbers) ----------------------------------------------------


class CallDirection(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class PhoneNumberStatus(StrEnum):
    """A workspace number's life cycle (the phone seed's provisioning -> active -> released)."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    RELEASED = "released"


class Language(StrEnum):
    """Languages the templates, the rule-based agent and the texts speak."""

    ENGLISH = "en"
    HEBREW = "he"


# --- Call queue (models/call_queue.py) --------------------------------------------------------------


class AttemptStatus(StrEnum):
    """Where one call attempt is; call_queue/__init__.py draws the transitions."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    CLAIMED = "claimed"
    DIALING = "dialing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


# An attempt in one of these may still place a call; a lead has at most one such attempt.
LIVE_ATTEMPT_STATUSES = (
    AttemptStatus.SCHEDULED,
    AttemptStatus.QUEUED,
    AttemptStatus.CLAIMED,
    AttemptStatus.DIALING,
    AttemptStatus.IN_PROGRESS,
)


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELED = "canceled"
    FINISHED = "finished"
