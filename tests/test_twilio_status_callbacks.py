"""POST /twilio/status: signed callbacks are applied, forged and replayed ones are refused."""

import itertools
import uuid

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.support import BOOK_MEETING_REQUEST, is_dialed, place_call
from tests.support.twilio_rest_emulator import Callee, CalleeBehavior

numbers = (f"+141555502{n:02d}" for n in itertools.count(40))


@pytest.fixture()
def ringing_call(twilio_live_server, twilio_emulator) -> dict:
    """A call whose phone rings for a minute: only the callbacks a test sends move it on."""
    phone = next(numbers)
    twilio_emulator.emulator.set_callee(phone, Callee(CalleeBehavior.NO_ANSWER, ring_seconds=60))
    with httpx.Client(base_url=twilio_live_server, timeout=30) as client:
        return {**place_call(client, dict(BOOK_MEETING_REQUEST, phone=phone), until=is_dialed), "phone": phone}


def status_url(base_url: str, call_id: str) -> str:
    return f"{base_url}/twilio/status?call_id={call_id}"


def params_for(emulator, call: dict, status: str, **extra) -> dict[str, str]:
    return {
        "AccountSid": emulator.account_sid,
        "CallSid": call["twilio_call_sid"],
        "CallStatus": status,
        "To": call["phone"],
        "From": "+15005550006",
        "ApiVersion": "2010-04-01",
        "Direction": "outbound-api",
        **extra,
    }


def post_signed(url: str, params: dict, token: str, sent_params: dict | None = None) -> httpx.Response:
    signature = RequestValidator(token).compute_signature(url, params)
    return httpx.post(url, data=sent_params if sent_params is not None else params, headers={"X-Twilio-Signature": signature})


def shown(base_url: str, call: dict) -> dict:
    return httpx.get(f"{base_url}/calls/{call['id']}").json()


def test_signed_callback_is_applied_to_the_job(twilio_live_server, twilio_emulator, ringing_call):
    emulator = twilio_emulator.emulator
    answer = post_signed(
        status_url(twilio_live_server, ringing_call["id"]), params_for(emulator, ringing_call, "ringing"), emulator.auth_token
    )

    assert answer.status_code == 200
    assert answer.json()["telephony_status"] == "ringing"
    assert shown(twilio_live_server, ringing_call)["telephony_status"] == "ringing"


def test_forged_or_unsigned_callback_is_refused(twilio_live_server, twilio_emulator, ringing_call):
    emulator = twilio_emulator.emulator
    url = status_url(twilio_live_server, ringing_call["id"])
    params = params_for(emulator, ringing_call, "completed")

    forged = post_signed(url, params, "someone-elses-token")
    unsigned = httpx.post(url, data=params)

    assert forged.status_code == 403 and "X-Twilio-Signature" in forged.json()["detail"]
    assert unsigned.status_code == 403
    assert shown(twilio_live_server, ringing_call)["status"] == "pending"


def test_valid_signature_replayed_with_other_params_or_for_another_call_is_refused(
    twilio_live_server, twilio_emulator, ringing_call
):
    emulator = twilio_emulator.emulator
    url = status_url(twilio_live_server, ringing_call["id"])
    ringing = params_for(emulator, ringing_call, "ringing")
    assert post_signed(url, ringing, emulator.auth_token).status_code == 200
    signature = RequestValidator(emulator.auth_token).compute_signature(url, ringing)

    with_other_params = httpx.post(url, data={**ringing, "CallStatus": "completed"}, headers={"X-Twilio-Signature": signature})
    with_extra_param = httpx.post(url, data={**ringing, "AnsweredBy": "machine_start"}, headers={"X-Twilio-Signature": signature})
    other_call_url = status_url(twilio_live_server, str(uuid.uuid4()))
    for_other_call = httpx.post(other_call_url, data=ringing, headers={"X-Twilio-Signature": signature})

    assert [a.status_code for a in (with_other_params, with_extra_param, for_other_call)] == [403, 403, 403]
    assert shown(twilio_live_server, ringing_call)["status"] == "pending"


def test_callback_signed_for_another_account_is_refused(twilio_live_server, twilio_emulator, ringing_call):
    emulator = twilio_emulator.emulator
    params = params_for(emulator, ringing_call, "completed", AccountSid="AC" + "9" * 32)
    answer = post_signed(status_url(twilio_live_server, ringing_call["id"]), params, emulator.auth_token)
    assert answer.status_code == 403 and "AccountSid" in answer.json()["detail"]


