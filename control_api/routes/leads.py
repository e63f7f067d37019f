"""Leads of the key's workspace: create, import CSV, list, read with threads and decisions,
opt out (final), and conversation history in either shape.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from sqlalchemy import text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from control_api.deps import get_db
from control_api.lead_import import import_csv, new_lead
from control_api.workspace_auth import CurrentWorkspace
from models.call_job import utcnow
from models.conversation_history import (
    HistoryFormatError,
    as_message,
    as_messages,
    messages_to_turns,
    new_message,
    stored_messages,
    thread_for,
)
from models.domain import ChatMessage, ConversationThread, Lead, Meeting, PolicyDecision, Workspace
from models.enums import Channel, LeadStage, LeadTag, OptOutSource
from models.lead_schemas import (
    DecisionPublic,
    HistoryIn,
    HistoryOut,
    ImportReport,
    LeadCreate,
    LeadDetail,
    LeadPublic,
    MeetingPublic,
    MessagePublic,
    ThreadPublic,
)
from models.row_views import view_of
from prompts.caller_intent import Intent, classify

router = APIRouter(tags=["leads"])

Db = Annotated[Session, Depends(get_db)]
# Carrier-standard SMS opt-out keywords; any of them alone is an opt-out, and so is "stop calling me".
# Hebrew: "remove", "removal", "stop".
SMS_STOP_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "opt out", "הסר", "הסרה", "עצור"}
)


def lead_of(db: Session, workspace: Workspace, lead_id: int) -> Lead:
    lead = db.get(Lead, lead_id)
    if lead is None or lead.workspace_id != workspace.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"lead {lead_id} not found")
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
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"a lead with phone {body.phone} already exists in this workspace"
        ) from None
    return view_of(LeadPublic, lead)


@router.post(
    "/leads/import",
    response_model=ImportReport,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_leads(request: Request, workspace: CurrentWorkspace, db: Db) -> ImportReport:
    """CSV with a header row (phone required; name, external_id, timezone, consent, stage, tags
    separated by ';'). Good rows are stored, bad rows reported by row and field."""
    return import_csv(await request.body(), workspace, db)


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
    return [view_of(LeadPublic, row) for row in rows]


@router.get("/leads/{lead_id}", response_model=LeadDetail)
def get_lead(
    lead_id: int, workspace: CurrentWorkspace, db: Db, messages_per_thread: Annotated[int, Query(ge=0, le=500)] = 100
) -> LeadDetail:
    lead = lead_of(db, workspace, lead_id)
    threads = db.exec(
        select(ConversationThread).where(ConversationThread.lead_id == lead.id).order_by(col(ConversationThread.id))
    ).all()
    thread_views = []
    for thread in threads:
        newest = db.exec(
            select(ChatMessage)
            .where(ChatMessage.thread_id == thread.id)
            .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())
            .limit(messages_per_thread)
        ).all()
        messages = [view_of(MessagePublic, m, role=as_message(m)["role"]) for m in reversed(newest)]
        thread_views.append(view_of(ThreadPublic, thread, messages=messages))
    meetings = db.exec(select(Meeting).where(Meeting.lead_id == lead.id).order_by(col(Meeting.id))).all()
    return view_of(
        LeadDetail,
        lead,
        threads=thread_views,
        decisions=_decisions(db, lead),
        meetings=[view_of(MeetingPublic, m) for m in meetings],
    )


def _decisions(db: Session, lead: Lead, limit: int = 100) -> list[DecisionPublic]:
    rows = db.exec(
        select(PolicyDecision)
        .where(PolicyDecision.lead_id == lead.id)
        .order_by(col(PolicyDecision.created_at).desc(), col(PolicyDecision.id).desc())
        .limit(limit)
    ).all()
    return [view_of(DecisionPublic, row) for row in rows]


@router.get("/leads/{lead_id}/decisions", response_model=list[DecisionPublic])
def lead_decisions(
    lead_id: int, workspace: CurrentWorkspace, db: Db, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DecisionPublic]:
    """The outreach policy's decisions about this lead, newest first."""
    return _decisions(db, lead_of(db, workspace, lead_id), limit)


@router.post("/leads/{lead_id}/opt-out", response_model=LeadPublic)
def opt_out_lead(lead_id: int, workspace: CurrentWorkspace, db: Db) -> LeadPublic:
    lead = lead_of(db, workspace, lead_id)
    opt_out(lead, OptOutSource.API)
    db.add(lead)
    db.commit()
    return view_of(LeadPublic, lead)


@router.get("/leads/{lead_id}/history", response_model=HistoryOut)
def read_history(
    lead_id: int,
    workspace: CurrentWorkspace,
    db: Db,
    format: Literal["messages", "turns"] = "messages",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
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
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"message {too_long}: content is longer than 4000 characters"
        )
    thread = thread_for(db, lead, body.channel)
    for message in messages:
        db.add(new_message(thread, message))
    opted_out = body.channel is Channel.SMS and any(m["role"] == "user" and is_sms_opt_out(m["content"]) for m in messages)
    if opted_out:
        opt_out(lead, OptOutSource.SMS)
        db.add(lead)
    db.commit()
    return HistoryOut(format="messages", history=messages, opted_out=opted_out)
