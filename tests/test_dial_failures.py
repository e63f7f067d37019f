"""A dial that fails shows as a failed call with its reason; the built-in simulator reaches the server it
runs in whatever PUBLIC_BASE_URL says; and a PUBLIC_BASE_URL that is not where the server listens is
warned about at start-up.

As a new user found it (issue 11, case 12): `uvicorn ... --port 8311` with the default PUBLIC_BASE_URL
(port 8000), the form submitted, and the page said "pending / Waiting for the call to connect..."
for ever, because the simulated callee dialed port 8000 and its failure went nowhere.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scripts.local_server import free_port, running_server
from tests.support import (
    BOOK_MEETING_REQUEST,
    CHROMIUM,
    CHROMIUM_ARGS,
    TWILIO_FROM_NUMBER,
    fill_form,
    server_env,
    serving,
    wait_for_call,
)

STARTUP_WARNING = "public_base_url_not_where_server_listens"


@dataclass
class Server:
    base_url: str
    log_path: Path

    def log_events(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]


def submit_form(server: Server, phone: str) -> dict:
    created = httpx.post(f"{server.base_url}/form/calls", json=dict(BOOK_MEETING_REQUEST, phone=phone), timeout=30)
    assert created.status_code == 202, created.text
    return created.json()


def status_until(created: dict, done, deadline_s: float = 60) -> dict:
    """Poll the form's view of the call (as the page does) until `done` holds; the deadline only guards a hang."""
    deadline = time.monotonic() + deadline_s
    while True:
        shown = httpx.get(created["view_url"], headers={"X-Call-Token": created["view_token"]}, timeout=30).json()
        if done(shown) or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


# --- the simulator on a server whose PUBLIC_BASE_URL names another port ----------------------------


@pytest.fixture(scope="module")
def misdirected_server(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("misdirected")
    nobody_there = f"http://127.0.0.1:{free_port()}"
    env = server_env(tmp, TELEPHONY_PROVIDER="simulator", PUBLIC_BASE_URL=nobody_there, SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield Server(base_url, tmp / "server.log")


def test_the_simulated_callee_reaches_the_server_it_runs_in_whatever_public_base_url_says(misdirected_server):
    created = submit_form(misdirected_server, "+14155550311")

    shown = status_until(created, lambda call: call["status"] != "pending")

    assert shown["status"] in ("in_progress", "completed"), shown


def test_a_public_base_url_that_is_not_where_the_server_listens_is_warned_about_at_start_up(misdirected_server):
    deadline = time.monotonic() + 30
    while not (warnings := [e for e in misdirected_server.log_events() if e.get("event") == STARTUP_WARNING]):
        assert time.monotonic() < deadline, "no start-up warning about PUBLIC_BASE_URL"
        time.sleep(0.2)

    [warning] = warnings
    assert warning["level"] == "warning"
    assert warning["listening"] == [misdirected_server.base_url]


# --- a simulated dial that cannot connect ----------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable_simulator_server(tmp_path_factory, redis_server) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("unreachable-simulator")
    env = server_env(
        tmp,
        TELEPHONY_PROVIDER="simulator",
        SIMULATOR_WS_URL=f"ws://127.0.0.1:{free_port()}/ws",
        REDIS_URL=redis_server.url,
    )
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield Server(base_url, tmp / "server.log")


def test_a_simulated_dial_that_cannot_connect_marks_the_call_failed_with_its_reason(unreachable_simulator_server, redis_server):
    created = submit_form(unreachable_simulator_server, "+14155550312")

    shown = status_until(created, lambda call: call["status"] != "pending")

    assert shown["status"] == "failed", shown
    assert "could not reach" in shown["error"] and "ConnectionRefusedError" in shown["error"]
    # The same on the API, from the durable Call row, and in the session store's job.
    api_view = httpx.get(created["status_url"], timeout=30).json()
    assert (api_view["status"], api_view["error"]) == ("failed", shown["error"])
    job = json.loads(redis.Redis(port=redis_server.port).get(f"call:{created['id']}"))
    assert (job["status"], job["error"]) == ("failed", shown["error"])


def test_a_server_whose_public_base_url_is_where_it_listens_gives_no_start_up_warning(unreachable_simulator_server):
    httpx.get(f"{unreachable_simulator_server.base_url}/health", timeout=30)

    assert [e for e in unreachable_simulator_server.log_events() if e.get("event") == STARTUP_WARNING] == []


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_the_page_shows_a_call_whose_dial_failed_as_failed_with_its_reason(unreachable_simulator_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(unreachable_simulator_server.base_url + "/")
            fill_form(page, "+14155550313")

            page.click("#submit")
            page.wait_for_selector("body[data-call-ended]", state="attached", timeout=60_000)

            assert page.text_content("#call-status") == "failed"
            assert page.text_content("#call-ended").startswith("The call failed: the simulated callee could not reach")
        finally:
            browser.close()


# --- a Twilio dial that Twilio refuses -------------------------------------------------------------

REFUSED_NUMBER = "+14155550314"


def refusing_twilio() -> Starlette:
    """Twilio's Calls endpoint answering as it does for a number it will not call (error 21211)."""

    async def create_call(_request: Request) -> JSONResponse:
        message = f"The 'To' number {REFUSED_NUMBER} is not a valid phone number."
        return JSONResponse(
            {"code": 21211, "message": message, "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400},
            status_code=400,
        )

    return Starlette(routes=[Route("/2010-04-01/Accounts/{account_sid}/Calls.json", create_call, methods=["POST"])])


def test_a_twilio_dial_that_twilio_refuses_marks_the_call_failed_with_twilios_reason(tmp_path):
    with serving(refusing_twilio()) as twilio_url:
        env = server_env(
            tmp_path,
            TELEPHONY_PROVIDER="twilio",
            TWILIO_ACCOUNT_SID="AC" + "1" * 32,
            TWILIO_AUTH_TOKEN="test-auth-token",
            TWILIO_FROM_NUMBER=TWILIO_FROM_NUMBER,
            TWILIO_API_BASE_URL=twilio_url,
        )
        with (
            running_server(env, log_path=tmp_path / "server.log") as base_url,
            httpx.Client(base_url=base_url, timeout=30) as client,
        ):
            answer = client.post("/calls", json=dict(BOOK_MEETING_REQUEST, phone=REFUSED_NUMBER))
            assert answer.status_code == 202, answer.text
            shown = wait_for_call(client, answer.json()["id"], lambda call: call["status"] == "failed")

    assert "21211" in shown["error"] and "is not a valid phone number" in shown["error"]
    assert REFUSED_NUMBER not in str(shown)  # Twilio's message names the number: shown masked
    assert REFUSED_NUMBER not in (tmp_path / "server.log").read_text()
