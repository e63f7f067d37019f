"""Request and response schemas of the strategy routes."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from models.enums import FollowUpPreset, StrategyStatus

StrategyText = Annotated[str, Field(max_length=5000)]


class IntervalOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Hours between attempt n and n+1; attempts allowed: one more than the list is long.
    intervals_hours: list[Annotated[float, Field(ge=0.25, le=24 * 90)]] = Field(min_length=1, max_length=10)


class StrategyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tone: StrategyText = ""
    objectives: StrategyText = ""
    objection_handling: StrategyText = ""
    cta_rules: StrategyText = ""
    followup_preset: FollowUpPreset = FollowUpPreset.BALANCED
    interval_overrides: IntervalOverrides | None = None


class StrategyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tone: StrategyText | None = None
    objectives: StrategyText | None = None
    objection_handling: StrategyText | None = None
    cta_rules: StrategyText | None = None
    followup_preset: FollowUpPreset | None = None
    interval_overrides: IntervalOverrides | None = None


class StrategyPublic(BaseModel):
    id: int
    version_number: int
    status: StrategyStatus
    tone: str
    objectives: str
    objection_handling: str
    cta_rules: str
    followup_preset: FollowUpPreset
    interval_overrides: dict[str, Any] | None
    created_at: datetime
    activated_at: datetime | None
