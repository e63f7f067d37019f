"""After each call: the lead's stage and tags, the meeting it booked, and every utterance kept.

An after-call hook (after_call/outcome_writer.py runs it once the call's outcome is stored). A call with no lead (recorded before leads existed) is left alone.

Tags come in two kinds. How the last contact went (NO_RESPONSE, NEUTRAL, POSITIVE, RESISTIVE,
DISCONNECT) is replaced by each call; what the lead wants (INTENT_*) and the flag for a human
(STRATEGY_REVIEW_REQUIRED) accumulate until someone clears them.
"""

import asyncio
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.call_job import utcnow
from models.column_types import as_utc
from models.conversation_history import new_message, thread_for
from models.domain import ChatMessage, Lead, Meeting, StrategyVersion
from models.enums import CallOutcome, CallStatus, Channel, DeliveryStatus, EndReason, LeadStage, LeadTag, OptOutSource
from models.log_config import get_logger
from models.outreach_policy import FollowUpCadence
from models.tables import Call
from prompts.caller_intent import Intent, classify
from services import Services

log = get_logger(__name__)

STAGE_FOR_OUTCOME: Mapping[CallOutcome, LeadStage] = {
    CallOutcome.MEETING_BOOKED: LeadStage.OUTCOME_APPOINTMENT,
    CallOutcome.ORDER_CONFIRMED: LeadStage.OUTCOME_PURCHASE,
    CallOutcome.QUALIFIED: LeadStage.QUALIFIED,
    CallOutcome.INFO_COLLECTED: LeadStage.ENGAGED,
    CallOutcome.CALLBACK_REQUESTED: LeadStage.ENGAGED,
    CallOutcome.NOT_INTERESTED: LeadStage.CLOSED_LOST,
    CallOutcome.OPTED_OUT: LeadStage.SUPPRESSED,
    CallOutcome.NO_ANSWER: LeadStage.CONTACTED,
    CallOutcome.VOICEMAIL: LeadStage.CONTACTED,
}
# What the lead decided replaces the stage; anything weaker only moves it forward.
DECISIVE = frozenset({CallOutcome.MEETING_BOOKED, CallOutcome.ORDER_CONFIRMED, CallOutcome.NOT_INTERESTED, CallOutcome.OPTED_OUT})
STAGE_RANK: Mapping[LeadStage, int] = {
    LeadStage.NEW: 0,
    LeadStage.CONTACTED: 1,
    LeadStage.CLOSED_LOST: 1,  # a lost lead that engages again is worth moving forward
    LeadStage.ENGAGED: 2,
    LeadStage.QUALIFIED: 3,
    LeadStage.OUTCOME_APPOINTMENT: 4,
    LeadStage.OUTCOME_PURCHASE: 4,
}

CONTACT_TAGS = frozenset({LeadTag.NO_RESPONSE, LeadTag.NEUTRAL, LeadTag.POSITIVE, LeadTag.RESISTIVE, LeadTag.DISCONNECT})
OBJECTIONS = frozenset({Intent.PRICE, Intent.COMPETITOR, Intent.TRUST, Intent.TIMING})
RESISTANCE = OBJECTIONS | {Intent.NOT_INTERESTED, Intent.OPT_OUT}
_PURCHASE_WORDS = re.compile(r"\b(buy|purchase|order|sign (me|us) up)\b", re.IGNORECASE)


def next_stage(current: LeadStage, outcome: CallOutcome) -> LeadStage:
    if current is LeadStage.SUPPRESSED:
        return current  # final
    if outcome is CallOutcome.OPTED_OUT:
        return LeadStage.SUPPRESSED
    if current is LeadStage.TAKE_OVER:
        return current  # a person handles this lead now
    proposed = STAGE_FOR_OUTCOME[outcome]
    if outcome in DECISIVE or STAGE_RANK[proposed] > STAGE_RANK[current]:
        return proposed
    return current


def call_tags(call: Call) -> set[LeadTag]:
    """What this call says about the lead: from its outcome and from what the caller said."""
    said = [entry.get("text", "") for entry in call.transcript if entry.get("role") == "caller"]
    intents = {classify(text) for text in said}
    tags: set[LeadTag] = set()
    if call.status is CallStatus.FAILED or call.end_reason is EndReason.CALLER_HUNG_UP:
        tags.add(LeadTag.DISCONNECT)
    if call.outcome in (CallOutcome.NO_ANSWER, CallOutcome.VOICEMAIL) or not said:
        tags.add(LeadTag.NO_RESPONSE)
    if Intent.YES in intents or call.outcome in (CallOutcome.MEETING_BOOKED, CallOutcome.ORDER_CONFIRMED, CallOutcome.QUALIFIED):
        tags.add(LeadTag.POSITIVE)
    if intents & RESISTANCE or call.outcome in (CallOutcome.NOT_INTERESTED, CallOutcome.OPTED_OUT):
        tags.add(LeadTag.RESISTIVE)
    if said and not tags & {LeadTag.POSITIVE, LeadTag.RESISTIVE}:
        tags.add(LeadTag.NEUTRAL)
    if call.outcome is CallOutcome.MEETING_BOOKED or Intent.TIME_PROPOSAL in intents:
        tags.add(LeadTag.INTENT_APPOINTMENT)
    if call.outcome is CallOutcome.ORDER_CONFIRMED or any(_PURCHASE_WORDS.search(text) for text in said):
        tags.add(LeadTag.INTENT_PURCHASE)
    if call.outcome is CallOutcome.NOT_INTERESTED and intents & OBJECTIONS:
        # The strategy's objection handling met this objection and lost: a person should look.
        tags.add(LeadTag.STRATEGY_REVIEW_REQUIRED)
    return tags


