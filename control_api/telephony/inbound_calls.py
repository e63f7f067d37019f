"""A call to one of a workspace's numbers: who called, which lead, and whether the business or the agent answers.

Within business hours a number with `forward_to` rings the business first (<Dial> with a timeout and
an action URL); when that goes unanswered, outside business hours, or without `forward_to`, the
agent answers through the same `<Connect><Stream>` to `/ws`, with the same `call_id` and `token`, as
an outbound call. Every inbound call gets a CallJob, an inbound context in the session store and a
`Call` row (direction inbound) at once, so that however it ends it is finished through the one
outcome writer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from twilio.twiml.voice_response import Dial, VoiceResponse

from after_call.outcome_writer import record_finished_call, record_without_conversation
from models.business_hours import is_open
from models.call_job import CallJob, utcnow
from models.call_request import normalize_e164
from models.context import ContextInstance
from models.domain import Lead, PhoneNumber, Workspace
from models.enums import CallDirection, CallOutcome, CallStatus, EndReason, PhoneNumberStatus
from models.tables import Call
from prompts.inbound_context import build_inbound_context
from services import Services
from services.twilio_account import connect_stream_twiml

# Seconds the business's own phone rings before the agent takes the call.
FORWARD_RING_SECONDS = 20
DIAL_RESULT_PATH = "/twilio/voice/dial-result"


@dataclass(frozen=True)
class IncomingCall:
    """What Twilio's voice webhook says about the call."""

    call_sid: str
    caller: str
    called: str
    status: str | None
    city: str | None
    state: str | None
    country: str | None

    @classmethod
    def from_form(cls, form: dict[str, str]) -> IncomingCall:
        def place(name: str, length: int) -> str | None:
            return form.get(name, "")[:length] or None

        return cls(
            call_sid=form.get("CallSid", ""),
            caller=form.get("From", ""),
            called=form.get("To", ""),
            status=form.get("CallStatus") or None,
            city=place("FromCity", 100),
            state=place("FromState", 50),
            country=place("FromCountry", 3),
        )


@dataclass
class AnsweredCall:
    job: CallJob
    context: ContextInstance
    number: PhoneNumber
    workspace: Workspace
    ring_business: bool


def caller_e164(raw: str) -> str | None:
    """The caller's number, or None for a withheld or malformed one (no lead, no text-back then)."""
    try:
        return normalize_e164(raw)
    except ValueError:
        return None


def number_called(db: Session, called: str) -> PhoneNumber | None:
    e164 = caller_e164(called)
    if e164 is None:
        return None
    number = db.exec(select(PhoneNumber).where(PhoneNumber.phone_number == e164)).first()
    return number if number is not None and number.status is PhoneNumberStatus.ACTIVE else None


def lead_for_caller(db: Session, workspace: Workspace, phone: str, now: datetime) -> Lead:
    """The workspace's lead for this number, created on first contact.

    Calling or texting the business asks for an answer (the call, the text-back, the replies), not
    for the outbound calls of a campaign: such a lead has no consent until the business records it.
    """
    query = select(Lead).where(Lead.workspace_id == workspace.id, Lead.phone == phone)
    lead = db.exec(query).first()
    if lead is not None:
        return lead
    try:
        with db.begin_nested():
            lead = Lead(
                workspace_id=workspace.id,  # type: ignore[arg-type]
                external_id=phone,
                phone=phone,
                created_at=now,
                updated_at=now,
            )
            db.add(lead)
    except IntegrityError:
        lead = db.exec(query).one()
    return lead


def should_ring_business(number: PhoneNumber, workspace: Workspace, now: datetime) -> bool:
    return bool(number.forward_to) and is_open(workspace.business_hours, workspace.timezone, now)


