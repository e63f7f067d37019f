"""Inbound lead webhooks: another system's leads and messages in, the agent's replies out for it to deliver.

Every route is authenticated by the workspace's webhook secret (control_api/webhook_signature.py),
not by an API key: POST /webhooks/leads, POST /webhooks/messages, GET /webhooks/leads/{id}/responses
and PATCH /webhooks/responses/{id} (the other system reports how its delivery went).
POST /workspaces/{id}/webhook-secret (the workspace's API key) issues or rotates the secret.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ValidationError
from sqlmodel import Session, col, select

from control_api.deps import get_db, get_services
from control_api.inbound_webhooks import answer_for_other_system, receive_lead, receive_message
from control_api.routes.twilio_messages import moves_forward
from control_api.routes.workspaces import own_workspace
from control_api.webhook_signature import signed_webhook
from control_api.workspace_auth import CurrentWorkspace
from models.call_job import utcnow
from models.domain import ChatMessage, ConversationThread, Lead
from models.enums import Channel, DeliveryStatus, SenderType
from models.log_config import get_logger
from models.webhook_schemas import (
    AgentResponse,
    DeliveryUpdate,
    WebhookAccepted,
    WebhookLeadIn,
    WebhookMessageIn,
    WebhookSecretIssued,
)
from services import Services

log = get_logger(__name__)
router = APIRouter(tags=["webhooks"])

Db = Annotated[Session, Depends(get_db)]
SIGNED: dict[int | str, dict[str, Any]] = {401: {"description": "missing, wrong or stale X-Webhook-Signature"}}


Model = TypeVar("Model", bound=BaseModel)


def _parsed(model: type[Model], body: bytes) -> Model:
    """The body validated only after its signature: an unsigned caller learns nothing about the schema."""
    try:
        return model.model_validate(json.loads(body or b"null"))
    except json.JSONDecodeError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="the body is not JSON") from None
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="; ".join(errors)[:500]) from None


@router.post("/workspaces/{workspace_id}/webhook-secret", status_code=status.HTTP_201_CREATED, response_model=WebhookSecretIssued)
def issue_webhook_secret(workspace_id: int, workspace: CurrentWorkspace, db: Db) -> WebhookSecretIssued:
    own_workspace(workspace_id, workspace)
    workspace.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    db.add(workspace)
    db.commit()
    return WebhookSecretIssued(webhook_secret=workspace.webhook_secret)


@router.post("/webhooks/leads", response_model=WebhookAccepted, responses=SIGNED)
async def lead_webhook(
    request: Request, response: Response, db: Db, services: Annotated[Services, Depends(get_services)]
) -> WebhookAccepted:
    workspace, raw = await signed_webhook(request, db)
    body = _parsed(WebhookLeadIn, raw)
    lead, conversation = receive_lead(db, workspace, body, utcnow())
    if conversation is None:
        return WebhookAccepted(lead_id=lead.id, created=False)
    response.status_code = status.HTTP_201_CREATED
    reply = await answer_for_other_system(services, conversation, body.message or "", body.source, body.external_conversation_id)
    return WebhookAccepted(lead_id=conversation.lead_id, created=True, response=reply)


@router.post("/webhooks/messages", response_model=WebhookAccepted, responses=SIGNED)
async def message_webhook(
    request: Request, response: Response, db: Db, services: Annotated[Services, Depends(get_services)]
) -> WebhookAccepted:
    workspace, raw = await signed_webhook(request, db)
    body = _parsed(WebhookMessageIn, raw)
    lead, conversation = receive_message(db, workspace, body, utcnow())
    if conversation is None:
        return WebhookAccepted(lead_id=lead.id, created=False)
    response.status_code = status.HTTP_201_CREATED
    platform = await asyncio.to_thread(_platform, services, conversation.lead_id)
    reply = await answer_for_other_system(services, conversation, body.content, platform, body.external_conversation_id)
    return WebhookAccepted(lead_id=conversation.lead_id, created=True, response=reply)


def _platform(services: Services, lead_id: int) -> str | None:
    with Session(services.engine) as db:
        message = db.exec(
            select(ChatMessage).where(ChatMessage.lead_id == lead_id, col(ChatMessage.external_platform).is_not(None)).limit(1)
        ).first()
        return message.external_platform if message else None


@router.get("/webhooks/leads/{lead_id}/responses", response_model=list[AgentResponse], responses=SIGNED)
async def agent_responses(
    request: Request, lead_id: int, db: Db, delivery_status: DeliveryStatus | None = None
) -> list[AgentResponse]:
    """The agent's replies in the lead's external conversation, oldest first (only one status when asked)."""
    workspace, _ = await signed_webhook(request, db)
    lead = db.get(Lead, lead_id)
    if lead is None or lead.workspace_id != workspace.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"lead {lead_id} not found")
    query = (
        select(ChatMessage)
        .join(ConversationThread, col(ConversationThread.id) == col(ChatMessage.thread_id))
        .where(ChatMessage.lead_id == lead_id, ChatMessage.sender_type == SenderType.AGENT)
        .where(ConversationThread.channel == Channel.EXTERNAL)
    )
    if delivery_status is not None:
        query = query.where(ChatMessage.delivery_status == delivery_status)
    rows = db.exec(query.order_by(col(ChatMessage.id))).all()
    return [AgentResponse.model_validate(row, from_attributes=True) for row in rows]


@router.patch("/webhooks/responses/{message_id}", response_model=AgentResponse, responses=SIGNED)
async def update_delivery(request: Request, message_id: int, db: Db) -> AgentResponse:
    """The other system reports a reply's delivery; a status only moves forward."""
    workspace, raw = await signed_webhook(request, db)
    body = _parsed(DeliveryUpdate, raw)
    message = db.get(ChatMessage, message_id)
    lead = db.get(Lead, message.lead_id) if message is not None else None
    if message is None or lead is None or lead.workspace_id != workspace.id or message.sender_type is not SenderType.AGENT:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"response {message_id} not found")
    reported = DeliveryStatus(body.delivery_status)
    if moves_forward(message.delivery_status, reported):
        now = utcnow()
        message.delivery_status, message.updated_at = reported, now
        if reported is DeliveryStatus.SENT_TO_EXTERNAL:
            message.sent_at = message.sent_at or now
        if reported is DeliveryStatus.DELIVERED:
            message.delivered_at = message.delivered_at or now
        if body.error_message:
            message.error_message = body.error_message
        db.add(message)
        db.commit()
        db.refresh(message)
    return AgentResponse.model_validate(message, from_attributes=True)
