"""A campaign's life in the database: its leads queued (or skipped, each with its reason), its counts,
and pause, resume and cancel as conditional updates.

Each lead gets a first attempt due now (or at the policy's next window when only time rules stand in
the way); the queue paces them with the campaign's rate and concurrency limits. A lead is skipped,
and its skip stored as an attempt with the reason, when the policy refuses it for good (opted out,
no consent, attempts used up), when its number is no longer valid, or when it already has a live
call attempt (another campaign's, a request's): two campaigns over one list call nobody twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import uuid4

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from call_queue import attempt_store
from call_queue.attempt_store import LeadBusy
from call_queue.policy_facts import gather_facts
from models.call_queue import CallAttempt, Campaign
from models.campaign_schemas import CampaignCounts, CampaignCreate, SkippedLead
from models.domain import Lead, StrategyVersion, Workspace
from models.enums import AttemptStatus, CampaignStatus, StrategyStatus
from models.outreach_policy import NOT_ALLOWED, decide
from models.settings import Settings

UNKNOWN_LEAD = "unknown_lead"
INVALID_PHONE = "invalid_phone"
ALREADY_SCHEDULED = "already_in_a_live_call_attempt"


class CampaignRefused(Exception):
    """The request names something the workspace does not have (a field and why)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class CampaignStateConflict(Exception):
    """Pause, resume or cancel asked of a campaign in a state that does not allow it."""


@dataclass(frozen=True)
class CreatedCampaign:
    campaign: Campaign
    skipped: list[SkippedLead]


def _strategy(db: Session, workspace_id: int, strategy_version_id: int | None) -> StrategyVersion:
    if strategy_version_id is None:
        query = select(StrategyVersion).where(
            col(StrategyVersion.workspace_id) == workspace_id, col(StrategyVersion.status) == StrategyStatus.ACTIVE
        )
        active = db.exec(query).first()
        if active is None:
            raise CampaignRefused("strategy_version_id", "the workspace has no active strategy version: name one")
        return active
    strategy = db.get(StrategyVersion, strategy_version_id)
    if strategy is None or strategy.workspace_id != workspace_id:
        raise CampaignRefused("strategy_version_id", f"strategy version {strategy_version_id} not found in this workspace")
    return strategy


def _leads(db: Session, workspace_id: int, request: CampaignCreate) -> tuple[list[Lead], list[int]]:
    """The selected leads in a stable order, and the requested ids that name no lead of this workspace."""
    if request.lead_ids:
        wanted = list(dict.fromkeys(request.lead_ids))
        found = {
            lead.id: lead
            for lead in db.exec(select(Lead).where(col(Lead.workspace_id) == workspace_id, col(Lead.id).in_(wanted))).all()
        }
        return [found[i] for i in wanted if i in found], [i for i in wanted if i not in found]
    query = select(Lead).where(col(Lead.workspace_id) == workspace_id).order_by(col(Lead.id))
    if request.stages:
        query = query.where(col(Lead.stage).in_(request.stages))
    leads = list(db.exec(query).all())
    if request.tags:
        wanted_tags = set(request.tags)
        leads = [lead for lead in leads if wanted_tags & set(lead.tags)]
    return leads, []


