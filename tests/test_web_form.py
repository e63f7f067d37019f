"""The web form in a real browser (Debian's chromium driven by Playwright) against a real server.

The browser is the system's /usr/bin/chromium: `playwright install` (a browser download) is never
needed. With TELEPHONY_PROVIDER=simulator the server's built-in simulated callee answers the call.
"""

import os
import shutil
from pathlib import Path

import pytest

from scripts.local_server import running_server
from tests.support import fill_form, server_env


@pytest.fixture(scope="module")
def form_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("form-server")
    env = server_env(tmp, TELEPHONY_PROVIDER="simulator", SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url


def test_form_places_a_call_and_follows_it_to_its_outcome(form_server, page, tmp_path):
    page.goto(form_server + "/")
    assert page.title() == "Request a call"
    fill_form(page, "+14155550251")

    page.click("#submit")
    page.wait_for_selector("#call:not([hidden])", timeout=15_000)
    assert page.is_hidden("#call-form")
    page.wait_for_selector("body[data-call-ended]", state="attached", timeout=150_000)

    screenshot = tmp_path / "form-call-ended.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / screenshot.name)
    assert page.text_content("#call-status") == "completed"
    assert page.text_content("#call-outcome") == "meeting booked"
    assert page.text_content("#call-ended") == "The call ended: meeting booked."
    lines = page.locator("#transcript li").all_text_contents()
    assert lines[0].startswith("Assistant: Hi Alex!")
    assert any(line.startswith("Caller:") for line in lines)
    assert page.locator("#answers dt").count() >= 1
    assert page.console_errors == []  # no CSP violation, no script error


def test_form_shows_what_is_wrong_next_to_the_field_and_calls_nobody(form_server, page):
    page.goto(form_server + "/")
    fill_form(page, "0415 555 0123")
    page.uncheck("#consent")

    page.click("#submit")
    page.wait_for_selector("#form-error:not([hidden])", timeout=10_000)

    assert "E.164" in page.text_content('.field-error[data-for="phone"]')
    assert "consent" in page.text_content('.field-error[data-for="consent"]')
    assert page.get_attribute("#phone", "aria-invalid") == "true"
    assert page.is_hidden("#call")
