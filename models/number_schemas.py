"""Request and response schemas of a workspace's phone numbers and its business settings (phone seed)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.business_hours import WeeklySchedule, from_weekly_schedule
from models.call_request import normalize_e164
from models.enums import Language, PhoneNumberStatus
from models.outreach_policy import zone

Capability = Literal["voice", "sms", "mms"]
DEFAULT_CAPABILITIES: list[Capability] = ["sms", "voice"]


class PhoneNumberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone_number: str = Field(max_length=32, description="The Twilio number, E.164")
    forward_to: str | None = Field(default=None, max_length=32, description="The business's phone, rung first in business hours")
    phone_number_sid: Annotated[str, Field(pattern=r"^PN[0-9a-fA-F]{32}$")] | None = None
    messaging_service_sid: Annotated[str, Field(pattern=r"^MG[0-9a-fA-F]{32}$")] | None = None
    capabilities: list[Capability] = Field(default_factory=lambda: list(DEFAULT_CAPABILITIES), min_length=1, max_length=3)
    friendly_name: Annotated[str, Field(max_length=255)] | None = None

    @field_validator("phone_number")
    @classmethod
    def _number_is_e164(cls, value: str) -> str:
        return normalize_e164(value)

    @field_validator("forward_to")
    @classmethod
    def _forward_is_e164(cls, value: str | None) -> str | None:
        return normalize_e164(value) if value else None

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class PhoneNumberUpdate(BaseModel):
    """Change where a number rings, or release it (a released number's calls and texts are refused)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    forward_to: str | None = Field(default=None, max_length=32)
    status: PhoneNumberStatus | None = None
    messaging_service_sid: Annotated[str, Field(pattern=r"^MG[0-9a-fA-F]{32}$")] | None = None
    friendly_name: Annotated[str, Field(max_length=255)] | None = None

    @field_validator("forward_to")
    @classmethod
    def _forward_is_e164(cls, value: str | None) -> str | None:
        return normalize_e164(value) if value else None


class PhoneNumberPublic(BaseModel):
    id: int
    workspace_id: int
    phone_number: str
    phone_number_sid: str | None
    messaging_service_sid: str | None
    capabilities: list[str]
    status: PhoneNumberStatus
    forward_to: str | None
    friendly_name: str | None
    created_at: datetime
    # Where the number's Twilio configuration must point (PUBLIC_BASE_URL + the webhook paths).
    voice_webhook_url: str
    sms_webhook_url: str
    status_callback_url: str


class BusinessSettings(BaseModel):
    """The business settings of the phone seed; every field optional on update."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    business_hours: WeeklySchedule | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    trade: Annotated[str, Field(max_length=100)] | None = None
    language: Language | None = None
    auto_response_enabled: bool | None = None
    auto_response_message: Annotated[str, Field(min_length=1, max_length=640)] | None = None
    ai_greeting_template: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    ai_takeover_delay_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @field_validator("business_hours")
    @classmethod
    def _valid_days(cls, value: WeeklySchedule | None) -> WeeklySchedule | None:
        if value is not None:
            from_weekly_schedule(value)
        return value


class BusinessSettingsPublic(BaseModel):
    business_hours: WeeklySchedule
    timezone: str
    trade: str | None
    language: Language
    auto_response_enabled: bool
    auto_response_message: str
    ai_greeting_template: str
    ai_takeover_delay_seconds: int
