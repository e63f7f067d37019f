"""Leads of the key's workspace: create, import CSV, list, read with threads and decisions,
opt out (final), and conversation history in either shape.
"""

import csv
import io
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.conversation_history import (
    HistoryFormatError,
    as_message,
    as_messages,
    messages_to_turns,
    new_message,
    stored_messages,
    thread_for,
)
from control_api.deps import get_db
from models.outreach_policy import zone
from control_api.workspace_auth import CurrentWorkspace
from models.call_job import utcnow
from models.call_request import normalize_e164
from models.domain import ChatMessage, ConversationThread, Lead, Meeting, PolicyDecision, Workspace
from models.enums import Channel, DeliveryStatus, LeadStage, LeadTag, OptOutSource
from prompts.caller_intent import Intent, classify

router = APIRouter(tags=["leads"])

Db = Annotated[Session, Depends(get_db)]
MAX_IMPORT_BYTES = 5_000_000
MAX_IMPORT_ROWS = 10_000
IMPORT_COLUMNS = ("phone", "name", "external_id", "timezone", "consent", "stage", "tags")
SHOWN_VALUE = 40
# Carrier-standard SMS opt-out keywords; any of them alone is an opt-out, and so is "stop calling me".
SMS_STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "opt out"})


def shown(value: Any) -> str:
    """A bad value as an error message may quote it: short, and saying how long it really was."""
    text_value = str(value)
    if len(text_value) <= SHOWN_VALUE:
        return repr(text_value)
    return f"{text_value[:SHOWN_VALUE]!r}... ({len(text_value)} characters)"


def _one_of(enum_cls: type, value: Any, what: str) -> Any:
    try:
        return enum_cls(value.strip().upper() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"unknown {what} {shown(value)}; expected one of {', '.join(m.value for m in enum_cls)}") from None


class LeadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(description="E.164, e.g. +14155550123")
    name: str | None = Field(default=None, max_length=200)
    external_id: str | None = Field(default=None, max_length=255)
    timezone: str | None = Field(default=None, max_length=64)
    consent: bool = False
    stage: LeadStage = LeadStage.NEW
    tags: list[LeadTag] = Field(default_factory=list, max_length=len(LeadTag))

    @field_validator("phone", mode="before")
    @classmethod
    def _e164(cls, value: Any) -> str:
        if not isinstance(value, str) or len(value) > 32:
            raise ValueError(f"phone {shown(value)} is not an E.164 number")
        try:
            return normalize_e164(value)
        except ValueError as exc:
            raise ValueError(f"phone {shown(value)}: {exc}") from None

    @field_validator("stage", mode="before")
    @classmethod
    def _stage(cls, value: Any) -> LeadStage:
        return _one_of(LeadStage, value, "stage")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[LeadTag]:
        items = [part for part in re.split(r"[;|,]", value) if part.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError("tags must be a list of tags")
        return sorted({_one_of(LeadTag, item, "tag") for item in items})

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value:
            try:
                zone(value)
            except ValueError:
                raise ValueError(f"unknown time zone {shown(value)}") from None
        return value or None

    @field_validator("name", "external_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class LeadPublic(BaseModel):
    id: int
    external_id: str
    phone: str
    name: str | None
    stage: LeadStage
    tags: list[str]
    timezone: str | None
    consent: bool
    consent_at: datetime | None
    consent_source: str | None
    opted_out_at: datetime | None
    opt_out_source: OptOutSource | None
    last_followup_at: datetime | None
    next_followup_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MessagePublic(BaseModel):
    id: int
    role: str
    sender_type: str
    content: str
    call_id: str | None
    delivery_status: DeliveryStatus | None
    error_message: str | None
    external_message_id: str | None
    external_conversation_id: str | None
    model_used: str | None
    response_time_ms: int | None
    timing: dict[str, float] | None
    message_metadata: dict[str, Any]
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class ThreadPublic(BaseModel):
    id: int
    channel: Channel
    status: str
    created_at: datetime
    messages: list[MessagePublic]


class DecisionPublic(BaseModel):
    id: int
    channel: Channel
    allow_send: bool
    reason_code: str
    rule_trace: list[dict[str, Any]]
    next_allowed_at: datetime | None
    call_id: str | None
    created_at: datetime


class MeetingPublic(BaseModel):
    id: int
    call_id: str | None
    slot_text: str | None
    slot_at: datetime | None
    link: str | None
    created_at: datetime


class LeadDetail(LeadPublic):
    threads: list[ThreadPublic]
    decisions: list[DecisionPublic]
    meetings: list[MeetingPublic]


class ImportRowError(BaseModel):
    row: int = Field(description="1 is the first row after the header")
    field: str
    error: str


class ImportReport(BaseModel):
    created: int
    lead_ids: list[int]
    errors: list[ImportRowError]


class HistoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel = Channel.SMS
    # Either shape: [{"user", "agent"}] turns or [{"role", "content"}] messages.
    history: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class HistoryOut(BaseModel):
    format: Literal["messages", "turns"]
    history: list[dict[str, str]]
    opted_out: bool = False


def _public(model: type[BaseModel], row: Any, **extra: Any) -> Any:
    # getattr, not model_dump: it reloads the attributes a commit expired.
    return model.model_validate({name: extra[name] if name in extra else getattr(row, name) for name in model.model_fields})


def lead_of(db: Session, workspace: Workspace, lead_id: int) -> Lead:
    lead = db.get(Lead, lead_id)
    if lead is None or lead.workspace_id != workspace.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"lead {lead_id} not found")
    return lead


def new_lead(workspace: Workspace, body: LeadCreate, now: datetime) -> Lead:
    lead = Lead(workspace_id=workspace.id, **body.model_dump(exclude={"external_id", "tags"}), external_id=body.external_id or body.phone, tags=[t.value for t in body.tags])
    if body.consent:
        lead.consent_at, lead.consent_source = now, "api"
    if body.stage is LeadStage.SUPPRESSED:  # a do-not-call entry: imported as an opt-out
        lead.opted_out_at, lead.opt_out_source = now, OptOutSource.API
    return lead


def opt_out(lead: Lead, source: OptOutSource) -> None:
    """Final: the first opt-out is kept, and nothing moves the lead out of SUPPRESSED."""
    if lead.opted_out_at is None:
        lead.opted_out_at, lead.opt_out_source = utcnow(), source
    lead.stage, lead.updated_at = LeadStage.SUPPRESSED, utcnow()


def has_tag(db: Session, tag: LeadTag):
    if db.get_bind().dialect.name == "postgresql":
        return type_coerce(Lead.tags, JSONB).contains([tag.value])
    return text("EXISTS (SELECT 1 FROM json_each(lead.tags) WHERE json_each.value = :tag)").bindparams(tag=tag.value)


@router.post("/leads", status_code=status.HTTP_201_CREATED, response_model=LeadPublic)
def create_lead(body: LeadCreate, workspace: CurrentWorkspace, db: Db) -> LeadPublic:
    lead = new_lead(workspace, body, utcnow())
    db.add(lead)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"a lead with phone {body.phone} already exists in this workspace") from None
    return _public(LeadPublic, lead)


