"""The outreach policy's facts from the database, and its decision stored: for POST /calls and the queue.

The policy itself is pure (models/outreach_policy.py); this gathers what it needs to know about a
lead and its workspace, and commits the PolicyDecision, allowed or not, before anything is dialed.
Below both the control API and the queue's workers, which re-check right before every dial.
"""

import functools
import json
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from models.call_job import utcnow
from models.column_types import as_utc
from models.domain import Lead, OutreachAttestation, PolicyDecision, StrategyVersion, Workspace
from models.enums import Channel, FollowUpPreset, LeadStage, StrategyStatus
from models.outreach_policy import FollowUpCadence, OutreachFacts, PolicyVerdict, budget_day, decide
from models.row_builder import build_row
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
    lead_says, workspace_says = db.execute(_attestations_query(), {"workspace_id": workspace_id, "lead_id": lead_id}).one()
    return _attested(lead_says, workspace_says)


@functools.cache
def _attestations_query() -> sa.Select:
    return sa.select(*_attestations(sa.bindparam("lead_id")))


def _attestations(lead_id: sa.ColumnElement[Any]) -> tuple[sa.ScalarSelect, sa.ScalarSelect]:
    """The newest lead-scoped and workspace-wide attestations; binds `workspace_id`."""
    base = select(OutreachAttestation.granted).where(OutreachAttestation.workspace_id == sa.bindparam("workspace_id"))
    newest = (col(OutreachAttestation.timestamp).desc(), col(OutreachAttestation.id).desc())
    lead_scope = OutreachAttestation.lead_id == lead_id
    workspace_scope = col(OutreachAttestation.lead_id).is_(None)
    return (
        base.where(lead_scope).order_by(*newest).limit(1).scalar_subquery(),
        base.where(workspace_scope).order_by(*newest).limit(1).scalar_subquery(),
    )


def _attested(lead_says: Any, workspace_says: Any) -> bool:
    return bool(lead_says if lead_says is not None else workspace_says)


def gather_facts(
    db: Session,
    workspace: Workspace,
    lead: Lead,
    settings: Settings,
    now: datetime,
    *,
    exclude_call_id: str | None = None,
    requested_callback: bool = False,
    lead_is_new: bool = False,
    stored: "StoredFacts | None" = None,
) -> OutreachFacts:
    """`exclude_call_id`: the call being decided on, when its row exists already (not an earlier attempt).
    `lead_is_new`: the lead was created in this transaction, so it has no calls yet (and, when
    `stored` is given, may not be written yet).
    `stored`: the facts read already in this transaction (`facts_columns` in a query of the
    caller's), nothing they depend on written since.

    One round trip for the workspace's and the lead's facts (POST /calls answers in milliseconds)
    unless `stored`, a second for the lead's earlier calls unless it has none."""
    assert workspace.id is not None and (lead.id is not None or (lead_is_new and stored is not None))
    if stored is None:
        # On the session's connection (after a flush: an attestation just added counts), not through
        # the ORM's execution path, which costs more CPU than the query's round trip on POST /calls.
        db.flush()
        bound = {**facts_values(workspace, now), "lead_id": lead.id}
        stored = StoredFacts._make(db.connection().execute(_facts_query(), bound).one())
    today, preset_value, overrides_value, lead_attested, workspace_attested = stored
    attempts: list[datetime] = []
    if not lead_is_new:
        earlier = select(Call.created_at).where(Call.lead_id == lead.id)
        if exclude_call_id is not None:
            earlier = earlier.where(Call.id != exclude_call_id)
        attempts = [as_utc(at) for at in db.exec(earlier).all()]
    cadence = None
    if preset_value is not None:
        # A scalar subquery comes back as the column's stored value: the enum's name, the JSON's text or dict.
        preset_enum = preset_value if isinstance(preset_value, FollowUpPreset) else FollowUpPreset[str(preset_value)]
        if isinstance(overrides_value, str):
            overrides_value = json.loads(overrides_value)
        cadence = FollowUpCadence.for_strategy(preset_enum, overrides_value)
    return OutreachFacts(
        now=now,
        phone=lead.phone,
        consent=lead.consent,
        attested=_attested(lead_attested, workspace_attested),
        opted_out=lead.opted_out_at is not None or lead.stage == LeadStage.SUPPRESSED,
        lead_timezone=lead.timezone,
        workspace_timezone=workspace.timezone,
        business_hours=workspace.business_hours,
        budget_tier=workspace.budget_tier,
        calls_today=today,
        previous_attempts=attempts,
        cadence=cadence,
        enforce_calling_hours=settings.enforce_calling_hours,
        requested_callback=requested_callback,
    )


class StoredFacts(NamedTuple):
    """The policy's facts that live in rows other than the lead's and the workspace's."""

    calls_today: int
    preset: Any  # the active strategy's follow-up preset, as stored
    overrides: Any  # its interval overrides, as stored
    lead_attested: Any  # the newest attestation naming the lead: granted, or None
    workspace_attested: Any  # the newest workspace-wide one


def facts_values(workspace: Workspace, now: datetime) -> dict[str, Any]:
    """The values `facts_columns` binds."""
    day_start, day_end = budget_day(now, workspace.timezone)
    return {"workspace_id": workspace.id, "day_start": day_start, "day_end": day_end}


@functools.cache
def _facts_query() -> sa.Select:
    """Built once, its values bound at execution: building it per request cost more CPU than its
    round trip. Binds `lead_id` and `facts_values`."""
    return sa.select(*facts_columns(sa.bindparam("lead_id")))


def facts_columns(lead_id: sa.ColumnElement[Any]) -> tuple[sa.ScalarSelect, ...]:
    """StoredFacts's columns, for a query of one's own (POST /calls reads them with the lead): the
    lead's attestations are those of `lead_id` (a bound value, or a column of that query); binds
    `facts_values`."""
    workspace_id: sa.BindParameter[int] = sa.bindparam("workspace_id")
    calls_today = (
        select(func.count())
        .select_from(Call)
        .where(
            Call.workspace_id == workspace_id,
            col(Call.created_at) >= sa.bindparam("day_start"),
            col(Call.created_at) < sa.bindparam("day_end"),
        )
        .scalar_subquery()
    )
    active = (StrategyVersion.workspace_id == workspace_id, StrategyVersion.status == StrategyStatus.ACTIVE)
    preset = select(StrategyVersion.followup_preset).where(*active).limit(1).scalar_subquery()
    overrides = select(StrategyVersion.interval_overrides).where(*active).limit(1).scalar_subquery()
    return (calls_today, preset, overrides, *_attestations(lead_id))


def policy_decision(workspace_id: int, lead_id: int | None, verdict: PolicyVerdict) -> PolicyDecision:
    """The stored audit of one evaluation (`lead_id` None: the lead is written with it)."""
    return build_row(
        PolicyDecision,
        workspace_id=workspace_id,
        lead_id=lead_id,
        channel=Channel.VOICE,
        allow_send=verdict.allow_send,
        reason_code=verdict.reason_code.value,
        rule_trace=verdict.rule_trace,
        next_allowed_at=verdict.next_allowed_at,
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
    decision = policy_decision(workspace.id, lead.id, verdict)
    db.add(decision)
    db.commit()
    return decision, verdict
