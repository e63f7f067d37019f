"""scripts/replay.py runs a stored call again against the current code and compares the two."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts import replay
from scripts.local_server import running_server
from scripts.simulate_call import simulate
from tests.support import BOOK_MEETING_REQUEST, ELEGANT_STRATEGY, FORMAL_STRATEGY, server_env


@pytest.fixture(scope="module")
def stored_call(tmp_path_factory) -> Iterator[tuple[dict, Path]]:
    """One call made and recorded on a server, and that server's data (its database and recordings)."""
    tmp = tmp_path_factory.mktemp("server-replayed")
    env = server_env(tmp, RECORDINGS_DIR=str(tmp / "recordings"), SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        report = asyncio.run(simulate(base_url, "opt_out", tmp / "out", dict(BOOK_MEETING_REQUEST, phone="+14155550170"), {}))
    yield report, tmp


async def _call_on_a_strategy(base_url: str, out: Path) -> dict:
    """A workspace with two strategy versions, the first active, and one call made on it."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        key = {"Authorization": f"Bearer {(await http.post('/workspaces', json={'name': 'Brightside'})).json()['api_key']}"}
        ids = [
            (await http.post("/strategies", json=fields, headers=key)).json()["id"]
            for fields in (FORMAL_STRATEGY, ELEGANT_STRATEGY)
        ]
        assert (await http.post(f"/strategies/{ids[0]}/activate", headers=key)).status_code == 200
    return await simulate(base_url, "objection", out, dict(BOOK_MEETING_REQUEST, phone="+14155550171"), key)


@pytest.fixture(scope="module")
def strategy_call(tmp_path_factory) -> Iterator[tuple[dict, Path]]:
    tmp = tmp_path_factory.mktemp("server-strategy")
    env = server_env(tmp, RECORDINGS_DIR=str(tmp / "recordings"), SILENCE_TIMEOUT_SECONDS="3")
    with running_server(env, log_path=tmp / "server.log") as base_url:
        report = asyncio.run(_call_on_a_strategy(base_url, tmp / "out"))
    yield report, tmp


@pytest.fixture()
def its_strategy_data(strategy_call, monkeypatch) -> dict:
    report, tmp = strategy_call
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp / 'calls.db'}")
    monkeypatch.setenv("RECORDINGS_DIR", str(tmp / "recordings"))
    return report


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


def test_replaying_with_another_strategy_version_speaks_that_version(its_strategy_data, capsys):
    code = replay.main([its_strategy_data["call_id"], "--transcript", "--strategy-version", "2", "--json"])
    printed = json.loads(capsys.readouterr().out)

    assert code == 0
    assert printed["strategy_version"] == {"old": 1, "new": 2}
    old, new = printed["old"]["agent"], printed["new"]["agent"]
    assert old[0].startswith("Hello Alex.") and new[0].startswith("Good day, Alex.")  # the tone of each version
    assert any("thirty day money back guarantee" in line for line in old)
    assert any("pays for itself" in line for line in new)
    assert not any("thirty day money back guarantee" in line or "energy survey" in line for line in new)


def test_an_unknown_strategy_version_is_a_clear_error(its_strategy_data, capsys):
    code = replay.main([its_strategy_data["call_id"], "--strategy-version", "7"])

    assert code != 0
    assert "has no strategy version 7 (it has: 1, 2)" in capsys.readouterr().err
    assert replay.main(["--wav", "call.wav", "--request", "request.json", "--strategy-version", "2"]) != 0
    assert "--strategy-version needs a CALL_ID" in capsys.readouterr().err


def test_replaying_a_call_made_on_a_strategy_runs_on_that_strategy_again(its_strategy_data, capsys):
    code = replay.main([its_strategy_data["call_id"], "--transcript"])
    printed = capsys.readouterr().out

    assert code == 0
    assert "strategy: old version 1  new version 1" in printed
    first_turn = next(line for line in printed.splitlines() if line.startswith("0 "))
    assert first_turn.startswith("0    Hello Alex.")  # unchanged: the same opening on both sides
    assert "outcome: old meeting_booked  new meeting_booked" in printed
