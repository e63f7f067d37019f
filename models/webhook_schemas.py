"""Bodies of the inbound lead webhooks (a lead or a message from another system) and their answers."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.call_request import normalize_e164
from models.enums import DeliveryStatus

ExternalId = Annotated[str, Field(min_length=1, max_length=255)]


class WebhookLeadIn(BaseModel):
    """A lead created in another system (a marketplace, a form tool); idempotent on external_id."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: ExternalId
    phone: str = Field(max_length=32, description="E.164")
    name: Annotated[str, Field(max_length=200)] | None = None
    source: str = Field(min_length=1, max_length=100, description="The other system, e.g. yelp")
    message: Annotated[str, Field(min_length=1, max_length=4000)] | None = None
    external_conversation_id: ExternalId | None = None

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: Any) -> str:
        return normalize_e164(value)


class WebhookMessageIn(BaseModel):
    """A message the lead sent in the other system; idempotent on external_id (the message's id)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: ExternalId
    lead_external_id: ExternalId
    content: str = Field(min_length=1, max_length=4000)
    external_conversation_id: ExternalId | None = None


class AgentResponse(BaseModel):
    """A reply of the agent for the other system to deliver."""

    id: int
    content: str
    delivery_status: DeliveryStatus | None
    error_message: str | None
    external_conversation_id: str | None
    external_platform: str | None
    model_used: str | None
    created_at: datetime


class WebhookAccepted(BaseModel):
    lead_id: int
    # False: this external id was seen before, and nothing changed.
    created: bool
    response: AgentResponse | None = None


class DeliveryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    delivery_status: Literal["sent_to_external", "delivered", "failed"]
    error_message: Annotated[str, Field(max_length=500)] | None = None


class WebhookSecretIssued(BaseModel):
    # Shown once; the sender keys its HMAC-SHA256 signatures with it.
    webhook_secret: str
