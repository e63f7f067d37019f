"""Dial-out through the real twilio client and the local Twilio emulator, from POST /calls to the stored outcome."""

import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from models.call_request import CallRequest
from prompts.context_builder import build_context
from services.stream_credential import stream_token
from simulator.caller_scripts import caller_script
from tests.support import BOOK_MEETING_REQUEST, TWILIO_FROM_NUMBER, is_dialed, wait_for_end
from tests.support import place_call as place_through_queue
from tests.support.twilio_rest_emulator import Callee, CalleeBehavior


def place_call(base_url: str, phone: str) -> dict:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return place_through_queue(client, dict(BOOK_MEETING_REQUEST, phone=phone), until=is_dialed)


def emulated(twilio_emulator, call_sid: str):
    call = twilio_emulator.emulator.call(call_sid)
    assert call is not None, "the emulator never saw this call"
    return call


def settle(predicate, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_call_is_created_with_twiml_streaming_to_ws_with_the_call_id_and_token(twilio_live_server, twilio_emulator):
    twilio_emulator.emulator.set_callee("+14155550201", Callee(CalleeBehavior.BUSY))
    call = place_call(twilio_live_server, "+14155550201")
    sent = emulated(twilio_emulator, call["twilio_call_sid"])

    assert sent.to == "+14155550201" and sent.from_ == TWILIO_FROM_NUMBER
    twiml = ET.fromstring(sent.first("Twiml"))
    assert [verb.tag for verb in twiml] == ["Connect", "Say", "Hangup"]
    stream = twiml.find("Connect/Stream")
    assert stream.get("url") == twilio_live_server.replace("http://", "ws://") + "/ws"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters == {"call_id": call["id"], "token": stream_token(call["id"], "test-secret-key")}
    assert "could not connect" in twiml.find("Say").text
    callback = sent.first("StatusCallback")
    assert callback == f"{twilio_live_server}/twilio/status?call_id={call['id']}"
    assert sent.params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert (sent.first("MachineDetection"), sent.first("AsyncAmd"), sent.first("AsyncAmdStatusCallback")) == (
        "Enable",
        "true",
        callback,
    )

    shown = wait_for_end(twilio_live_server, call["id"])
    assert (shown["status"], shown["outcome"], shown["telephony_status"]) == ("completed", "no_answer", "busy")
    assert shown["twilio_call_sid"] == call["twilio_call_sid"]
    settle(lambda: len(sent.callbacks) == 3)
    assert [(c.params["CallStatus"], c.status_code) for c in sent.callbacks] == [
        ("initiated", 200),
        ("ringing", 200),
        ("busy", 200),
    ]
    # The number is free again once Twilio said busy.
    assert httpx.post(f"{twilio_live_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone="+14155550201")).status_code == 202


@pytest.mark.parametrize(
    ("behavior", "phone", "status", "error"),
    [
        (CalleeBehavior.NO_ANSWER, "+14155550202", "completed", None),
        (CalleeBehavior.FAILED, "+14155550203", "failed", "telephony: Twilio reported the call failed (SIP 503)"),
    ],
)
def test_unanswered_call_is_stored_as_no_answer(twilio_live_server, twilio_emulator, behavior, phone, status, error):
    twilio_emulator.emulator.set_callee(phone, Callee(behavior))
    call = place_call(twilio_live_server, phone)

    shown = wait_for_end(twilio_live_server, call["id"])

    assert (shown["status"], shown["outcome"], shown["error"]) == (status, "no_answer", error)
    assert shown["telephony_status"] == behavior.value
    assert shown["transcript"] == []


def test_machine_answer_is_hung_up_and_stored_as_voicemail(twilio_live_server, twilio_emulator):
    twilio_emulator.emulator.set_callee("+14155550204", Callee(CalleeBehavior.MACHINE, amd_seconds=1.0))
    call = place_call(twilio_live_server, "+14155550204")

    shown = wait_for_end(twilio_live_server, call["id"])
    sent = emulated(twilio_emulator, call["twilio_call_sid"])
    settle(lambda: sent.status == "completed" and any(c.params.get("CallStatus") == "completed" for c in sent.callbacks))
    settle(lambda: httpx.get(f"{twilio_live_server}/calls/{call['id']}").json()["telephony_status"] == "completed")

    assert shown["outcome"] == "voicemail"
    assert sent.answered_by == "machine_start"
    assert {"Status": ["completed"]} in sent.updates  # we hung up on the machine
    assert not shown["sms_sent"]
    assert [m for m in twilio_emulator.emulator.messages() if m["to"] == "+14155550204"] == []


def test_refused_stream_gets_an_apology_and_a_hang_up_and_a_stored_failure(twilio_live_server, twilio_emulator):
    twilio_emulator.emulator.set_callee("+14155550205", Callee(CalleeBehavior.ANSWER, wrong_stream_token=True))
    call = place_call(twilio_live_server, "+14155550205")

    shown = wait_for_end(twilio_live_server, call["id"])
    sent = emulated(twilio_emulator, call["twilio_call_sid"])

    assert sent.stream_report["close_code"] == 1008 and sent.stream_report["close_reason"] == "wrong_token"
    assert sent.said == ["Sorry, we could not connect this call. Goodbye."]
    assert (shown["status"], shown["outcome"]) == ("failed", "no_answer")
    assert shown["error"] == "telephony: the call ended before its media stream started"
    assert 'voice_streams_rejected_total{reason="wrong_token"}' in httpx.get(f"{twilio_live_server}/metrics").text


def test_answered_call_books_a_meeting_and_texts_the_booking_link_once(twilio_live_server, twilio_emulator):
    phone = "+14155550206"
    request = dict(BOOK_MEETING_REQUEST, phone=phone)
    lines = caller_script("happy", build_context(CallRequest(**request)))  # the templates are deterministic
    twilio_emulator.emulator.set_callee(phone, Callee(CalleeBehavior.ANSWER, lines=lines))
    call = place_call(twilio_live_server, phone)

    shown = wait_for_end(twilio_live_server, call["id"], timeout=120)
    sent = emulated(twilio_emulator, call["twilio_call_sid"])
    settle(lambda: httpx.get(f"{twilio_live_server}/calls/{call['id']}").json()["telephony_status"] == "completed")

    assert shown["outcome"] == "meeting_booked", shown
    assert any(entry["role"] == "caller" for entry in shown["transcript"])
    # The agent ended the call itself, over Twilio's REST API (pipecat's hang-up), not by dropping the stream.
    assert {"Status": ["completed"]} in sent.updates
    assert sent.answered_by == "human"
    assert sent.said == []  # the apology after <Connect> never played
    time.sleep(1.0)  # a second SMS would come right after the first
    texts = [m for m in twilio_emulator.emulator.messages() if m["to"] == phone]
    assert len(texts) == 1
    assert texts[0]["body"].endswith("https://example.com/book/brightside")
    assert texts[0]["from"] == TWILIO_FROM_NUMBER
    assert httpx.get(f"{twilio_live_server}/calls/{call['id']}").json()["sms_sent"] is True
    # The status callback URL carried this call's id, and Twilio signed it.
    assert all(parse_qs(urlsplit(c.url).query)["call_id"] == [call["id"]] for c in sent.callbacks)
