"""Request schemas of the conversation routes: moving a lead's stage, a person's text into the thread."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.enums import LeadStage


class LeadUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    stage: LeadStage | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("stage", mode="before")
    @classmethod
    def _known_stage(cls, value: Any) -> Any:
        if value is not None and value not in {s.value for s in LeadStage}:
            raise ValueError(f"stage must be one of {', '.join(s.value for s in LeadStage)}")
        return value


class HumanMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    content: str = Field(min_length=1, max_length=1600)
    sender_name: Annotated[str, Field(max_length=255)] | None = None
