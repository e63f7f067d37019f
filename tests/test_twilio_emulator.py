"""The Twilio REST emulator answers the real twilio client the way Twilio does."""

import asyncio

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from models.settings import Settings
from services.twilio_account import TwilioAccount, TwilioRestHttpClient
from tests.support import TWILIO_FROM_NUMBER


def account_for(emulator, auth_token: str | None = None) -> TwilioAccount:
    settings = Settings(
        _env_file=None,
        twilio_account_sid=emulator.emulator.account_sid,
        twilio_auth_token=auth_token or emulator.emulator.auth_token,
        twilio_from_number=TWILIO_FROM_NUMBER,
        twilio_api_base_url=emulator.base_url,
    )
    return TwilioAccount(settings)


def test_requests_to_twilio_hosts_are_sent_to_the_configured_root():
    client = TwilioRestHttpClient("http://127.0.0.1:9999")
    assert (
        client._target("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?x=1")
        == "http://127.0.0.1:9999/2010-04-01/Accounts/AC1/Calls.json?x=1"
    )
    assert client._target("https://example.com/media.wav") == "https://example.com/media.wav"


async def test_wrong_credentials_are_refused_with_twilios_error(twilio_emulator):
    account = account_for(twilio_emulator, auth_token="not-the-token")
    with pytest.raises(TwilioRestException) as refused:
        await account.send_sms("+14155550191", "hello")
    await account.aclose()
    assert refused.value.status == 401 and refused.value.code == 20003


async def test_message_is_created_then_delivered_and_listed(twilio_emulator):
    account = account_for(twilio_emulator)
    sid = await account.send_sms("+14155550192", "Your order summary: solar panels.")
    await asyncio.sleep(0.3)
    listed = await account.client.messages.list_async(to="+14155550192")
    fetched = await account.client.messages(sid).fetch_async()
    await account.aclose()

    assert sid.startswith("SM") and len(sid) == 34
    assert [m.sid for m in listed] == [sid]
    assert fetched.body == "Your order summary: solar panels." and fetched.from_ == TWILIO_FROM_NUMBER
    assert fetched.status == "delivered"


async def test_updating_an_unknown_call_is_twilios_404(twilio_emulator):
    account = account_for(twilio_emulator)
    with pytest.raises(TwilioRestException) as missing:
        await account.hang_up("CA" + "0" * 32)
    await account.aclose()
    assert missing.value.status == 404 and missing.value.code == 20404


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": TWILIO_FROM_NUMBER, "Twiml": "<Response/>"}, 21201),
        ({"To": "+14155550193", "Twiml": "<Response/>"}, 21213),
        ({"To": "+14155550193", "From": TWILIO_FROM_NUMBER}, 21205),
        ({"To": "+14155550193", "From": TWILIO_FROM_NUMBER, "Twiml": "<Response><Say>unclosed"}, 12100),
        ({"To": "+14155550193", "From": TWILIO_FROM_NUMBER, "Twiml": "<Response/>", "StatusCallbackEvent": "hung-up"}, 21626),
    ],
)
def test_bad_call_requests_get_twilios_error_codes(twilio_emulator, form, code):
    emulator = twilio_emulator.emulator
    answer = httpx.post(
        f"{twilio_emulator.base_url}/2010-04-01/Accounts/{emulator.account_sid}/Calls.json",
        data=form,
        auth=(emulator.account_sid, emulator.auth_token),
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == code and answer.json()["status"] == 400