@router.post("/leads/import", response_model=ImportReport, openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}})
async def import_leads(request: Request, workspace: CurrentWorkspace, db: Db) -> ImportReport:
    """CSV with a header row (phone required; name, external_id, timezone, consent, stage, tags
    separated by ';'). Good rows are stored, bad rows reported by row and field."""
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"import at most {MAX_IMPORT_BYTES} bytes")
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        columns = [c.strip() for c in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"not a UTF-8 CSV file: {exc}") from None
    unknown = [c for c in columns if c not in IMPORT_COLUMNS]
    if "phone" not in columns or unknown:
        detail = f"unknown column {shown(unknown[0])}" if unknown else "the header must have a phone column"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{detail}; columns: {', '.join(IMPORT_COLUMNS)}")
    reader.fieldnames = columns

    report = ImportReport(created=0, lead_ids=[], errors=[])
    seen: set[str] = set()
    now = utcnow()
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"malformed CSV: {exc}") from None
    if len(rows) > MAX_IMPORT_ROWS:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"import at most {MAX_IMPORT_ROWS} rows at a time")
    for number, row in enumerate(rows, start=1):
        if None in row:  # more cells than header columns
            report.errors.append(ImportRowError(row=number, field="row", error=f"{len(row[None])} cells more than the header has"))
            continue
        values = {key: value for key, value in row.items() if value not in (None, "")}
        try:
            body = LeadCreate.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "row"
                report.errors.append(ImportRowError(row=number, field=field, error=error["msg"].removeprefix("Value error, ")))
            continue
        if body.phone in seen:
            report.errors.append(ImportRowError(row=number, field="phone", error=f"phone {body.phone} appears earlier in this file"))
            continue
        seen.add(body.phone)
        lead = new_lead(workspace, body, now)
        try:
            with db.begin_nested():
                db.add(lead)
        except IntegrityError:
            report.errors.append(ImportRowError(row=number, field="phone", error=f"a lead with phone {body.phone} already exists"))
            continue
        report.lead_ids.append(lead.id)
    db.commit()
    report.created = len(report.lead_ids)
    return report


