"""The outreach policy's facts from the database, and its decision stored: for POST /calls and the queue.

The policy itself is pure (models/outreach_policy.py); this gathers what it needs to know about a
lead and its workspace, and commits the PolicyDecision, allowed or not, before anything is dialed.
Below both the control API and the queue's workers, which re-check right before every dial.
"""

from datetime import datetime

from sqlmodel import Session, col, func, select

from models.call_job import utcnow
from models.column_types import as_utc
from models.domain import Lead, OutreachAttestation, PolicyDecision, StrategyVersion, Workspace
from models.enums import Channel, LeadStage, StrategyStatus
from models.outreach_policy import FollowUpCadence, OutreachFacts, PolicyVerdict, budget_day, decide
from models.settings import Settings
from models.tables import Call


def active_strategy(db: Session, workspace_id: int) -> StrategyVersion | None:
    query = select(StrategyVersion).where(
        StrategyVersion.workspace_id == workspace_id, StrategyVersion.status == StrategyStatus.ACTIVE
    )
    return db.exec(query).first()


def call_strategy(db: Session, workspace_id: int, named_version_id: int | None) -> StrategyVersion | None:
    """The strategy version a call runs on: the one its campaign names, else the workspace's active
    one; None when the workspace has none (the call runs on the request and the templates alone)."""
    if named_version_id is not None:
        named = db.get(StrategyVersion, named_version_id)
        if named is not None and named.workspace_id == workspace_id:
            return named
    return active_strategy(db, workspace_id)


def is_attested(db: Session, workspace_id: int, lead_id: int) -> bool:
    """The newest attestation for this lead decides; without one, the newest workspace-wide one."""
    base = select(OutreachAttestation).where(OutreachAttestation.workspace_id == workspace_id)
    newest = (col(OutreachAttestation.timestamp).desc(), col(OutreachAttestation.id).desc())
    for scope in (OutreachAttestation.lead_id == lead_id, col(OutreachAttestation.lead_id).is_(None)):
        attestation = db.exec(base.where(scope).order_by(*newest)).first()
        if attestation is not None:
            return attestation.granted
    return False


def gather_facts(
    db: Session,
    workspace: Workspace,
    lead: Lead,
    settings: Settings,
    now: datetime,
    *,
    exclude_call_id: str | None = None,
    requested_callback: bool = False,
) -> OutreachFacts:
    """`exclude_call_id`: the call being decided on, when its row exists already (not an earlier attempt)."""
    assert workspace.id is not None and lead.id is not None  # stored rows
    strategy = active_strategy(db, workspace.id)
    day_start, day_end = budget_day(now, workspace.timezone)
    calls_today = db.exec(
        select(func.count())
        .select_from(Call)
        .where(Call.workspace_id == workspace.id, Call.created_at >= day_start, Call.created_at < day_end)
    ).one()
    earlier = select(Call.created_at).where(Call.lead_id == lead.id)
    if exclude_call_id is not None:
        earlier = earlier.where(Call.id != exclude_call_id)
    attempts = db.exec(earlier).all()
    return OutreachFacts(
        now=now,
        phone=lead.phone,
        consent=lead.consent,
        attested=is_attested(db, workspace.id, lead.id),
        opted_out=lead.opted_out_at is not None or lead.stage == LeadStage.SUPPRESSED,
        lead_timezone=lead.timezone,
        workspace_timezone=workspace.timezone,
        business_hours=workspace.business_hours,
        budget_tier=workspace.budget_tier,
        calls_today=calls_today,
        previous_attempts=[as_utc(at) for at in attempts],
        cadence=FollowUpCadence.for_strategy(strategy.followup_preset, strategy.interval_overrides) if strategy else None,
        enforce_calling_hours=settings.enforce_calling_hours,
        requested_callback=requested_callback,
    )


def evaluate(
    db: Session,
    workspace: Workspace,
    lead: Lead,
    settings: Settings,
    now: datetime | None = None,
    *,
    exclude_call_id: str | None = None,
    requested_callback: bool = False,
) -> tuple[PolicyDecision, PolicyVerdict]:
    """Decide, and commit the decision (with whatever else the session holds) before returning."""
    facts = gather_facts(
        db, workspace, lead, settings, now or utcnow(), exclude_call_id=exclude_call_id, requested_callback=requested_callback
    )
    verdict = decide(facts)
    assert workspace.id is not None and lead.id is not None  # stored rows
    decision = PolicyDecision(
        workspace_id=workspace.id,
        lead_id=lead.id,
        channel=Channel.VOICE,
        allow_send=verdict.allow_send,
        reason_code=verdict.reason_code.value,
        rule_trace=verdict.rule_trace,
        next_allowed_at=verdict.next_allowed_at,
    )
    db.add(decision)
    db.commit()
    return decision, verdict