def _valid_phone(phone: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return False


def _skip(db: Session, campaign: Campaign, lead_id: int, reason: str, now: datetime) -> None:
    assert campaign.id is not None
    db.add(
        CallAttempt(
            workspace_id=campaign.workspace_id,
            lead_id=lead_id,
            campaign_id=campaign.id,
            call_id=str(uuid4()),
            scheduled_for=now,
            status=AttemptStatus.SKIPPED,
            reason=reason,
            created_at=now,
            updated_at=now,
        )
    )


def create_campaign(
    engine: Engine, settings: Settings, workspace_id: int, request: CampaignCreate, now: datetime
) -> CreatedCampaign:
    with Session(engine) as db:
        workspace = db.get(Workspace, workspace_id)
        assert workspace is not None  # the caller's own workspace
        strategy = _strategy(db, workspace_id, request.strategy_version_id)
        assert strategy.id is not None
        leads, unknown = _leads(db, workspace_id, request)
        selection: dict[str, Any] = (
            {"lead_ids": request.lead_ids}
            if request.lead_ids
            else {"stages": [s.value for s in request.stages or []], "tags": request.tags or []}
        )
        campaign = Campaign(
            workspace_id=workspace_id,
            name=request.name,
            strategy_version_id=strategy.id,
            lead_selection=selection,
            call_template=request.call,
            calls_per_minute=request.calls_per_minute,
            max_concurrent_calls=request.max_concurrent_calls,
            max_attempts=request.retry.max_attempts,
            retry_backoff_minutes=request.retry.backoff_minutes,
            created_at=now,
            updated_at=now,
        )
        db.add(campaign)
        db.flush()
        skipped = [SkippedLead(lead_id=lead_id, reason=UNKNOWN_LEAD) for lead_id in unknown]
        for lead in leads:
            assert lead.id is not None
            reason = _lead_refusal(db, settings, workspace, lead, now)
            if reason is not None:
                skipped.append(SkippedLead(lead_id=lead.id, reason=reason))
                _skip(db, campaign, lead.id, reason, now)
                continue
            verdict = decide(gather_facts(db, workspace, lead, settings, now))
            at = now if verdict.allow_send or verdict.next_allowed_at is None else verdict.next_allowed_at
            request_fields = {**request.call, "phone": lead.phone, "consent": True}
            if lead.name:
                request_fields["name"] = lead.name
            try:
                attempt_store.schedule_call(
                    db,
                    workspace_id=workspace_id,
                    lead_id=lead.id,
                    call_request=request_fields,
                    scheduled_for=at,
                    now=now,
                    campaign_id=campaign.id,
                    reason=None if verdict.allow_send else verdict.reason_code.value,
                )
            except LeadBusy:
                skipped.append(SkippedLead(lead_id=lead.id, reason=ALREADY_SCHEDULED))
                _skip(db, campaign, lead.id, ALREADY_SCHEDULED, now)
        db.commit()
        db.refresh(campaign)
        assert campaign.id is not None
    # Nobody left to call (every lead skipped): finished at once.
    attempt_store.finish_campaign_if_done(engine, campaign.id, now)
    return CreatedCampaign(campaign, skipped)


def _lead_refusal(db: Session, settings: Settings, workspace: Workspace, lead: Lead, now: datetime) -> str | None:
    """Why this lead is not called at all (a hard refusal of the policy, a number that is not one), or None.

    Only the hard rules here: the time rules place the attempt, and the whole policy runs again,
    with its decision stored, right before each dial.
    """
    if not _valid_phone(lead.phone):
        return INVALID_PHONE
    verdict = decide(gather_facts(db, workspace, lead, settings, now))
    if not verdict.allow_send and verdict.reason_code in NOT_ALLOWED:
        return verdict.reason_code.value
    return None


def counts(db: Session, campaign_id: int) -> CampaignCounts:
    grouped = attempt_store.campaign_counts(db, campaign_id)
    by_status = grouped["by_status"]
    return CampaignCounts(
        queued=by_status.get("queued", 0) + by_status.get("claimed", 0),
        scheduled=by_status.get("scheduled", 0),
        in_progress=by_status.get("dialing", 0) + by_status.get("in_progress", 0),
        completed=by_status.get("completed", 0),
        failed=by_status.get("failed", 0),
        canceled=by_status.get("canceled", 0),
        completed_by_outcome=grouped["by_outcome"],
        skipped_by_reason=grouped["skipped_by_reason"],
    )


# Which states each move starts from, and where it goes.
_MOVES: dict[str, tuple[tuple[CampaignStatus, ...], CampaignStatus]] = {
    "pause": ((CampaignStatus.ACTIVE,), CampaignStatus.PAUSED),
    "resume": ((CampaignStatus.PAUSED,), CampaignStatus.ACTIVE),
    "cancel": ((CampaignStatus.ACTIVE, CampaignStatus.PAUSED), CampaignStatus.CANCELED),
}


def move_campaign(engine: Engine, campaign_id: int, move: str, now: datetime) -> None:
    """Pause, resume or cancel; raises CampaignStateConflict when the campaign is not in a state that allows it.

    A canceled campaign's waiting attempts are canceled at once; one a worker already holds is
    canceled when that worker looks at the campaign, right before its dial.
    """
    sources, target = _MOVES[move]
    with Session(engine) as db:
        moved = db.exec(
            sa.update(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.status).in_(sources))
            .values(status=target, updated_at=now, finished_at=now if target is CampaignStatus.CANCELED else None)
        )
        if moved.rowcount != 1:
            db.rollback()
            current = db.get(Campaign, campaign_id)
            state = current.status.value if current else "unknown"
            raise CampaignStateConflict(f"cannot {move} a campaign that is {state}")
        if target is CampaignStatus.CANCELED:
            db.exec(
                sa.update(CallAttempt)
                .where(
                    col(CallAttempt.campaign_id) == campaign_id,
                    col(CallAttempt.status).in_((AttemptStatus.SCHEDULED, AttemptStatus.QUEUED)),
                )
                .values(status=AttemptStatus.CANCELED, reason="campaign_canceled", updated_at=now)
            )
        db.commit()