@router.get("/leads", response_model=list[LeadPublic])
def list_leads(
    workspace: CurrentWorkspace,
    db: Db,
    stage: LeadStage | None = None,
    tag: LeadTag | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[LeadPublic]:
    query = select(Lead).where(Lead.workspace_id == workspace.id)
    if stage is not None:
        query = query.where(Lead.stage == stage)
    if tag is not None:
        query = query.where(has_tag(db, tag))
    rows = db.exec(query.order_by(col(Lead.id)).offset(offset).limit(limit)).all()
    return [_public(LeadPublic, row) for row in rows]


@router.get("/leads/{lead_id}", response_model=LeadDetail)
def get_lead(lead_id: int, workspace: CurrentWorkspace, db: Db, messages_per_thread: Annotated[int, Query(ge=0, le=500)] = 100) -> LeadDetail:
    lead = lead_of(db, workspace, lead_id)
    threads = db.exec(select(ConversationThread).where(ConversationThread.lead_id == lead.id).order_by(col(ConversationThread.id))).all()
    thread_views = []
    for thread in threads:
        newest = db.exec(
            select(ChatMessage).where(ChatMessage.thread_id == thread.id).order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc()).limit(messages_per_thread)
        ).all()
        messages = [_public(MessagePublic, m, role=as_message(m)["role"]) for m in reversed(newest)]
        thread_views.append(_public(ThreadPublic, thread, messages=messages))
    meetings = db.exec(select(Meeting).where(Meeting.lead_id == lead.id).order_by(col(Meeting.id))).all()
    return _public(LeadDetail, lead, threads=thread_views, decisions=_decisions(db, lead), meetings=[_public(MeetingPublic, m) for m in meetings])


def _decisions(db: Session, lead: Lead, limit: int = 100) -> list[DecisionPublic]:
    rows = db.exec(select(PolicyDecision).where(PolicyDecision.lead_id == lead.id).order_by(col(PolicyDecision.created_at).desc(), col(PolicyDecision.id).desc()).limit(limit)).all()
    return [_public(DecisionPublic, row) for row in rows]


@router.get("/leads/{lead_id}/decisions", response_model=list[DecisionPublic])
def lead_decisions(lead_id: int, workspace: CurrentWorkspace, db: Db, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DecisionPublic]:
    """The outreach policy's decisions about this lead, newest first."""
    return _decisions(db, lead_of(db, workspace, lead_id), limit)


@router.post("/leads/{lead_id}/opt-out", response_model=LeadPublic)
def opt_out_lead(lead_id: int, workspace: CurrentWorkspace, db: Db) -> LeadPublic:
    lead = lead_of(db, workspace, lead_id)
    opt_out(lead, OptOutSource.API)
    db.add(lead)
    db.commit()
    return _public(LeadPublic, lead)


@router.get("/leads/{lead_id}/history", response_model=HistoryOut)
def read_history(
    lead_id: int, workspace: CurrentWorkspace, db: Db, format: Literal["messages", "turns"] = "messages", limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> HistoryOut:
    """Every channel, oldest first, in the shape asked for."""
    messages = [as_message(m) for m in stored_messages(db, lead_of(db, workspace, lead_id).id, limit)]
    return HistoryOut(format=format, history=messages if format == "messages" else messages_to_turns(messages))


def is_sms_opt_out(text_message: str) -> bool:
    said = " ".join(text_message.lower().split()).strip(" .!")
    return said in SMS_STOP_WORDS or classify(text_message) is Intent.OPT_OUT


@router.post("/leads/{lead_id}/history", status_code=status.HTTP_201_CREATED, response_model=HistoryOut)
def append_history(lead_id: int, workspace: CurrentWorkspace, db: Db, body: Annotated[HistoryIn, Body()]) -> HistoryOut:
    """Store messages exchanged elsewhere (an SMS conversation, an earlier call) in the lead's
    thread for that channel; an SMS from the lead that says STOP opts it out for good."""
    lead = lead_of(db, workspace, lead_id)
    try:
        messages = as_messages(body.history)
    except HistoryFormatError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    too_long = next((i for i, m in enumerate(messages) if len(m["content"]) > 4000), None)
    if too_long is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"message {too_long}: content is longer than 4000 characters")
    thread = thread_for(db, lead, body.channel)
    for message in messages:
        db.add(new_message(thread, message))
    opted_out = body.channel is Channel.SMS and any(m["role"] == "user" and is_sms_opt_out(m["content"]) for m in messages)
    if opted_out:
        opt_out(lead, OptOutSource.SMS)
        db.add(lead)
    db.commit()
    return HistoryOut(format="messages", history=messages, opted_out=opted_out)
