"""The campaign page follows a campaign live: its counts change on the page, without a reload, as the
campaign's calls are placed and end (a real browser; simulated callees answer each call)."""

import time

import httpx
import pytest

from scripts.local_server import running_server
from tests.support import CALL_REQUEST, server_env

TEMPLATE = {key: value for key, value in CALL_REQUEST.items() if key not in ("phone", "consent", "name")}
LEADS = 3


@pytest.fixture(scope="module")
def campaign_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("campaign-page-server")
    # A machine answers each call and the agent hangs up on it: a call ends within seconds.
    env = server_env(tmp, TELEPHONY_PROVIDER="simulator", SIMULATOR_SCENARIO="voicemail", QUEUE_POLL_SECONDS="0.5")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url


def start_campaign(base_url: str) -> tuple[int, str]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        created = http.post("/workspaces", json={"name": "Acme"}).json()
        key = created["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        strategy = http.post("/strategies", json={"followup_preset": "BALANCED"}, headers=auth).json()
        http.post(f"/strategies/{strategy['id']}/activate", headers=auth).raise_for_status()
        leads = [
            http.post("/leads", json={"phone": f"+1415555071{n}", "consent": True}, headers=auth).json()["id"]
            for n in range(LEADS)
        ]
        body = {
            "name": "June list",
            "lead_ids": leads,
            # One dial every 4 s: the page has time to show each step.
            "calls_per_minute": 15,
            "max_concurrent_calls": 1,
            "retry": {"max_attempts": 1},
            "call": TEMPLATE,
        }
        answer = http.post(f"/workspaces/{created['workspace']['id']}/campaigns", json=body, headers=auth)
        assert answer.status_code == 201, answer.text
        return answer.json()["id"], key


def shown(page) -> dict:
    return page.evaluate(
        """() => ({
            status: document.getElementById("campaign-status").textContent,
            queued: Number(document.getElementById("count-queued").textContent),
            scheduled: Number(document.getElementById("count-scheduled").textContent),
            in_progress: Number(document.getElementById("count-in_progress").textContent),
            completed: Number(document.getElementById("count-completed").textContent),
            failed: Number(document.getElementById("count-failed").textContent),
            outcomes: [...document.querySelectorAll("#by-outcome li[data-key]")].map((li) => li.textContent),
        })"""
    )


def test_the_campaign_page_counts_change_live_as_the_calls_complete(campaign_server, page):
    campaign_id, key = start_campaign(campaign_server)

    page.goto(f"{campaign_server}/campaign#id={campaign_id}&key={key}")
    page.wait_for_selector("#campaign:not([hidden])", timeout=10_000)
    page.evaluate("window.sameDocument = true")  # gone if the page reloaded

    seen = []
    deadline = time.monotonic() + 120
    while (state := shown(page))["status"] != "finished":
        assert time.monotonic() < deadline, f"the page never showed the campaign finished; last: {seen[-3:]}"
        if not seen or seen[-1] != state:
            seen.append(state)
        time.sleep(0.1)
    seen.append(state)

    ended = [s["completed"] + s["failed"] for s in seen]
    # The page showed the campaign part-way (calls waiting or running, some ended) and then all ended.
    assert any(s["queued"] + s["scheduled"] + s["in_progress"] > 0 for s in seen)
    assert len(set(ended)) >= 3 and ended == sorted(ended)
    assert ended[-1] == LEADS
    assert state["queued"] + state["scheduled"] + state["in_progress"] == 0
    assert sum(int(line.rsplit(": ", 1)[1]) for line in state["outcomes"]) == state["completed"]
    assert page.evaluate("window.sameDocument") is True
    assert page.console_errors == []


def test_a_wrong_key_is_named_on_the_page(campaign_server, page):
    campaign_id, _ = start_campaign(campaign_server)

    page.goto(f"{campaign_server}/campaign#id={campaign_id}&key=wk_not-a-key")

    page.wait_for_selector("#campaign-error:not([hidden])", timeout=10_000)
    assert "key" in page.text_content("#campaign-error")
    assert page.is_hidden("#campaign")
