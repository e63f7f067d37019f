"""The demo passes at any hour (issue 13): its call runs with the clock at 03:00 in the lead's zone,
because the demo turns the calling-hours rule off (its callee is simulated on loopback); the same
request to a server that keeps the rule is scheduled for 08:00 there, not refused."""

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import time_machine

from control_api.main import create_app
from models.settings import Settings
from scripts.demo import demo_env
from scripts.simulate_call import DEMO_REQUEST, simulate
from tests.support import serving

LOS_ANGELES = ZoneInfo("America/Los_Angeles")  # the demo lead's zone (its +1 415 number)
THREE_AM = datetime(2026, 6, 10, 3, 0, tzinfo=LOS_ANGELES)


def settings_from(env: dict[str, str], **changes: str) -> Settings:
    return Settings(_env_file=None, **{name.lower(): value for name, value in {**env, **changes}.items()})


def test_the_demo_call_completes_at_three_in_the_morning_in_the_leads_zone(tmp_path):
    settings = settings_from(demo_env(tmp_path))
    # tick: the clock runs on from 03:00, so the call's timers and TTLs behave as on any night.
    with time_machine.travel(THREE_AM, tick=True), serving(create_app(settings)) as base_url:
        report = asyncio.run(simulate(base_url, "happy", tmp_path, dict(DEMO_REQUEST), {}))

    assert report["status"] == "completed", report
    assert report["outcome"] == "meeting_booked"


def test_with_calling_hours_kept_the_same_call_at_three_is_scheduled_for_eight(tmp_path):
    settings = settings_from(demo_env(tmp_path), ENFORCE_CALLING_HOURS="true")
    with time_machine.travel(THREE_AM, tick=True), serving(create_app(settings)) as base_url:
        answer = httpx.post(f"{base_url}/calls", json=DEMO_REQUEST, timeout=30)
        shown = httpx.get(answer.json()["status_url"], timeout=30).json()

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "scheduled"
    assert datetime.fromisoformat(answer.json()["scheduled_for"]).astimezone(LOS_ANGELES) == THREE_AM.replace(hour=8)
    assert (shown["status"], shown["attempt_status"]) == ("pending", "scheduled")
