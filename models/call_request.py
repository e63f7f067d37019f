"""The call request a visitor, a form backend or a campaign submits."""

import re
from typing import Annotated

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.enums import AgentStyle, CallGoal, TargetAudience

ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=1000)]

# Digits and the separators people write between them, nothing else: phonenumbers would map letters
# to keypad digits (+1415555ABCD dials +14155552223) and drop an extension (;ext=99) without a word.
_E164_WRITTEN = re.compile(r"\+[0-9\s().-]+")


def normalize_e164(value: str) -> str:
    """Parse a phone number that must already be in E.164 form and return it canonically."""
    raw = value.strip()
    if not raw.startswith("+"):
        raise ValueError("phone must be in E.164 format, starting with + and the country code")
    if not _E164_WRITTEN.fullmatch(raw):
        raise ValueError(
            "phone may hold only digits after the + (spaces, dots, dashes, brackets allowed): no letters, no extension"
        )
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone is not a parseable E.164 number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("phone is not a valid number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str | None) -> str:
    """Keep only enough of a number to tell calls apart in logs."""
    if not phone:
        return ""
    return phone[:3] + "*" * max(len(phone) - 5, 0) + phone[-2:]


class CallRequest(BaseModel):
    """Form submission that triggers one outbound call."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    phone: str = Field(max_length=32, description="Callee phone number in E.164 format")
    product: ShortText = Field(description="What is being offered")
    offer_pricing: LongText = Field(description="Price and offer details")
    target: TargetAudience
    goal: CallGoal
    style: AgentStyle
    name: Annotated[str, Field(max_length=100)] | None = None
    booking_link: Annotated[str, Field(max_length=500)] | None = None
    constraints: Annotated[str, Field(max_length=1000)] | None = None
    turnstile_token: Annotated[str, Field(max_length=2048)] | None = None
    # validate_default: an omitted consent must be refused like a false one, not pass as the default.
    consent: bool = Field(default=False, validate_default=True)

    @field_validator("phone")
    @classmethod
    def _phone_is_e164(cls, value: str) -> str:
        return normalize_e164(value)

    @field_validator("consent")
    @classmethod
    def _consent_given(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("consent must be true: the callee must have agreed to be called")
        return value

    @field_validator("booking_link")
    @classmethod
    def _booking_link_is_http(cls, value: str | None) -> str | None:
        if value and not value.lower().startswith(("https://", "http://")):
            raise ValueError("booking_link must be an http(s) URL")
        return value or None

    @field_validator("name", "constraints")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None
