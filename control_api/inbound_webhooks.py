"""A lead or message from another system: stored in the lead's external thread, answered for that system to deliver.

The conversation rules are the SMS ones (control_api/telephony/sms_conversation.py: STOP, HELP,
take-over, the agent's reply with the whole history); only the delivery differs: the reply is
stored as `pending` and the other system fetches it (GET /webhooks/leads/{id}/responses) and
reports how its delivery went.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import HTTPException, status
from sqlmodel import Session, col, select

from control_api.telephony.sms_conversation import Conversation, decide_reply, store_reply, write_reply
from models.conversation_history import new_message, thread_for
from models.domain import ChatMessage, Lead, Workspace
from models.enums import Channel, DeliveryStatus, OptOutSource, SenderType
from models.log_config import get_logger
from models.webhook_schemas import AgentResponse, WebhookLeadIn, WebhookMessageIn
from services import Services

log = get_logger(__name__)


def _lead_by_external_id(db: Session, workspace: Workspace, external_id: str) -> Lead | None:
    return db.exec(select(Lead).where(Lead.workspace_id == workspace.id, Lead.external_id == external_id)).first()


def _conversation(db: Session, lead: Lead, workspace: Workspace, reply, needs_agent: bool) -> Conversation:
    db.refresh(workspace)
    db.refresh(lead)
    return Conversation.read(db, lead, workspace, "", reply, needs_agent)


def _store_incoming(
    db: Session,
    lead: Lead,
    content: str,
    platform: str | None,
    conversation_id: str | None,
    message_id: str | None,
    now: datetime,
) -> None:
    thread = thread_for(db, lead, Channel.EXTERNAL)
    db.add(
        new_message(
            thread,
            {"role": "user", "content": content},
            external_message_id=message_id,
            external_conversation_id=conversation_id,
            external_platform=platform,
            delivery_status=DeliveryStatus.RECEIVED,
            created_at=now,
            sent_at=now,
        )
    )


def receive_lead(db: Session, workspace: Workspace, body: WebhookLeadIn, now: datetime) -> tuple[Lead, Conversation | None]:
    """The lead (created, or linked when its phone is known already); None as conversation when it was seen before."""
    known = _lead_by_external_id(db, workspace, body.external_id)
    if known is not None:
        return known, None
    lead = db.exec(select(Lead).where(Lead.workspace_id == workspace.id, Lead.phone == body.phone)).first()
    if lead is None:
        lead = Lead(workspace_id=workspace.id, external_id=body.external_id, phone=body.phone, name=body.name)  # type: ignore[arg-type]
    else:
        lead.external_id, lead.name = body.external_id, lead.name or body.name
    lead.updated_at = now
    db.add(lead)
    db.flush()
    was_opted_out = lead.opted_out_at is not None
    if body.message:
        _store_incoming(db, lead, body.message, body.source, body.external_conversation_id, None, now)
        reply, needs_agent = decide_reply(db, lead, workspace, body.message, was_opted_out, now, OptOutSource.API)
    else:
        reply, needs_agent = None, not was_opted_out  # the agent's first message
    db.add(lead)
    db.commit()
    return lead, _conversation(db, lead, workspace, reply, needs_agent)


def receive_message(db: Session, workspace: Workspace, body: WebhookMessageIn, now: datetime) -> tuple[Lead, Conversation | None]:
    lead = _lead_by_external_id(db, workspace, body.lead_external_id)
    if lead is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"lead_external_id {body.lead_external_id[:60]!r} is not a known lead"
        )
    seen = db.exec(
        select(ChatMessage.id).where(ChatMessage.lead_id == lead.id, ChatMessage.external_message_id == body.external_id)
    ).first()
    if seen is not None:
        return lead, None
    platform = _platform_of(db, lead)
    was_opted_out = lead.opted_out_at is not None
    _store_incoming(db, lead, body.content, platform, body.external_conversation_id, body.external_id, now)
    reply, needs_agent = decide_reply(db, lead, workspace, body.content, was_opted_out, now, OptOutSource.API)
    lead.updated_at = now
    db.add(lead)
    db.commit()
    return lead, _conversation(db, lead, workspace, reply, needs_agent)


def _platform_of(db: Session, lead: Lead) -> str | None:
    return db.exec(
        select(ChatMessage.external_platform)
        .where(ChatMessage.lead_id == lead.id, col(ChatMessage.external_platform).is_not(None))
        .order_by(col(ChatMessage.id))
        .limit(1)
    ).first()


def _latest_response(services: Services, lead_id: int) -> AgentResponse | None:
    with Session(services.engine) as db:
        message = db.exec(
            select(ChatMessage)
            .where(ChatMessage.lead_id == lead_id, ChatMessage.sender_type == SenderType.AGENT)
            .order_by(col(ChatMessage.id).desc())
            .limit(1)
        ).first()
        return AgentResponse.model_validate(message, from_attributes=True) if message is not None else None


async def answer_for_other_system(
    services: Services, conversation: Conversation, body: str, platform: str | None, conversation_id: str | None
) -> AgentResponse | None:
    """Write the agent's reply and keep it pending for the other system; None when nobody answers."""
    written = await write_reply(services, conversation, body)
    if written is None:
        return None
    await asyncio.to_thread(
        store_reply,
        services,
        conversation,
        written,
        None,
        DeliveryStatus.PENDING,
        None,
        channel=Channel.EXTERNAL,
        external_platform=platform,
        external_conversation_id=conversation_id,
        sent_at=None,
    )
    log.info("webhook_reply_pending", lead_id=conversation.lead_id, step=written.reply.step.value, model=written.model)
    return await asyncio.to_thread(_latest_response, services, conversation.lead_id)
