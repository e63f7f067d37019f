"""A text to one of a workspace's numbers: stored in the lead's SMS thread, then answered (or not).

In order: a STOP word (the one list, control_api/routes/leads.py) opts the lead out for good and
is confirmed once; a suppressed lead gets nothing more; HELP gets the business's name; a
conversation a person took over gets no agent reply until that person has been silent for the
workspace's ai_takeover_delay_seconds (then the agent steps back in); anything else gets the
agent's reply. Every reply goes out from the number that was texted, over Twilio's REST API with
a delivery callback, and is stored in the thread with the model, response time and token usage.
Twilio retries a webhook it got no answer to: a MessageSid already stored is not answered twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import HTTPException, status
from sqlmodel import Session, col, select

from control_api.routes.leads import is_sms_opt_out, opt_out
from control_api.telephony.inbound_calls import caller_e164, lead_for_caller, number_called
from models.call_job import utcnow
from models.call_request import mask_phone
from models.column_types import as_utc
from models.conversation_history import history_for_context, new_message, record_outgoing_text, thread_for
from models.domain import ChatMessage, Lead, Meeting, PhoneNumber, Workspace
from models.enums import CallOutcome, Channel, DeliveryStatus, LeadStage, OptOutSource, PhoneNumberStatus, SenderType
from models.log_config import get_logger
from prompts.inbound_context import business_name
from prompts.sms_replies import SmsReply, SmsStep, help_reply, is_help, rule_based_reply, stop_confirmation
from services import Services
from services.sms_responder import RULES_MODEL, WrittenReply
from services.twilio_account import message_status_url

log = get_logger(__name__)

TEXT_MAX = 1600


@dataclass
class IncomingText:
    message_sid: str
    sender: str
    number: str
    body: str


@dataclass
class Conversation:
    """What the reply needs, read in one transaction with the incoming text's storing."""

    lead_id: int
    lead_phone: str
    lead_name: str | None
    from_number: str
    workspace: Workspace
    reply: SmsReply | None
    needs_agent: bool
    last_step: SmsStep | None

    @classmethod
    def read(
        cls, db: Session, lead: Lead, workspace: Workspace, from_number: str, reply: SmsReply | None, needs_agent: bool
    ) -> Conversation:
        """The conversation as the transaction that stored the incoming text leaves it; the workspace detached for the reply."""
        conversation = cls(
            lead_id=lead.id,  # type: ignore[arg-type]
            lead_phone=lead.phone,
            lead_name=lead.name,
            from_number=from_number,
            workspace=workspace,
            reply=reply,
            needs_agent=needs_agent,
            last_step=last_step(db, lead.id),  # type: ignore[arg-type]
        )
        db.expunge(workspace)
        return conversation


def agent_may_reply(lead: Lead, workspace: Workspace, last_human_at: datetime | None, now: datetime) -> bool:
    """False while a person handles the conversation: until they have been silent for ai_takeover_delay_seconds."""
    if lead.stage is not LeadStage.TAKE_OVER:
        return True
    last_seen = max((as_utc(t) for t in (lead.taken_over_at, last_human_at) if t is not None), default=None)
    return last_seen is None or now - last_seen >= timedelta(seconds=workspace.ai_takeover_delay_seconds)


def _last(db: Session, lead_id: int, sender: SenderType) -> ChatMessage | None:
    return db.exec(
        select(ChatMessage)
        .where(ChatMessage.lead_id == lead_id, ChatMessage.sender_type == sender)
        .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())
        .limit(1)
    ).first()


def last_step(db: Session, lead_id: int) -> SmsStep | None:
    last = _last(db, lead_id, SenderType.AGENT)
    step = (last.message_metadata or {}).get("step") if last is not None else None
    return SmsStep(step) if isinstance(step, str) and step in {s.value for s in SmsStep} else None


def decide_reply(
    db: Session, lead: Lead, workspace: Workspace, body: str, was_opted_out: bool, now: datetime, source: OptOutSource
) -> tuple[SmsReply | None, bool]:
    """What a lead's new message gets: a fixed reply (STOP's confirmation, HELP), the agent's (True), or nothing."""
    business = business_name(workspace)
    if is_sms_opt_out(body):
        opt_out(lead, source)
        return (None if was_opted_out else stop_confirmation(workspace.language, business)), False
    if lead.stage is LeadStage.SUPPRESSED:
        return None, False
    if is_help(body):
        return help_reply(workspace.language, business), False
    last_human = _last(db, lead.id, SenderType.HUMAN)  # type: ignore[arg-type]
    needs_agent = agent_may_reply(lead, workspace, last_human.created_at if last_human else None, now)
    if needs_agent and lead.stage is LeadStage.TAKE_OVER:
        log.info("agent_steps_back_in", lead_id=lead.id)
        lead.stage, lead.taken_over_at = LeadStage.ENGAGED, None
    elif needs_agent and lead.stage in (LeadStage.NEW, LeadStage.CONTACTED):
        lead.stage = LeadStage.ENGAGED
    return None, needs_agent


