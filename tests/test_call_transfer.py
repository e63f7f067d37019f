"""A caller who asks for a person is handed to the workspace's transfer number, or offered a callback."""

import json
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from models.call_request import CallRequest
from models.enums import CallOutcome
from prompts.caller_intent import Intent, classify
from prompts.context_builder import build_context
from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST
from simulator.caller_scripts import CallerLine
from tests.support import BOOK_MEETING_REQUEST, post_call, server_env, wait_for_end
from tests.support.twilio_rest_emulator import Callee, CalleeBehavior
from voice_worker.rule_agent import RuleBasedAgent

TRANSFER_NUMBER = "+14155550999"


@pytest.mark.parametrize("said", ["can i talk to a human", "can i speak to a person please", "transfer me to someone"])
def test_asking_for_a_person_is_recognized(said):
    assert classify(said) is Intent.HUMAN


def test_rule_agent_hands_over_only_when_the_workspace_has_someone():
    context = build_context(CallRequest(**DEMO_REQUEST))
    with_person = RuleBasedAgent(context, can_transfer=True).reply("can i talk to a human")
    alone = RuleBasedAgent(context, can_transfer=False)
    offer = alone.reply("can i talk to a human")
    accepted = alone.reply("yes please")

    assert with_person.end_outcome is CallOutcome.TRANSFERRED and "connecting you" in with_person.text
    assert offer.end_outcome is None and "call you back" in offer.text
    assert accepted.end_outcome is CallOutcome.CALLBACK_REQUESTED


@pytest.mark.parametrize("number", ["0415 555 999", "+1415CALLNOW", "+999123"])
def test_a_transfer_number_that_is_not_e164_is_refused_naming_the_field(api, number):
    created = api.client.post("/workspaces", json={"name": "A", "transfer_number": number})
    other_id, key = api.workspace("B")
    patched = api.client.patch(f"/workspaces/{other_id}", json={"transfer_number": number}, headers=key)

    for answer in (created, patched):
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"][-1] == "transfer_number"
        assert "transfer_number" in answer.json()["detail"][0]["msg"]


def test_a_valid_transfer_number_is_stored_canonically(api):
    workspace_id, key = api.workspace("A", transfer_number="+1 (415) 555-0999")
    shown = api.client.get(f"/workspaces/{workspace_id}", headers=key).json()
    cleared = api.client.patch(f"/workspaces/{workspace_id}", json={"transfer_number": None}, headers=key).json()

    assert shown["transfer_number"] == TRANSFER_NUMBER
    assert cleared["transfer_number"] is None


def workspace_key(base_url: str, **fields) -> dict[str, str]:
    answer = httpx.post(f"{base_url}/workspaces", json={"name": "Transfers", **fields}, timeout=30)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['api_key']}"}


async def test_on_the_simulator_a_transfer_ends_the_stream_with_the_outcome_and_target(live_server):
    from models.context import ContextInstance
    from simulator.callee import SimulatedCaller

    key = workspace_key(live_server, transfer_number=TRANSFER_NUMBER)
    async with httpx.AsyncClient(base_url=live_server, headers=key, timeout=30) as http:
        call = await post_call(http, dict(BOOK_MEETING_REQUEST, phone="+14155550150"))
        ContextInstance.model_validate((await http.get(f"/contexts/{call['context_id']}")).json())
        stream = call["stream"]
        caller = SimulatedCaller(
            live_server.replace("http", "ws", 1) + "/ws",
            stream["call_id"],
            stream["token"],
            [CallerLine("can i talk to a human")],
        )
        report = await caller.run()
    shown = wait_for_end(live_server, call["id"], key)

    assert shown["outcome"] == "transferred" and shown["transferred_to"] == TRANSFER_NUMBER
    assert report.hung_up_by == "agent"
    assert "connecting you" in shown["transcript"][-1]["text"]


async def test_without_a_transfer_number_the_agent_offers_a_callback(live_server):
    from simulator.callee import SimulatedCaller

    key = workspace_key(live_server)
    async with httpx.AsyncClient(base_url=live_server, headers=key, timeout=30) as http:
        call = await post_call(http, dict(BOOK_MEETING_REQUEST, phone="+14155550151"))
        stream = call["stream"]
        lines = [CallerLine("can i talk to a human"), CallerLine("yes please")]
        await SimulatedCaller(live_server.replace("http", "ws", 1) + "/ws", stream["call_id"], stream["token"], lines).run()
    shown = wait_for_end(live_server, call["id"], key)

    assert shown["outcome"] == "callback_requested" and shown["transferred_to"] is None
    assert any("call you back" in e["text"] for e in shown["transcript"] if e["role"] == "agent")


def test_on_twilio_the_live_call_is_updated_to_dial_the_transfer_number(twilio_live_server, twilio_emulator):
    phone = "+14155550152"
    key = workspace_key(twilio_live_server, transfer_number=TRANSFER_NUMBER)
    twilio_emulator.emulator.set_callee(phone, Callee(CalleeBehavior.ANSWER, lines=[CallerLine("can i talk to a human")]))
    answer = httpx.post(f"{twilio_live_server}/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone), headers=key, timeout=30)
    assert answer.status_code == 202, answer.text
    call = answer.json()

    shown = wait_for_end(twilio_live_server, call["id"], key)
    sent = twilio_emulator.emulator.call(shown["twilio_call_sid"])
    deadline = time.monotonic() + 10
    while not sent.dialed and time.monotonic() < deadline:
        time.sleep(0.1)

    assert shown["outcome"] == "transferred" and shown["transferred_to"] == TRANSFER_NUMBER
    twiml = next(u["Twiml"][0] for u in sent.updates if "Twiml" in u)
    document = ET.fromstring(twiml)
    assert [verb.tag for verb in document] == ["Say", "Dial"]
    assert document.find("Dial/Number").text == TRANSFER_NUMBER
    # Handed over, not hung up: no Status=completed update, and the emulated phone dialed the person.
    assert not any("Status" in u for u in sent.updates)
    assert sent.dialed == [TRANSFER_NUMBER]


class _OpenAIAsksForTransfer(BaseHTTPRequestHandler):
    """A chat completions endpoint that answers every turn with a transfer_call tool call (streamed)."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        chunks = [
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "transfer_call", "arguments": ""}}
                ]
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"reason": "asked for a human"}'}}]},
        ]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i, delta in enumerate([*chunks, {}]):
            finish = "tool_calls" if i == len(chunks) else None
            body = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *_args):
        pass


@pytest.fixture()
def transferring_openai():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIAsksForTransfer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


async def test_the_llm_transfer_call_tool_hands_the_caller_over(tmp_path, transferring_openai):
    from simulator.callee import SimulatedCaller

    env = server_env(tmp_path, LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=transferring_openai)
    with running_server(env, log_path=tmp_path / "server.log") as base:
        key = workspace_key(base, transfer_number=TRANSFER_NUMBER)
        async with httpx.AsyncClient(base_url=base, headers=key, timeout=30) as http:
            call = await post_call(http, dict(BOOK_MEETING_REQUEST, phone="+14155550153"))
            stream = call["stream"]
            caller = SimulatedCaller(
                base.replace("http", "ws", 1) + "/ws", stream["call_id"], stream["token"], [CallerLine("yes sure")]
            )
            await caller.run()
        shown = wait_for_end(base, call["id"], key)

    assert shown["outcome"] == "transferred" and shown["transferred_to"] == TRANSFER_NUMBER
    assert "connecting you" in [e["text"] for e in shown["transcript"] if e["role"] == "agent"][-1]
