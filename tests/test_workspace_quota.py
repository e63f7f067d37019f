"""A form backend calling with its workspace key is held to the workspace's quota
(WORKSPACE_CALLS_PER_MINUTE), not to the per-address limit meant for browsers (issue 13, item 6)."""

from tests.support import BOOK_MEETING_REQUEST


def test_a_workspace_key_gets_its_quota_not_the_per_address_limit(api_client):
    client = api_client(rate_limit_per_minute=2, workspace_calls_per_minute=4)
    created = client.post("/workspaces", json={"name": "Form backend"}).json()
    key = {"Authorization": f"Bearer {created['api_key']}"}

    answers = [client.post("/calls", json={**BOOK_MEETING_REQUEST, "phone": f"+1415555072{n}"}, headers=key) for n in range(5)]

    assert [a.status_code for a in answers] == [202, 202, 202, 202, 429]
    assert "workspace quota" in answers[-1].json()["detail"] and int(answers[-1].headers["Retry-After"]) >= 1
    # The browsers behind the same address still have their own, smaller limit.
    public = [client.post("/calls", json={**BOOK_MEETING_REQUEST, "phone": f"+1415555073{n}"}) for n in range(3)]
    assert [a.status_code for a in public] == [202, 202, 429]


def test_a_wrong_workspace_key_is_held_to_the_per_address_limit_and_refused(api_client):
    client = api_client(rate_limit_per_minute=1)
    wrong = {"Authorization": "Bearer wsk_not-a-key"}

    first = client.post("/calls", json={**BOOK_MEETING_REQUEST, "phone": "+14155550740"}, headers=wrong)
    second = client.post("/calls", json={**BOOK_MEETING_REQUEST, "phone": "+14155550741"}, headers=wrong)

    assert (first.status_code, second.status_code) == (401, 429)
