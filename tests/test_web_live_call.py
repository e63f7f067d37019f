"""The web page follows a call live (the transcript grows while it runs) and then plays its recording."""

import time

import pytest

from scripts.local_server import running_server
from tests.support import fill_form, server_env


@pytest.fixture(scope="module")
def live_form_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live-form-server")
    env = server_env(tmp, TELEPHONY_PROVIDER="simulator", SILENCE_TIMEOUT_SECONDS="3", RECORDINGS_DIR=str(tmp / "recordings"))
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url


def settle(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the page never got there")
        time.sleep(0.1)


def test_transcript_grows_during_the_call_and_the_recording_plays_after(live_form_server, page):
    page.goto(live_form_server + "/")
    fill_form(page, "+14155550261")
    page.click("#submit")

    # While the call is still in progress, the page already shows the caller's first answer.
    settle(
        lambda: page.locator("#transcript li.caller").count() >= 1 and page.text_content("#call-status") == "in progress",
        timeout=90,
    )
    live_lines = page.locator("#transcript li").count()
    assert live_lines >= 2
    assert page.is_hidden("#recording-block")

    page.wait_for_selector("body[data-call-ended]", state="attached", timeout=150_000)
    assert page.locator("#transcript li").count() > live_lines
    page.wait_for_selector("#recording-block:not([hidden])", timeout=10_000)
    source = page.get_attribute("#recording", "src")
    assert "/recording?token=" in source
    # The browser loads the WAV itself and knows how long the call was.
    audio = page.locator("#recording")
    settle(lambda: audio.evaluate("element => element.readyState") >= 1, timeout=15)
    assert audio.evaluate("element => element.duration") > 5
    without_token = page.request.get(live_form_server + source.split("?")[0])
    assert without_token.status == 401
    assert page.console_errors == []
