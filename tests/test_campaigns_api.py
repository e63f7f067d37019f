"""Campaigns through the API, on both databases: leads queued at the campaign's pace, the invalid and
opted-out ones skipped with their reason, nobody called twice by two campaigns, counts, pause/resume/cancel."""

import time

from tests.support import CALL_REQUEST, DomainApi, end_call

TEMPLATE = {key: value for key, value in CALL_REQUEST.items() if key not in ("phone", "consent", "name")}


def wait_until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)
    return result


def start(api: DomainApi, workspace_id: int, key: dict, **fields):
    body = {"name": "June list", "calls_per_minute": 60, "max_concurrent_calls": 10, "call": TEMPLATE, **fields}
    return api.client.post(f"/workspaces/{workspace_id}/campaigns", json=body, headers=key)


def strategy(api: DomainApi, key: dict) -> int:
    created = api.client.post("/strategies", json={"followup_preset": "BALANCED"}, headers=key).json()
    api.client.post(f"/strategies/{created['id']}/activate", headers=key)
    return created["id"]


def test_a_campaign_calls_its_leads_once_and_reports_the_skipped_with_their_reason(api):
    workspace_id, key = api.workspace()
    strategy(api, key)
    good = [api.lead(key, phone=f"+1415555060{n}")["id"] for n in range(3)]
    opted_out = api.lead(key, phone="+14155550610")["id"]
    api.client.post(f"/leads/{opted_out}/opt-out", headers=key)
    no_consent = api.lead(key, phone="+14155550611", consent=False)["id"]

    answer = start(api, workspace_id, key, lead_ids=[*good, opted_out, no_consent, 987654])

    assert answer.status_code == 201, answer.text
    campaign = answer.json()
    assert {(s["lead_id"], s["reason"]) for s in campaign["skipped"]} == {
        (opted_out, "opted_out"),
        (no_consent, "no_consent"),
        (987654, "unknown_lead"),
    }
    wait_until(lambda: len(api.dialer.dialed) == 3)
    shown = api.client.get(f"/campaigns/{campaign['id']}", headers=key).json()
    assert shown["counts"]["in_progress"] == 3 and shown["status"] == "active"
    assert shown["counts"]["skipped_by_reason"] == {"opted_out": 1, "no_consent": 1}
    assert sorted(job.phone for job, _ in api.dialer.dialed) == [f"+1415555060{n}" for n in range(3)]

    # A second campaign over the same leads while the first runs: nobody is called twice.
    second = start(api, workspace_id, key, name="Again", lead_ids=good).json()
    assert {s["reason"] for s in second["skipped"]} == {"already_in_a_live_call_attempt"}
    assert second["status"] == "finished"

    for job, _ in list(api.dialer.dialed):
        end_call(api.client, str(job.id), "meeting_booked")
    ended = wait_until(
        lambda: (c := api.client.get(f"/campaigns/{campaign['id']}", headers=key).json())["status"] == "finished" and c
    )
    assert ended["counts"]["completed"] == 3 and ended["counts"]["completed_by_outcome"] == {"meeting_booked": 3}
    assert len(api.dialer.dialed) == 3

    paused = api.client.post(f"/campaigns/{campaign['id']}/pause", headers=key)
    assert paused.status_code == 409 and "finished" in paused.json()["detail"]


def test_a_paused_campaign_dials_nobody_until_resumed_and_a_canceled_one_never(api):
    workspace_id, key = api.workspace()
    strategy(api, key)
    leads = [api.lead(key, phone=f"+1415555062{n}")["id"] for n in range(2)]
    campaign = start(api, workspace_id, key, lead_ids=leads[:1]).json()
    wait_until(lambda: len(api.dialer.dialed) == 1)

    other = start(api, workspace_id, key, name="Later", lead_ids=leads[1:]).json()
    # Paused right away; whatever was already handed out is put back when the worker sees the pause.
    assert api.client.post(f"/campaigns/{other['id']}/pause", headers=key).json()["status"] == "paused"
    assert api.client.post(f"/campaigns/{other['id']}/pause", headers=key).status_code == 409
    canceled = api.client.post(f"/campaigns/{campaign['id']}/cancel", headers=key).json()
    assert canceled["status"] == "canceled"

    resumed = api.client.post(f"/campaigns/{other['id']}/resume", headers=key)
    assert resumed.json()["status"] == "active"
    wait_until(lambda: len(api.dialer.dialed) == 2)


def test_a_campaign_request_is_checked_field_by_field(api):
    workspace_id, key = api.workspace()
    no_strategy = start(api, workspace_id, key, lead_ids=[1])
    assert no_strategy.status_code == 422 and no_strategy.json()["detail"][0]["loc"][-1] == "strategy_version_id"
    strategy(api, key)
    bad = start(api, workspace_id, key, lead_ids=[1], calls_per_minute=0, call={**TEMPLATE, "goal": "sell_everything"})
    assert bad.status_code == 422
    assert {problem["loc"][-1] for problem in bad.json()["detail"]} == {"calls_per_minute", "call"}
    nobody = start(api, workspace_id, key)
    assert nobody.status_code == 422
    other_workspace, _ = api.workspace("Globex")
    assert start(api, other_workspace, key, lead_ids=[1]).status_code == 404
