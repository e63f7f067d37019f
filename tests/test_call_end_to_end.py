"""Whole calls over a loopback websocket: real audio both ways, offline providers."""

import httpx
import pytest

from scripts.simulate_call import simulate
from tests.support import BOOK_MEETING_REQUEST


async def test_happy_call_books_a_meeting_and_stores_the_transcript(live_server, tmp_path):
    report = await simulate(live_server, "happy", tmp_path, dict(BOOK_MEETING_REQUEST), {})

    assert report["status"] == "completed"
    assert report["outcome"] == "meeting_booked"
    assert report["end_reason"] == "agent_completed"
    assert report["caller"]["hung_up_by"] == "agent"
    roles = [entry["role"] for entry in report["transcript"]]
    assert roles[0] == "agent" and "caller" in roles
    caller_lines = " ".join(e["text"] for e in report["transcript"] if e["role"] == "caller")
    assert "tuesday" in caller_lines  # recognized from real audio, not passed as text
    assert report["answers"].get("meeting_time")
    # Every caller turn got an answer, and its latency was measured on both sides.
    assert len(report["server_turn_metrics"]) >= len(report["caller"]["turns"]) - 1
    assert all(t["latency_ms"] is not None for t in report["caller"]["turns"])
    # The agent's goodbye played to the end before the hang-up: Twilio's mark came back.
    assert "call-end" in report["caller"]["marks_echoed"]
    assert (tmp_path / f"call-{report['call_id']}.wav").stat().st_size > 8000 * 2 * 2 * 5


async def test_caller_talking_over_the_agent_clears_its_audio(live_server, tmp_path):
    report = await simulate(live_server, "barge_in", tmp_path, dict(BOOK_MEETING_REQUEST), {})

    caller = report["caller"]
    assert caller["clears_at_s"], "no clear was sent when the caller barged in"
    assert caller["clear_cut_agent_audio"][0], "the first clear did not come while the agent was audible"
    first_clear = caller["clears_at_s"][0]
    barge_in_end = caller["turns"][0]["speech_end_s"]
    assert first_clear < barge_in_end, "the clear came only after the caller had finished"
    # Audio queued at the phone before the clear was dropped, not played.
    assert caller["agent_voiced_after_clear_s"][0] <= 0.06
    opening = report["transcript"][0]
    assert opening["role"] == "agent" and opening.get("interrupted") is True
    assert report["outcome"] == "meeting_booked"


async def test_caller_who_says_stop_calling_me_is_opted_out(live_server, tmp_path):
    report = await simulate(live_server, "opt_out", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550124"), {})

    assert report["outcome"] == "opted_out"
    assert report["end_reason"] == "opt_out"
    assert report["caller"]["hung_up_by"] == "agent"
    assert "won't be called again" in report["transcript"][-1]["text"]


async def test_silent_callee_is_reprompted_once_then_the_agent_hangs_up(live_server, tmp_path):
    report = await simulate(live_server, "silent", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550125"), {})

    assert report["outcome"] == "no_answer"
    assert report["end_reason"] == "silence_timeout"
    agent_lines = [e["text"] for e in report["transcript"] if e["role"] == "agent"]
    assert sum("Are you still there?" in line for line in agent_lines) == 1
    assert report["caller"]["hung_up_by"] == "agent"


async def test_finished_call_is_served_from_the_database(live_server, tmp_path):
    report = await simulate(live_server, "opt_out", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550126"), {})
    async with httpx.AsyncClient(base_url=live_server) as http:
        shown = (await http.get(f"/calls/{report['call_id']}")).json()
        missing = await http.get("/calls/00000000-0000-4000-8000-000000000000")
    assert shown["outcome"] == "opted_out" and shown["transcript"]
    assert shown["phone"].startswith("+14") and "*" in shown["phone"]
    assert missing.status_code == 404


@pytest.mark.parametrize("field", ["phone", "consent", "goal"])
async def test_bad_call_request_names_the_field(live_server, field):
    bad = {"phone": "0415 555", "consent": False, "goal": "sell_everything"}
    async with httpx.AsyncClient(base_url=live_server) as http:
        answer = await http.post("/calls", json=dict(BOOK_MEETING_REQUEST, **{field: bad[field]}))
    assert answer.status_code == 422
    assert field in str(answer.json()["detail"])
