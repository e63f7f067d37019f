"""Campaigns of the key's workspace: start one over a list of leads, follow its counts, pause, resume, cancel.

The database work runs in a worker thread (a campaign over thousands of leads must not stall the
media of live calls); the queue then calls the leads at the campaign's pace.
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from sqlmodel import Session

from call_queue.campaigns import CampaignRefused, CampaignStateConflict, counts, create_campaign, move_campaign
from control_api.deps import get_services
from control_api.routes.workspaces import own_workspace
from control_api.workspace_auth import CurrentWorkspace
from models.call_job import utcnow
from models.call_queue import Campaign
from models.campaign_schemas import CampaignCreate, CampaignCreated, CampaignPublic
from models.log_config import get_logger
from services import Services

log = get_logger(__name__)
router = APIRouter(tags=["campaigns"])

ServicesDep = Annotated[Services, Depends(get_services)]


def _public(db: Session, campaign: Campaign) -> CampaignPublic:
    assert campaign.id is not None
    return CampaignPublic(**campaign.model_dump(), counts=counts(db, campaign.id))


def _read(services: Services, workspace_id: int, campaign_id: int) -> CampaignPublic:
    with Session(services.engine) as db:
        campaign = db.get(Campaign, campaign_id)
        if campaign is None or campaign.workspace_id != workspace_id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"campaign {campaign_id} not found")
        return _public(db, campaign)


@router.post(
    "/workspaces/{workspace_id}/campaigns",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignCreated,
)
async def start_campaign(
    workspace_id: int, body: CampaignCreate, workspace: CurrentWorkspace, services: ServicesDep, request: Request
) -> CampaignCreated:
    own_workspace(workspace_id, workspace)
    try:
        created = await asyncio.to_thread(create_campaign, services.engine, services.settings, workspace_id, body, utcnow())
    except CampaignRefused as refused:
        raise RequestValidationError([{"loc": ("body", refused.field), "msg": str(refused), "type": "value_error"}]) from None
    assert created.campaign.id is not None
    public = await asyncio.to_thread(_read, services, workspace_id, created.campaign.id)
    log.info("campaign_started", campaign_id=created.campaign.id, skipped=len(created.skipped), **public.counts.model_dump())
    scheduler = getattr(request.app.state, "call_scheduler", None)
    if scheduler is not None:
        await scheduler.wake()
    return CampaignCreated(**public.model_dump(), skipped=created.skipped)


@router.get("/campaigns/{campaign_id}", response_model=CampaignPublic)
async def get_campaign(campaign_id: int, workspace: CurrentWorkspace, services: ServicesDep) -> CampaignPublic:
    assert workspace.id is not None
    return await asyncio.to_thread(_read, services, workspace.id, campaign_id)


async def _move(campaign_id: int, move: str, workspace: CurrentWorkspace, services: Services) -> CampaignPublic:
    assert workspace.id is not None
    await asyncio.to_thread(_read, services, workspace.id, campaign_id)  # 404 for another workspace's
    try:
        await asyncio.to_thread(move_campaign, services.engine, campaign_id, move, utcnow())
    except CampaignStateConflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(conflict)) from None
    log.info("campaign_moved", campaign_id=campaign_id, move=move)
    return await asyncio.to_thread(_read, services, workspace.id, campaign_id)


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignPublic, responses={409: {"description": "not active"}})
async def pause_campaign(campaign_id: int, workspace: CurrentWorkspace, services: ServicesDep) -> CampaignPublic:
    return await _move(campaign_id, "pause", workspace, services)


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignPublic, responses={409: {"description": "not paused"}})
async def resume_campaign(campaign_id: int, workspace: CurrentWorkspace, services: ServicesDep) -> CampaignPublic:
    return await _move(campaign_id, "resume", workspace, services)


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignPublic, responses={409: {"description": "finished"}})
async def cancel_campaign(campaign_id: int, workspace: CurrentWorkspace, services: ServicesDep) -> CampaignPublic:
    return await _move(campaign_id, "cancel", workspace, services)
