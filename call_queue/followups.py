"""A lead's `next_followup_at` acted on: when it is due, the lead gets a call attempt like its last one.

after_call/lead_updates.py sets `next_followup_at` from the strategy's cadence after each call; every
poll of the schedule (Celery beat, or the in-process scheduler) runs `schedule_due_followups` first.
Clearing the field is a conditional update, so two dispatchers never schedule one follow-up twice;
a lead that already has a live attempt (a retry, a campaign's call) keeps that one instead. The
attempt then goes through the policy like any other, right before its dial.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from call_queue import attempt_store
from call_queue.attempt_store import LeadBusy
from models.call_queue import CallAttempt
from models.domain import Lead
from models.enums import LeadStage
from models.log_config import get_logger

log = get_logger(__name__)

FOLLOWUP_BATCH = 200
FOLLOWUP_REASON = "followup"
_OPEN_STAGES = (LeadStage.NEW, LeadStage.CONTACTED, LeadStage.ENGAGED)


def schedule_due_followups(engine: Engine, now: datetime, limit: int = FOLLOWUP_BATCH) -> list[int]:
    """Schedule the due follow-ups; the ids of the attempts created."""
    created: list[int] = []
    with Session(engine) as db:
        due = db.exec(
            select(Lead.id, Lead.next_followup_at)
            .where(
                col(Lead.next_followup_at).is_not(None),
                col(Lead.next_followup_at) <= now,
                col(Lead.opted_out_at).is_(None),
                col(Lead.stage).in_(_OPEN_STAGES),
            )
            .order_by(col(Lead.next_followup_at))
            .limit(limit)
        ).all()
    for lead_id, due_at in due:
        attempt_id = _follow_up(engine, lead_id, due_at, now)
        if attempt_id is not None:
            created.append(attempt_id)
    if created:
        log.info("followups_scheduled", count=len(created))
    return created


def _follow_up(engine: Engine, lead_id: int | None, due_at: datetime | None, now: datetime) -> int | None:
    with Session(engine) as db:
        taken = db.exec(
            sa.update(Lead)
            .where(col(Lead.id) == lead_id, col(Lead.next_followup_at) == due_at)
            .values(next_followup_at=None, updated_at=now)
        )
        if taken.rowcount != 1:  # another dispatcher has it, or a new call moved it
            db.rollback()
            return None
        last = db.exec(
            select(CallAttempt).where(col(CallAttempt.lead_id) == lead_id).order_by(col(CallAttempt.id).desc())
        ).first()
        if last is None or not last.call_request:  # never called through the queue: nothing to repeat
            db.commit()
            return None
        try:
            attempt = attempt_store.schedule_call(
                db,
                workspace_id=last.workspace_id,
                lead_id=last.lead_id,
                call_request=last.call_request,
                scheduled_for=now,
                now=now,
                campaign_id=None,
                reason=FOLLOWUP_REASON,
            )
        except LeadBusy:  # a retry or a campaign's call is already waiting: that one is the follow-up
            db.commit()
            return None
        db.commit()
        return attempt.id