def merged_tags(current: Iterable[str], from_call: set[LeadTag]) -> list[str]:
    kept = {LeadTag(tag) for tag in current} - CONTACT_TAGS
    return sorted(tag.value for tag in kept | from_call)


def _at(entry: Mapping[str, Any], fallback: datetime) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(entry["at"]))
    except (KeyError, TypeError, ValueError):
        return fallback


def store_transcript(db: Session, lead: Lead, call: Call) -> int:
    """Every utterance of the call as a ChatMessage in the lead's voice thread, with its timing."""
    already = db.exec(select(ChatMessage.id).where(ChatMessage.call_id == call.id).limit(1)).first()
    if already is not None:
        return 0  # this call's transcript is stored already (an outcome replayed from the journal)
    thread = thread_for(db, lead, Channel.VOICE)
    fallback = as_utc(call.ended_at or call.created_at)
    last_timing: dict[str, float] | None = None
    for entry in call.transcript:
        at, text = _at(entry, fallback), str(entry.get("text", ""))
        if entry.get("role") == "caller":
            last_timing = entry.get("timing")
            message = new_message(
                thread, {"role": "user", "content": text}, call_id=call.id, created_at=at, sent_at=at, timing=last_timing
            )
        else:
            replied_after = (last_timing or {}).get("first_audio_sent_ms")
            message = new_message(
                thread,
                {"role": "assistant", "content": text},
                call_id=call.id,
                created_at=at,
                sent_at=at,
                delivered_at=at,
                delivery_status=DeliveryStatus.DELIVERED,
                model_used=call.llm_provider,
                response_time_ms=round(replied_after) if replied_after is not None else None,
                message_metadata={"interrupted": True} if entry.get("interrupted") else {},
            )
            last_timing = None
        db.add(message)
    return len(call.transcript)


def _book_meeting(db: Session, lead: Lead, call: Call, link: str | None) -> None:
    assert lead.id is not None  # a stored lead: it was read from the database
    if db.exec(select(Meeting).where(Meeting.call_id == call.id)).first() is not None:
        return
    slot_text = call.answers.get("meeting_time")
    try:
        slot_at = as_utc(datetime.fromisoformat(slot_text)) if slot_text else None
    except ValueError:
        slot_at = None  # said in words ("tuesday at ten"): kept as slot_text for a person to confirm
    db.add(
        Meeting(
            workspace_id=lead.workspace_id,
            lead_id=lead.id,
            call_id=call.id,
            slot_text=slot_text and slot_text[:500],
            slot_at=slot_at,
            link=link,
        )
    )


def _next_followup(db: Session, lead: Lead, call: Call) -> datetime | None:
    if lead.stage not in (LeadStage.NEW, LeadStage.CONTACTED, LeadStage.ENGAGED) or call.strategy_version_id is None:
        return None
    strategy = db.get(StrategyVersion, call.strategy_version_id)
    if strategy is None:
        return None
    cadence = FollowUpCadence.for_strategy(strategy.followup_preset, strategy.interval_overrides)
    attempts = len(db.exec(select(Call.id).where(Call.lead_id == lead.id)).all())
    return as_utc(call.created_at) + cadence.intervals[attempts - 1] if attempts < cadence.max_attempts else None


def apply_call_outcome(engine: Engine, call_id: str, booking_link: str | None = None) -> Lead | None:
    with Session(engine) as db:
        call = db.get(Call, call_id)
        if call is None or call.lead_id is None:
            return None
        lead = db.get(Lead, call.lead_id)
        if lead is None:
            return None
        store_transcript(db, lead, call)
        outcome = call.outcome or CallOutcome.NO_ANSWER
        if lead.stage is not LeadStage.SUPPRESSED:  # a suppressed lead's record stays as it was
            lead.tags = merged_tags(lead.tags, call_tags(call))
            if call.status is not CallStatus.FAILED:
                lead.stage = next_stage(lead.stage, outcome)
            if outcome is CallOutcome.MEETING_BOOKED and call.status is CallStatus.COMPLETED:
                _book_meeting(db, lead, call, booking_link)
        if lead.stage is LeadStage.SUPPRESSED and lead.opted_out_at is None:
            lead.opted_out_at, lead.opt_out_source = call.ended_at or utcnow(), OptOutSource.VOICE
        lead.last_followup_at = as_utc(call.created_at)
        lead.next_followup_at = _next_followup(db, lead, call)
        lead.updated_at = utcnow()
        db.add(lead)
        db.commit()
        db.refresh(lead)
        return lead


async def update_lead_after_call(services: Services, call: Call) -> None:
    link = None
    try:
        context = await services.store.load_context(call.context_id)
        link = context.booking_link if context else None
    except Exception:  # the store is down: the meeting is still booked, without its link
        log.warning("booking_link_unavailable", call_id=call.id)
    lead = await asyncio.to_thread(apply_call_outcome, services.engine, call.id, link)
    if lead is not None:
        log.info("lead_updated_after_call", call_id=call.id, lead_id=lead.id, stage=lead.stage.value, tags=lead.tags)
