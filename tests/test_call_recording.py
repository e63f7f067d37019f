"""Every call is recorded to a stereo WAV (caller left, agent right) and served only to who may hear it."""

import asyncio
import audioop
import os
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.settings import Settings
from scripts.local_server import running_server
from scripts.simulate_call import simulate
from services.recording_store import sweep_expired_recordings
from tests.support import BOOK_MEETING_REQUEST, post_call, server_env

API_KEY = "recording-test-key"
DISCLOSURE = "This call is recorded."
HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def recording_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("server-recording")
    env = server_env(
        tmp,
        API_KEY=API_KEY,
        RECORDINGS_DIR=str(tmp / "recordings"),
        RECORDING_DISCLOSURE=DISCLOSURE,
        SILENCE_TIMEOUT_SECONDS="3",
    )
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url, tmp / "recordings"


def channel_energy(path: Path, start_s: float, end_s: float) -> tuple[int, int]:
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        wav.setpos(int(start_s * rate))
        frames = wav.readframes(int((end_s - start_s) * rate))
    return audioop.rms(audioop.tomono(frames, 2, 1, 0), 2), audioop.rms(audioop.tomono(frames, 2, 0, 1), 2)


def any_window(path: Path, start_s: float, end_s: float, loud_enough, step: float = 0.1) -> bool:
    """Whether some 0.3 s window between start_s and end_s has (caller rms, agent rms) that satisfy loud_enough."""
    at = max(0.0, start_s)
    while at < end_s:
        if loud_enough(*channel_energy(path, at, at + 0.3)):
            return True
        at += step
    return False


async def test_barge_in_call_is_recorded_in_stereo_at_its_real_timing(recording_server, tmp_path):
    base_url, recordings = recording_server
    report = await simulate(base_url, "barge_in", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550140"), HEADERS)

    path = recordings / f"{report['call_id']}.wav"
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        seconds = wav.getnframes() / wav.getframerate()
    turns = report["caller"]["turns"]
    # The recording spans the call as the caller lived it, silences included, from the first word to the last.
    assert turns[-1]["speech_end_s"] < seconds < report["duration_seconds"] + 5
    # While the caller talks over the opening, both channels carry voice: the barge-in is kept.
    barge_end = turns[0]["speech_end_s"]
    assert any_window(path, barge_end - 2.0, barge_end + 0.5, lambda caller, agent: caller > 300 and agent > 300)
    # The agent's answer to the caller's second line lands on the right channel only.
    answered = turns[1]["first_agent_audio_s"]
    assert any_window(path, answered - 0.5, answered + 2.0, lambda caller, agent: agent > 300 and caller < 100)
    assert report["transcript"][0]["text"].startswith(DISCLOSURE)


async def test_recording_is_served_to_the_key_holder_and_the_view_token_only(recording_server, tmp_path):
    base_url, _ = recording_server
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        created = await http.post("/form/calls", json=dict(BOOK_MEETING_REQUEST, phone="+14155550141"))
        form = created.json()
    report = await simulate(base_url, "opt_out", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550142"), HEADERS)
    call_id = report["call_id"]
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        with_key = await http.get(f"/calls/{call_id}/recording", headers=HEADERS)
        without_key = await http.get(f"/calls/{call_id}/recording")
        wrong_token = await http.get(f"/form/calls/{call_id}/recording", params={"token": form["view_token"]})
        no_token = await http.get(f"/form/calls/{call_id}/recording")
        unknown = await http.get("/calls/00000000-0000-4000-8000-000000000000/recording", headers=HEADERS)
        not_yet = await http.get(f"/form/calls/{form['id']}/recording", params={"token": form["view_token"]})
    assert with_key.status_code == 200 and with_key.headers["content-type"] == "audio/wav"
    assert with_key.content[:4] == b"RIFF" and len(with_key.content) > 8000 * 4
    assert without_key.status_code == 401
    assert wrong_token.status_code == 401 and no_token.status_code == 401
    assert unknown.status_code == 404
    # The form's own call has not talked yet: nothing to play, and the token opens nothing else.
    assert not_yet.status_code == 404


async def test_caller_hanging_up_mid_call_leaves_the_recording_so_far(recording_server, tmp_path):
    from models.context import ContextInstance
    from simulator.callee import SimulatedCaller
    from simulator.caller_scripts import caller_script

    base_url, recordings = recording_server
    async with httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=30) as http:
        call = await post_call(http, dict(BOOK_MEETING_REQUEST, phone="+14155550143"))
        context = ContextInstance.model_validate((await http.get(f"/contexts/{call['context_id']}")).json())
        stream = call["stream"]
        caller = SimulatedCaller(
            base_url.replace("http", "ws", 1) + "/ws",
            stream["call_id"],
            stream["token"],
            caller_script("happy", context),
            max_seconds=7,
        )
        await caller.run()
        for _ in range(100):
            shown = (await http.get(f"/calls/{call['id']}")).json()
            if shown["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
    assert shown["end_reason"] == "caller_hung_up"
    with wave.open(str(recordings / f"{call['id']}.wav"), "rb") as wav:
        # Most of the 7 s the caller stayed, and no more than the call itself.
        assert 5 < wav.getnframes() / wav.getframerate() < 7 + 5


def test_recordings_past_their_retention_are_swept(tmp_path):
    settings = Settings(recordings_dir=str(tmp_path), recording_retention_days=30)
    old, fresh = tmp_path / "old.wav", tmp_path / "fresh.wav"
    old.write_bytes(b"RIFF")
    fresh.write_bytes(b"RIFF")
    now = time.time()
    os.utime(old, (now - 31 * 86400, now - 31 * 86400))
    os.utime(fresh, (now - 29 * 86400, now - 29 * 86400))

    assert sweep_expired_recordings(settings, now=now) == 1
    assert not old.exists() and fresh.exists()


@pytest.fixture(scope="module", params=["max_duration", "not_recorded"])
def other_server(request, tmp_path_factory) -> Iterator[tuple[str, Path, str]]:
    tmp = tmp_path_factory.mktemp(f"server-recording-{request.param}")
    settings = {"MAX_CALL_SECONDS": "6"} if request.param == "max_duration" else {"RECORD_CALLS": "false"}
    env = server_env(tmp, API_KEY=API_KEY, RECORDINGS_DIR=str(tmp / "recordings"), SILENCE_TIMEOUT_SECONDS="3", **settings)
    with running_server(env, log_path=tmp / "server.log") as base_url:
        yield base_url, tmp / "recordings", request.param


async def test_a_call_cut_at_max_duration_is_recorded_and_record_calls_false_records_nothing(other_server, tmp_path):
    base_url, recordings, case = other_server
    scenario = "happy" if case == "max_duration" else "opt_out"
    report = await simulate(base_url, scenario, tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550144"), HEADERS)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        served = await http.get(f"/calls/{report['call_id']}/recording", headers=HEADERS)
        shown = (await http.get(f"/calls/{report['call_id']}", headers=HEADERS)).json()

    path = recordings / f"{report['call_id']}.wav"
    if case == "max_duration":
        assert report["end_reason"] == "max_duration"
        with wave.open(str(path), "rb") as wav:
            assert wav.getnframes() / wav.getframerate() >= 6
        assert served.status_code == 200 and shown["has_recording"] is True
    else:
        assert report["outcome"] == "opted_out"
        assert not path.exists() and served.status_code == 404 and shown["has_recording"] is False
