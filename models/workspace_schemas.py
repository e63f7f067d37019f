"""Request and response schemas of the workspace routes: workspaces, API keys, consent attestations."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.call_request import normalize_e164
from models.enums import BudgetTier
from models.outreach_policy import parse_business_hours, zone

BusinessHours = dict[str, list[list[str]]]


class WorkspaceFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @field_validator("transfer_number", check_fields=False)
    @classmethod
    def _e164_transfer_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_e164(value)
        except ValueError as exc:
            raise ValueError(str(exc).replace("phone", "transfer_number", 1)) from None

    @field_validator("business_hours", check_fields=False)
    @classmethod
    def _valid_hours(cls, value: BusinessHours | None) -> BusinessHours | None:
        if value is not None:
            parse_business_hours(value)
        return value


class WorkspaceCreate(WorkspaceFields):
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    budget_tier: BudgetTier = BudgetTier.GREEN
    business_hours: BusinessHours | None = None
    # E.164: where the agent hands a caller who asks for a person; unset, it offers a callback.
    transfer_number: str | None = Field(default=None, max_length=32)


class WorkspaceUpdate(WorkspaceFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    budget_tier: BudgetTier | None = None
    business_hours: BusinessHours | None = None
    transfer_number: str | None = Field(default=None, max_length=32)


class WorkspacePublic(BaseModel):
    id: int
    name: str
    timezone: str
    budget_tier: BudgetTier
    business_hours: BusinessHours | None
    transfer_number: str | None = None
    created_at: datetime


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyIssued(BaseModel):
    key: ApiKeyPublic
    # Shown once: only its hash is stored.
    api_key: str


class WorkspaceCreated(BaseModel):
    workspace: WorkspacePublic
    key: ApiKeyPublic
    api_key: str


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="default", min_length=1, max_length=100)


class AttestationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    operator_id: str = Field(min_length=1, max_length=200)
    # None: the attestation covers every lead of the workspace.
    lead_id: int | None = None
    granted: bool = True


class AttestationPublic(BaseModel):
    id: int
    operator_id: str
    lead_id: int | None
    granted: bool
    timestamp: datetime
