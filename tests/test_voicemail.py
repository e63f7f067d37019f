"""A machine that answers gets a short message after the beep (or, by setting, a hang-up)."""

from collections.abc import Iterator

import httpx
import pytest

from models.call_request import CallRequest
from prompts.context_builder import build_context
from prompts.voicemail_message import voicemail_message
from scripts.local_server import running_server
from tests.support import BOOK_MEETING_REQUEST, TWILIO_FROM_NUMBER, server_env, wait_for_end
from tests.support.twilio_rest_emulator import Callee, CalleeBehavior


@pytest.fixture(scope="module")
def voicemail_server(tmp_path_factory, twilio_emulator) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("server-voicemail")
    env = server_env(
        tmp,
        TELEPHONY_PROVIDER="twilio",
        TWILIO_FROM_NUMBER=TWILIO_FROM_NUMBER,
        VOICEMAIL_ACTION="leave_message",
        RECORDINGS_DIR=str(tmp / "recordings"),
        **twilio_emulator.env(),
    )
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url


def test_the_message_says_who_called_why_and_how_to_call_back():
    context = build_context(CallRequest(**BOOK_MEETING_REQUEST))
    message = voicemail_message(context, "+15005550006")

    assert context.product in message and "meeting" in message and len(message) < 300
    assert "1 5 0 0 5 5 5 0 0 0 6" in message and "example.com/book/brightside" in message


def test_machine_gets_a_message_after_the_beep_then_a_hang_up(voicemail_server, twilio_emulator):
    phone = "+14155550160"
    twilio_emulator.emulator.set_callee(phone, Callee(CalleeBehavior.MACHINE, amd_seconds=0.5))
    answer = httpx.post(f"{voicemail_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone), timeout=30)
    assert answer.status_code == 202, answer.text
    call = answer.json()

    shown = wait_for_end(voicemail_server, call["id"])
    sent = twilio_emulator.emulator.call(shown["twilio_call_sid"])

    assert sent.first("MachineDetection") == "DetectMessageEnd"
    assert sent.answered_by == "machine_end_beep"
    assert shown["outcome"] == "voicemail" and shown["voicemail_left"] is True
    agent_lines = [e["text"] for e in shown["transcript"] if e["role"] == "agent"]
    assert "call us back" in agent_lines[-1]
    # The message played to its end before the REST hang-up.
    assert "call-end" in sent.stream_report["marks_echoed"], sent.stream_report
    assert {"Status": ["completed"]} in sent.updates


def test_with_hang_up_the_machine_is_hung_up_on_without_a_message(twilio_live_server, twilio_emulator):
    phone = "+14155550161"
    twilio_emulator.emulator.set_callee(phone, Callee(CalleeBehavior.MACHINE, amd_seconds=1.0))
    call = httpx.post(f"{twilio_live_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone), timeout=30).json()

    shown = wait_for_end(twilio_live_server, call["id"])
    sent = twilio_emulator.emulator.call(shown["twilio_call_sid"])

    assert sent.first("MachineDetection") == "Enable" and sent.answered_by == "machine_start"
    assert shown["outcome"] == "voicemail" and shown["voicemail_left"] is False
    assert not any("call us back" in e["text"] for e in shown["transcript"])


@pytest.fixture(scope="module", params=["leave_message", "hang_up"])
def simulated_machine(request, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A server whose simulated callee is an answering machine, with each VOICEMAIL_ACTION."""
    tmp = tmp_path_factory.mktemp(f"server-simulated-machine-{request.param}")
    env = server_env(tmp, TELEPHONY_PROVIDER="simulator", SIMULATOR_SCENARIO="voicemail", VOICEMAIL_ACTION=request.param)
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url, request.param


def test_the_simulator_covers_both_voicemail_actions(simulated_machine):
    base_url, action = simulated_machine
    answer = httpx.post(f"{base_url}/calls", json=dict(BOOK_MEETING_REQUEST, phone="+14155550162"), timeout=30)
    assert answer.status_code == 202, answer.text

    shown = wait_for_end(base_url, answer.json()["id"])
    left_message = any("call us back" in e["text"] for e in shown["transcript"] if e["role"] == "agent")

    assert shown["outcome"] == "voicemail"
    assert shown["voicemail_left"] is (action == "leave_message")
    assert left_message is (action == "leave_message")
