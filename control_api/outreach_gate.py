"""Between a call request and the dialer: the lead, its consent, the policy and its audit.

Gathers the facts the pure policy (models/outreach_policy.py) needs from the database,
asks it, and commits the PolicyDecision, allowed or not, before anything is dialed.
"""

from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from call_queue.policy_facts import active_strategy, evaluate
from models.call_job import utcnow
from models.call_request import CallRequest
from models.conversation_history import Message, history_for_context
from models.domain import (
    DEFAULT_WORKSPACE_NAME,
    Lead,
    OutreachAttestation,
    PolicyDecision,
    StrategyVersion,
    Workspace,
    WorkspaceApiKey,
)
from models.outreach_policy import PolicyVerdict
from models.settings import Settings

WEB_FORM_CONSENT = "web_form"


class OutreachRefused(Exception):
    """The policy said no; the decision is already stored."""

    def __init__(self, decision_id: int, verdict: PolicyVerdict) -> None:
        super().__init__(verdict.reason_code.value)
        # Plain values: the handler answers after the request's database session has closed.
        self.decision_id, self.verdict = decision_id, verdict

    def response(self) -> JSONResponse:
        failed = next((rule for rule in self.verdict.rule_trace if not rule["passed"]), {})
        next_at = self.verdict.next_allowed_at
        headers = {}
        if next_at is not None and self.verdict.http_status == 429:
            headers["Retry-After"] = str(max(int((next_at - utcnow()).total_seconds()) + 1, 1))
        body = {
            "detail": f"outreach policy refused the call: {failed.get('detail', self.verdict.reason_code.value)}",
            "reason_code": self.verdict.reason_code.value,
            "next_allowed_at": next_at.isoformat() if next_at else None,
            "decision_id": self.decision_id,
        }
        return JSONResponse(body, status_code=self.verdict.http_status, headers=headers)


async def outreach_refused_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OutreachRefused)
    return exc.response()


@dataclass
class Admission:
    """An allowed call: who it is for, the strategy it runs on, and what was said before."""

    workspace: Workspace
    lead: Lead
    strategy: StrategyVersion | None
    decision: PolicyDecision
    history: list[Message]

    def call_links(self) -> dict[str, int | None]:
        return {
            "workspace_id": self.workspace.id,
            "lead_id": self.lead.id,
            "strategy_version_id": self.strategy.id if self.strategy else None,
        }

    def link_call(self, db: Session, call_id: str) -> None:
        """After the Call row is added: the decision points at the call it let through."""
        db.flush()
        self.decision.call_id = call_id
        db.add(self.decision)


def default_workspace(db: Session) -> Workspace:
    workspace = db.exec(select(Workspace).where(Workspace.is_default).order_by(col(Workspace.id))).first()
    if workspace is None:  # the migration creates it; only a hand-emptied table lacks it
        workspace = Workspace(name=DEFAULT_WORKSPACE_NAME, is_default=True)
        db.add(workspace)
        db.commit()
    return workspace


def lead_for_phone(db: Session, workspace: Workspace, phone: str, name: str | None = None) -> Lead:
    query = select(Lead).where(Lead.workspace_id == workspace.id, Lead.phone == phone)
    lead = db.exec(query).first()
    if lead is None:
        try:
            with db.begin_nested():
                lead = Lead(workspace_id=workspace.id, phone=phone, external_id=phone, name=name)
                db.add(lead)
        except IntegrityError:  # created meanwhile by a concurrent request
            lead = db.exec(query).one()
    elif name and not lead.name:
        lead.name = name
        db.add(lead)
    return lead


def record_request_consent(db: Session, lead: Lead, api_key: WorkspaceApiKey | None, now: datetime) -> None:
    """The request's consent box: the visitor's own consent, or the operator's attestation."""
    if lead.opted_out_at is not None:
        return  # nothing can undo an opt-out, so there is nothing to record
    if api_key is None:
        lead.consent, lead.consent_at, lead.consent_source = True, now, WEB_FORM_CONSENT
        db.add(lead)
    else:
        db.add(
            OutreachAttestation(
                workspace_id=lead.workspace_id, lead_id=lead.id, operator_id=f"api_key:{api_key.key_prefix}", timestamp=now
            )
        )


def admit_call(
    db: Session,
    settings: Settings,
    call_request: CallRequest,
    workspace_key: tuple[Workspace, WorkspaceApiKey] | None = None,
    now: datetime | None = None,
) -> Admission:
    """Raises OutreachRefused when the policy says no; the decision is stored either way."""
    now = now or utcnow()
    workspace, api_key = workspace_key or (default_workspace(db), None)
    lead = lead_for_phone(db, workspace, call_request.phone, call_request.name)
    record_request_consent(db, lead, api_key, now)
    decision, verdict = evaluate(db, workspace, lead, settings, now)
    if not verdict.allow_send:
        raise OutreachRefused(decision.id, verdict)
    return Admission(workspace, lead, active_strategy(db, workspace.id), decision, history_for_context(db, lead.id))
