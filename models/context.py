"""The generated context a call runs on."""

from datetime import UTC, datetime
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from models.enums import AgentStyle, CallGoal, ContextSource, Language, TargetAudience


class ContextStrategy(BaseModel):
    """The workspace's strategy version a context was built with: which one, and its text as it was.

    The text travels with the context so the worker, a replay and a reader of GET /contexts see what
    shaped the call without going back to the database (and an ACTIVE version never changes anyway).
    """

    model_config = ConfigDict(from_attributes=True)

    id: int
    version_number: int
    tone: str = ""
    objectives: str = ""
    objection_handling: str = ""
    cta_rules: str = ""


class ContextInstance(BaseModel):
    id: UUID = Field(default_factory=uuid4)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    # Copied from the CallRequest.
    phone: str
    name: str | None = None
    product: str
    offer_pricing: str
    target: TargetAudience
    goal: CallGoal
    style: AgentStyle
    booking_link: str | None = None
    constraints: str | None = None

    # Generated.
    agent_instructions: str
    opening_line: str
    qualification_questions: list[str]
    objection_handlers: dict[str, str]
    closing_script: str
    # The question that asks for the goal itself (a time to meet, the order,
    # permission to follow up); None for collect_info, whose goal is the answers.
    commitment_question: str | None = None

    should_send_sms: bool = False
    sms_message: str | None = None

    source: ContextSource = ContextSource.TEMPLATE

    # The language every line above is in (and the recognizer and voice should use).
    language: Language = Language.ENGLISH
    # When the opening line itself asks something (an inbound greeting's "what can I help you
    # with?"), the caller's first answer is recorded under this key.
    opening_question: str | None = None

    # The strategy version the lines and the system prompt were built with; None: the workspace had
    # none (the web form's calls, inbound calls), so only the request and the templates shaped them.
    strategy: ContextStrategy | None = None
