"""A workspace registers its Twilio numbers and sets the business settings its inbound calls follow."""

from datetime import UTC, datetime

from models.business_hours import is_open

NUMBER = "+14155550190"


def test_a_registered_number_is_listed_with_the_webhooks_to_configure(api):
    workspace_id, key = api.workspace()

    answer = api.client.post(
        f"/workspaces/{workspace_id}/numbers",
        json={"phone_number": "+1 (415) 555-0190", "forward_to": "+14155550191"},
        headers=key,
    )

    assert answer.status_code == 201, answer.text
    number = answer.json()
    assert (number["phone_number"], number["forward_to"], number["status"]) == (NUMBER, "+14155550191", "active")
    assert number["capabilities"] == ["sms", "voice"]
    assert number["voice_webhook_url"].endswith("/twilio/voice") and number["sms_webhook_url"].endswith("/twilio/sms")
    listed = api.client.get(f"/workspaces/{workspace_id}/numbers", headers=key).json()
    assert [n["phone_number"] for n in listed] == [NUMBER]


def test_a_number_already_registered_by_any_workspace_is_a_conflict(api):
    first_id, first_key = api.workspace("First")
    second_id, second_key = api.workspace("Second")
    assert api.client.post(f"/workspaces/{first_id}/numbers", json={"phone_number": NUMBER}, headers=first_key).status_code == 201

    again = api.client.post(f"/workspaces/{second_id}/numbers", json={"phone_number": NUMBER}, headers=second_key)

    assert again.status_code == 409
    assert "phone_number" in again.json()["detail"] and NUMBER not in again.json()["detail"]


def test_bad_numbers_and_sids_are_refused_naming_the_field(api):
    workspace_id, key = api.workspace()
    url = f"/workspaces/{workspace_id}/numbers"

    not_e164 = api.client.post(url, json={"phone_number": "4155550190"}, headers=key)
    bad_forward = api.client.post(url, json={"phone_number": NUMBER, "forward_to": "+1415555ABCD"}, headers=key)
    bad_sid = api.client.post(url, json={"phone_number": NUMBER, "phone_number_sid": "XX123"}, headers=key)

    assert not_e164.status_code == bad_forward.status_code == bad_sid.status_code == 422
    assert "phone_number" in not_e164.text
    assert "forward_to" in bad_forward.text
    assert "phone_number_sid" in bad_sid.text


def test_another_workspaces_numbers_are_not_found(api):
    first_id, _ = api.workspace("First")
    _, second_key = api.workspace("Second")

    answer = api.client.post(f"/workspaces/{first_id}/numbers", json={"phone_number": NUMBER}, headers=second_key)

    assert answer.status_code == 404


def test_business_settings_take_the_seeds_weekly_shape_and_store_the_workspaces_hours(api):
    workspace_id, key = api.workspace()
    url = f"/workspaces/{workspace_id}/business-settings"
    assert api.client.get(url, headers=key).json()["business_hours"]["saturday"]["enabled"] is False  # seed default

    answer = api.client.patch(
        url,
        json={
            "business_hours": {"monday": {"open": "08:00", "close": "12:00", "enabled": True}, "tuesday": {"enabled": False}},
            "timezone": "America/New_York",
            "trade": "plumbing",
            "auto_response_message": "Sorry we missed you! What do you need?",
        },
        headers=key,
    )

    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["business_hours"]["monday"] == {"open": "08:00", "close": "12:00", "enabled": True}
    assert shown["business_hours"]["tuesday"]["enabled"] is False
    assert shown["auto_response_enabled"] is True and shown["trade"] == "plumbing"
    # One copy of the hours: the workspace's own field, which the outreach policy reads too.
    assert api.client.get(f"/workspaces/{workspace_id}", headers=key).json()["business_hours"] == {"mon": [["08:00", "12:00"]]}


def test_business_settings_refuse_an_unknown_day_or_time_naming_it(api):
    workspace_id, key = api.workspace()
    url = f"/workspaces/{workspace_id}/business-settings"

    bad_day = api.client.patch(url, json={"business_hours": {"funday": {"open": "09:00"}}}, headers=key)
    bad_time = api.client.patch(url, json={"business_hours": {"monday": {"open": "9am"}}}, headers=key)
    backwards = api.client.patch(url, json={"business_hours": {"monday": {"open": "17:00", "close": "09:00"}}}, headers=key)

    assert bad_day.status_code == bad_time.status_code == backwards.status_code == 422
    assert "funday" in bad_day.text and "open" in bad_time.text and "business_hours" in backwards.text


def test_business_is_open_in_its_own_time_zone():
    hours = {"mon": [["09:00", "17:00"]]}
    monday_10_new_york = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    monday_8_new_york = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)

    assert is_open(hours, "America/New_York", monday_10_new_york)
    assert not is_open(hours, "America/New_York", monday_8_new_york)
    assert not is_open(hours, "UTC", datetime(2026, 11, 24, 10, 0, tzinfo=UTC))  # tuesday: closed
    assert is_open(None, "UTC", datetime(2026, 11, 24, 10, 0, tzinfo=UTC))  # the seed's default weekday hours


def test_a_number_can_stop_forwarding_and_be_released(api):
    workspace_id, key = api.workspace()
    number = api.client.post(
        f"/workspaces/{workspace_id}/numbers", json={"phone_number": NUMBER, "forward_to": "+14155550191"}, headers=key
    ).json()
    url = f"/workspaces/{workspace_id}/numbers/{number['id']}"

    unforwarded = api.client.patch(url, json={"forward_to": None}, headers=key)
    released = api.client.patch(url, json={"status": "released"}, headers=key)
    bad = api.client.patch(url, json={"forward_to": "12345"}, headers=key)

    assert unforwarded.status_code == 200 and unforwarded.json()["forward_to"] is None
    assert released.json()["status"] == "released"
    assert bad.status_code == 422 and "forward_to" in bad.text
