"""The SMS follow-up hook: the context's text, through Twilio Messages (emulated), once and never twice."""

import asyncio
import functools
from dataclasses import replace

import pytest
from sqlmodel import Session

from after_call.sms_followup import send_sms_followup, sms_claim_key
from models.call_job import CallJob
from models.call_request import CallRequest
from models.database import init_db, make_engine
from models.enums import CallOutcome, CallStatus
from models.session_store import MemorySessionStore, RedisSessionStore
from models.settings import Settings
from models.tables import Call
from prompts.context_builder import build_context
from services import Services
from services.twilio_account import TwilioAccount
from tests.support import BOOK_MEETING_REQUEST, TWILIO_FROM_NUMBER, services_for


def settings_for(emulator, auth_token: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        twilio_account_sid=emulator.emulator.account_sid,
        twilio_auth_token=auth_token or emulator.emulator.auth_token,
        twilio_from_number=TWILIO_FROM_NUMBER,
        twilio_api_base_url=emulator.base_url,
    )


async def finished_call(services: Services, phone: str, outcome: CallOutcome, goal: str = "book_meeting") -> Call:
    """A call as the worker leaves it: context and job in the store, the outcome in the database."""
    context = build_context(CallRequest(**dict(BOOK_MEETING_REQUEST, phone=phone, goal=goal)))
    job = CallJob(context_id=context.id, phone=phone)
    await services.store.save_call(job, context)
    record = Call(
        id=str(job.id), context_id=str(context.id), phone=phone, goal=context.goal, status=CallStatus.COMPLETED, outcome=outcome
    )
    with Session(services.engine) as db:
        db.add(record)
        db.commit()
        db.refresh(record)
    return record


def texts_to(emulator, phone: str) -> list[dict]:
    return [m for m in emulator.emulator.messages() if m["to"] == phone]


@pytest.fixture()
def services(tmp_path, twilio_emulator) -> Services:
    engine = make_engine(f"sqlite:///{tmp_path / 'sms.db'}")
    init_db(engine)
    return services_for(settings_for(twilio_emulator), MemorySessionStore(), engine)


async def test_booked_meeting_gets_the_booking_link_by_sms(services, twilio_emulator):
    account = TwilioAccount(services.settings)
    record = await finished_call(services, "+14155550221", CallOutcome.MEETING_BOOKED)

    await send_sms_followup(replace(services, twilio=account), record)
    await account.aclose()

    [text] = texts_to(twilio_emulator, "+14155550221")
    assert (
        text["body"]
        == "Thanks for talking with us about Brightside solar panels. Book your meeting here: https://example.com/book/brightside"
    )
    with Session(services.engine) as db:
        assert db.get(Call, record.id).sms_sent is True
    assert (await services.store.load_job(record.id)).sms_sent is True


async def test_hook_run_twice_at_once_and_again_later_sends_one_sms(services, twilio_emulator):
    account = TwilioAccount(services.settings)
    hook = functools.partial(send_sms_followup, replace(services, twilio=account))
    record = await finished_call(services, "+14155550222", CallOutcome.MEETING_BOOKED)

    await asyncio.gather(hook(record), hook(record), hook(record))
    await services.store.delete(sms_claim_key(record.id))  # even once the claim is gone, the stored flag holds
    await hook(record)
    await account.aclose()

    assert len(texts_to(twilio_emulator, "+14155550222")) == 1


async def test_two_processes_sharing_redis_send_one_sms(tmp_path, twilio_emulator, clean_redis):
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    init_db(engine)
    settings = settings_for(twilio_emulator)
    processes = [services_for(settings, RedisSessionStore(clean_redis.url), engine) for _ in range(2)]
    accounts = [TwilioAccount(settings) for _ in processes]
    record = await finished_call(processes[0], "+14155550223", CallOutcome.MEETING_BOOKED)

    await asyncio.gather(
        *(send_sms_followup(replace(p, twilio=a), record.model_copy()) for p, a in zip(processes, accounts, strict=True))
    )
    for process, account in zip(processes, accounts, strict=True):
        await account.aclose()
        await process.store.close()

    assert len(texts_to(twilio_emulator, "+14155550223")) == 1


@pytest.mark.parametrize(
    ("phone", "outcome", "goal"),
    [
        ("+14155550224", CallOutcome.OPTED_OUT, "book_meeting"),
        ("+14155550225", CallOutcome.NO_ANSWER, "book_meeting"),
        ("+14155550226", CallOutcome.VOICEMAIL, "book_meeting"),
        ("+14155550227", CallOutcome.NOT_INTERESTED, "book_meeting"),
        ("+14155550228", CallOutcome.QUALIFIED, "confirm_order"),  # no order, no order summary
    ],
)
async def test_no_sms_when_the_outcome_has_no_follow_up(services, twilio_emulator, phone, outcome, goal):
    account = TwilioAccount(services.settings)
    record = await finished_call(services, phone, outcome, goal)
    await send_sms_followup(replace(services, twilio=account), record)
    await account.aclose()
    assert texts_to(twilio_emulator, phone) == []


async def test_confirmed_order_gets_its_summary(services, twilio_emulator):
    account = TwilioAccount(services.settings)
    record = await finished_call(services, "+14155550229", CallOutcome.ORDER_CONFIRMED, "confirm_order")
    await send_sms_followup(replace(services, twilio=account), record)
    await account.aclose()
    [text] = texts_to(twilio_emulator, "+14155550229")
    assert text["body"].startswith("Your order summary: Brightside solar panels")


async def test_sms_twilio_refused_can_be_sent_by_a_later_retry(services, twilio_emulator):
    record = await finished_call(services, "+14155550230", CallOutcome.MEETING_BOOKED)
    refused = TwilioAccount(settings_for(twilio_emulator, auth_token="revoked-token"))
    await send_sms_followup(replace(services, twilio=refused), record)  # Twilio answers 401: nothing went out
    await refused.aclose()
    assert texts_to(twilio_emulator, "+14155550230") == []

    account = TwilioAccount(services.settings)
    await send_sms_followup(replace(services, twilio=account), record)
    await account.aclose()
    assert len(texts_to(twilio_emulator, "+14155550230")) == 1