def _receive(services: Services, text: IncomingText, now: datetime) -> Conversation | None:
    with Session(services.engine) as db:
        number = number_called(db, text.number)
        if number is None or "sms" not in number.capabilities:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"To: {mask_phone(text.number)} is not a registered SMS number")
        workspace = db.get(Workspace, number.workspace_id)
        phone = caller_e164(text.sender)
        if workspace is None or phone is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="From is not an E.164 number")
        if db.exec(select(ChatMessage.id).where(ChatMessage.external_message_id == text.message_sid)).first() is not None:
            return None  # Twilio's retry of a text already stored (and answered)
        lead = lead_for_caller(db, workspace, phone, now)
        was_opted_out = lead.opted_out_at is not None
        thread = thread_for(db, lead, Channel.SMS)
        db.add(
            new_message(
                thread,
                {"role": "user", "content": text.body},
                external_message_id=text.message_sid,
                external_platform="twilio",
                delivery_status=DeliveryStatus.RECEIVED,
                created_at=now,
                sent_at=now,
            )
        )
        reply, needs_agent = decide_reply(db, lead, workspace, text.body, was_opted_out, now, OptOutSource.SMS)
        lead.updated_at = now
        db.add(lead)
        db.commit()
        db.refresh(workspace)
        db.refresh(lead)
        return Conversation.read(db, lead, workspace, number.phone_number, reply, needs_agent)


async def write_reply(services: Services, conversation: Conversation, body: str) -> WrittenReply | None:
    """The reply to the lead's message: the fixed one decided on, the agent's, or None (nobody answers)."""
    workspace = conversation.workspace
    if conversation.reply is not None:
        return WrittenReply(conversation.reply, RULES_MODEL, 0)
    if not conversation.needs_agent:
        return None
    rules = rule_based_reply(
        body,
        language=workspace.language,
        business=business_name(workspace),
        lead_name=conversation.lead_name,
        last_step=conversation.last_step,
    )
    history = await asyncio.to_thread(_history, services, conversation.lead_id)
    return await services.sms_responder.write(
        rules, history, language=workspace.language, business=business_name(workspace), trade=workspace.trade
    )


def _history(services: Services, lead_id: int) -> list[dict[str, str]]:
    with Session(services.engine) as db:
        return history_for_context(db, lead_id)


def store_reply(
    services: Services,
    conversation: Conversation,
    written: WrittenReply,
    message_sid: str | None,
    delivery: DeliveryStatus,
    error: str | None,
    **message_fields: Any,
) -> None:
    """The reply in the lead's thread (SMS unless `channel` says otherwise), and what it taught us about the lead."""
    reply = written.reply
    with Session(services.engine) as db:
        lead = db.get(Lead, conversation.lead_id)
        if lead is None:
            return
        record_outgoing_text(
            db,
            lead,
            reply.text,
            message_sid,
            delivery_status=delivery,
            error_message=error,
            model_used=written.model,
            response_time_ms=written.response_time_ms,
            token_usage=written.token_usage,
            message_metadata={"step": reply.step.value},
            **message_fields,
        )
        if reply.name and lead.name is None:
            lead.name = reply.name
        if reply.outcome is CallOutcome.MEETING_BOOKED and lead.stage is not LeadStage.SUPPRESSED:
            lead.stage = LeadStage.OUTCOME_APPOINTMENT
            db.add(Meeting(workspace_id=lead.workspace_id, lead_id=conversation.lead_id, slot_text=reply.meeting_time))
        lead.updated_at = utcnow()
        db.add(lead)
        db.commit()


async def answer_text(services: Services, text: IncomingText, now: datetime | None = None) -> str | None:
    """Store the incoming text and answer it; returns the reply to put in the TwiML when Twilio's REST API is not set up."""
    conversation = await asyncio.to_thread(_receive, services, text, now or utcnow())
    if conversation is None:
        return None
    written = await write_reply(services, conversation, text.body)
    if written is None:
        log.info("incoming_text_not_answered", lead_id=conversation.lead_id, reason="suppressed_or_taken_over")
        return None
    message_sid, delivery, error = None, DeliveryStatus.SENT_TO_EXTERNAL, None
    if services.twilio is not None:
        try:
            message_sid = await services.twilio.send_sms(
                conversation.lead_phone,
                written.reply.text,
                from_=conversation.from_number,
                status_callback=message_status_url(services.settings),
            )
            delivery = DeliveryStatus.QUEUED
        except Exception as exc:  # kept in the thread as failed: a person can see it and follow up
            delivery, error = DeliveryStatus.FAILED, f"{type(exc).__name__}: {str(exc)[:300]}"
            log.error("sms_reply_not_sent", lead_id=conversation.lead_id, error=type(exc).__name__)
    await asyncio.to_thread(store_reply, services, conversation, written, message_sid, delivery, error)
    log.info("incoming_text_answered", lead_id=conversation.lead_id, step=written.reply.step.value, model=written.model)
    return written.reply.text if services.twilio is None else None


def phone_number_of(db: Session, workspace_id: int) -> PhoneNumber | None:
    """The number a person's text to a lead goes out from: the workspace's first active SMS number."""
    numbers = db.exec(select(PhoneNumber).where(PhoneNumber.workspace_id == workspace_id).order_by(col(PhoneNumber.id))).all()
    return next((n for n in numbers if "sms" in n.capabilities and n.status is PhoneNumberStatus.ACTIVE), None)
