"""Between a call request and the queue: the workspace and lead, the consent it carries, and a refusal's answer.

The policy's facts and its stored decision are in call_queue/policy_facts.py (the queue re-checks
before each dial); POST /calls's database step is control_api/call_intake.py.
"""

from datetime import datetime

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.call_job import utcnow
from models.domain import (
    DEFAULT_WORKSPACE_NAME,
    Lead,
    OutreachAttestation,
    Workspace,
    WorkspaceApiKey,
)
from models.outreach_policy import PolicyVerdict
from models.row_builder import build_row

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
            build_row(
                OutreachAttestation,
                workspace_id=lead.workspace_id,
                lead_id=lead.id,
                operator_id=f"api_key:{api_key.key_prefix}",
                timestamp=now,
            )
        )