def test_callback_for_an_unknown_call_is_404_and_for_another_call_sid_409(twilio_live_server, twilio_emulator, ringing_call):
    emulator = twilio_emulator.emulator
    unknown = post_signed(
        status_url(twilio_live_server, str(uuid.uuid4())), params_for(emulator, ringing_call, "ringing"), emulator.auth_token
    )
    other_sid = post_signed(
        status_url(twilio_live_server, ringing_call["id"]),
        params_for(emulator, ringing_call, "ringing", CallSid="CA" + "7" * 32),
        emulator.auth_token,
    )
    assert unknown.status_code == 404 and "unknown or has expired" in unknown.json()["detail"]
    assert other_sid.status_code == 409


@pytest.mark.parametrize(
    ("twilio_status", "status", "error"),
    [
        ("busy", "completed", None),
        ("no-answer", "completed", None),
        ("canceled", "completed", None),
        ("failed", "failed", "telephony: Twilio reported the call failed (SIP 503)"),
    ],
)
def test_call_twilio_could_not_connect_ends_as_no_answer_and_frees_the_number(
    twilio_live_server, twilio_emulator, ringing_call, twilio_status, status, error
):
    emulator = twilio_emulator.emulator
    params = params_for(emulator, ringing_call, twilio_status, SipResponseCode="503" if twilio_status == "failed" else "486")
    assert post_signed(status_url(twilio_live_server, ringing_call["id"]), params, emulator.auth_token).status_code == 200

    call = shown(twilio_live_server, ringing_call)

    assert (call["status"], call["outcome"], call["telephony_status"], call["error"]) == (
        status,
        "no_answer",
        twilio_status,
        error,
    )
    again = httpx.post(f"{twilio_live_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone=ringing_call["phone"]))
    assert again.status_code == 202


def test_exact_replay_is_harmless_and_a_status_never_moves_back(twilio_live_server, twilio_emulator, ringing_call):
    emulator = twilio_emulator.emulator
    url = status_url(twilio_live_server, ringing_call["id"])
    ringing = params_for(emulator, ringing_call, "ringing")
    no_answer = params_for(emulator, ringing_call, "no-answer")
    assert post_signed(url, ringing, emulator.auth_token).status_code == 200
    assert post_signed(url, no_answer, emulator.auth_token).status_code == 200
    ended = shown(twilio_live_server, ringing_call)

    # Twilio retries, and an attacker can resend what they saw: both land on an ended call.
    assert post_signed(url, no_answer, emulator.auth_token).status_code == 200
    assert post_signed(url, ringing, emulator.auth_token).status_code == 200

    after = shown(twilio_live_server, ringing_call)
    assert after["telephony_status"] == "no-answer"
    assert (after["status"], after["outcome"], after["ended_at"]) == (ended["status"], ended["outcome"], ended["ended_at"])


@pytest.mark.parametrize("form", [{"CallStatus": "exploded"}, {"AnsweredBy": "robot"}, {}])
def test_signed_callback_with_unknown_values_names_the_field(twilio_live_server, twilio_emulator, ringing_call, form):
    emulator = twilio_emulator.emulator
    params = {"AccountSid": emulator.account_sid, "CallSid": ringing_call["twilio_call_sid"], **form}
    answer = post_signed(status_url(twilio_live_server, ringing_call["id"]), params, emulator.auth_token)
    assert answer.status_code == 422
    assert any(name in answer.json()["detail"] for name in ("CallStatus", "AnsweredBy"))


async def test_call_whose_context_expired_still_gets_its_outcome_row_and_frees_the_number(tmp_path):
    from sqlmodel import Session

    from after_call.telephony_verdicts import TelephonyProgress
    from control_api.telephony.call_progress import apply_report
    from models.call_job import CallJob
    from models.database import init_db, make_engine
    from models.session_store import MemorySessionStore, call_key
    from models.settings import Settings
    from models.tables import Call
    from tests.support import services_for

    engine = make_engine(f"sqlite:///{tmp_path / 'calls.db'}")
    init_db(engine)
    services = services_for(Settings(_env_file=None), MemorySessionStore(), engine)
    job = CallJob(context_id=uuid.uuid4(), phone="+14155550299", twilio_call_sid="CA" + "5" * 32)
    await services.store.set(call_key(job.id), job.model_dump_json(), 600)  # the job, but no context any more
    await services.store.claim_phone(job.phone, job.id)

    await apply_report(services, job, TelephonyProgress(status="no-answer", call_sid=job.twilio_call_sid))

    with Session(engine) as db:
        record = db.get(Call, str(job.id))
    assert (record.status, record.outcome, record.telephony_status) == ("completed", "no_answer", "no-answer")
    assert await services.store.claim_phone(job.phone, uuid.uuid4()) is None  # the lock was released