def _admit(services: Services, incoming: IncomingCall, now: datetime) -> AnsweredCall | None:
    with Session(services.engine) as db:
        number = number_called(db, incoming.called)
        if number is None:
            return None
        workspace = db.get(Workspace, number.workspace_id)
        if workspace is None:
            return None
        caller = caller_e164(incoming.caller)
        existing = db.exec(select(Call).where(Call.twilio_call_sid == incoming.call_sid)).first()
        lead = lead_for_caller(db, workspace, caller, now) if caller else None
        context = build_inbound_context(workspace, caller or incoming.caller[:32])
        job = CallJob(
            id=UUID(existing.id) if existing is not None else uuid4(),
            context_id=existing.context_id if existing is not None else context.id,
            phone=caller or incoming.caller[:32],
            twilio_call_sid=incoming.call_sid,
            telephony_status=incoming.status,
        )
        context = context.model_copy(update={"id": job.context_id})
        if existing is None:
            db.add(
                Call(
                    id=str(job.id),
                    context_id=str(context.id),
                    phone=job.phone,
                    goal=context.goal,
                    status=CallStatus.PENDING,
                    twilio_call_sid=incoming.call_sid,
                    telephony_status=incoming.status,
                    created_at=now,
                    started_at=now,
                    workspace_id=workspace.id,
                    lead_id=lead.id if lead else None,
                    direction=CallDirection.INBOUND,
                    business_phone=number.phone_number,
                    caller_city=incoming.city,
                    caller_state=incoming.state,
                    caller_country=incoming.country,
                )
            )
        db.commit()
        db.refresh(number)
        db.refresh(workspace)
        db.expunge(number)
        db.expunge(workspace)
        return AnsweredCall(job, context, number, workspace, should_ring_business(number, workspace, now))


async def admit_inbound_call(services: Services, incoming: IncomingCall, now: datetime | None = None) -> AnsweredCall | None:
    """Record the call and store its job and context; None when the number called is not one of ours.

    Twilio retries a webhook that timed out: the same CallSid gets the same call id, row and job.
    """
    answered = await asyncio.to_thread(_admit, services, incoming, now or utcnow())
    if answered is None:
        return None
    stored = await services.store.load_job(answered.job.id)
    if stored is None:
        await services.store.save_call(answered.job, answered.context)
    else:
        answered.job = stored
    return answered


def dial_result_url(services: Services, call_id: str) -> str:
    return f"{services.settings.public_base_url.rstrip('/')}{DIAL_RESULT_PATH}?{urlencode({'call_id': call_id})}"


def ring_business_twiml(services: Services, answered: AnsweredCall) -> str:
    """Ring the business's phone; Twilio posts the result to the action URL, which decides what follows."""
    response = VoiceResponse()
    dial = Dial(timeout=FORWARD_RING_SECONDS, action=dial_result_url(services, str(answered.job.id)), method="POST")
    dial.number(answered.number.forward_to)
    response.append(dial)
    return str(response)


def agent_answers_twiml(services: Services, job: CallJob) -> str:
    return connect_stream_twiml(services.settings, job)


def job_of_call(call: Call) -> CallJob:
    """The call's job rebuilt from its row, for a report that arrives after the job expired."""
    return CallJob(
        id=UUID(call.id),
        created_at=call.created_at,
        context_id=UUID(call.context_id),
        phone=call.phone,
        status=call.status,
        twilio_call_sid=call.twilio_call_sid,
        telephony_status=call.telephony_status,
    )


async def finish_forwarded_call(services: Services, job: CallJob, dial_seconds: str | None) -> Call:
    """The business's own phone took the call: no outcome for the agent to judge, only the record."""
    record = record_without_conversation(
        job, outcome=CallOutcome.NO_ANSWER, end_reason=None, error=None, telephony_status="forwarded"
    )
    record.outcome = None  # a person at the business talked to the caller
    record.goal = None
    record.duration_seconds = float(dial_seconds) if dial_seconds and dial_seconds.isdigit() else None
    return await record_finished_call(services, record, job)


async def finish_missed_call(services: Services, job: CallJob, telephony_status: str, call_seconds: str | None) -> Call:
    """The caller hung up before anyone answered: a missed call (the text-back hook follows)."""
    record = record_without_conversation(
        job, outcome=CallOutcome.NO_ANSWER, end_reason=EndReason.CALLER_HUNG_UP, error=None, telephony_status=telephony_status
    )
    record.duration_seconds = float(call_seconds) if call_seconds and call_seconds.isdigit() else None
    return await record_finished_call(services, record, job)
