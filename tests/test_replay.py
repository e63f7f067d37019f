"""scripts/replay.py runs a stored call again against the current code and compares the two."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import replay
from scripts.local_server import running_server
from scripts.simulate_call import simulate
from tests.support import BOOK_MEETING_REQUEST, server_env


@pytest.fixture(scope="module")
def stored_call(tmp_path_factory) -> Iterator[tuple[dict, Path]]:
    """One call made and recorded on a server, and that server's data (its database and recordings)."""
    tmp = tmp_path_factory.mktemp("server-replayed")
    env = server_env(tmp, RECORDINGS_DIR=str(tmp / "recordings"), SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        report = asyncio.run(simulate(base_url, "opt_out", tmp / "out", dict(BOOK_MEETING_REQUEST, phone="+14155550170"), {}))
    yield report, tmp


@pytest.fixture()
def its_data(stored_call, monkeypatch) -> dict:
    report, tmp = stored_call
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp / 'calls.db'}")
    monkeypatch.setenv("RECORDINGS_DIR", str(tmp / "recordings"))
    return report


def test_replaying_a_stored_call_unchanged_gives_the_same_outcome(its_data, capsys):
    code = replay.main([its_data["call_id"], "--json"])
    printed = json.loads(capsys.readouterr().out)

    assert code == 0
    assert printed["old"]["outcome"] == its_data["outcome"] == "opted_out"
    assert printed["new"]["outcome"] == printed["old"]["outcome"]
    assert printed["new"]["agent"][0] == printed["old"]["agent"][0]  # the same opening, from the same context
    assert any(ms is not None for ms in printed["new"]["latency_ms"])


def test_replaying_from_the_transcript_speaks_the_stored_caller_lines(its_data, capsys):
    code = replay.main([its_data["call_id"], "--transcript"])
    printed = capsys.readouterr().out

    assert code == 0
    assert "outcome: old opted_out  new opted_out" in printed
    assert "old latency" in printed and "new latency" in printed


def test_an_unknown_call_id_is_a_clear_error(its_data, capsys):
    code = replay.main(["00000000-0000-4000-8000-000000000000"])

    assert code != 0
    assert "call 00000000-0000-4000-8000-000000000000 is unknown" in capsys.readouterr().err


def test_a_missing_recording_is_a_clear_error(its_data, stored_call, capsys):
    _, tmp = stored_call
    wav = tmp / "recordings" / f"{its_data['call_id']}.wav"
    hidden = wav.with_suffix(".hidden")
    wav.rename(hidden)
    try:
        code = replay.main([its_data["call_id"]])
    finally:
        hidden.rename(wav)
    assert code != 0
    assert "does not exist" in capsys.readouterr().err


def test_a_file_that_is_not_a_wav_or_a_bad_request_is_a_clear_error(tmp_path, capsys):
    not_wav, request = tmp_path / "call.wav", tmp_path / "request.json"
    not_wav.write_text("this is not audio")
    request.write_text(json.dumps(BOOK_MEETING_REQUEST))
    bad_request = tmp_path / "bad.json"
    bad_request.write_text(json.dumps(dict(BOOK_MEETING_REQUEST, goal="sell_everything")))

    assert replay.main(["--wav", str(not_wav), "--request", str(request)]) != 0
    assert "is not a WAV file" in capsys.readouterr().err
    assert replay.main(["--wav", str(not_wav), "--request", str(bad_request)]) != 0
    assert "field goal" in capsys.readouterr().err
    assert replay.main([]) != 0
    assert "give a CALL_ID" in capsys.readouterr().err
