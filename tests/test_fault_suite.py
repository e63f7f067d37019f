"""The fault suite against its own loopback deployment (Redis, PostgreSQL, the server): a small subset."""

import json

from scripts.fault_suite import run_suite

FIELDS = {
    "fault",
    "calls_live",
    "calls_completed",
    "outcomes_stored",
    "after_call_effects_applied",
    "longest_silence_s",
    "server_alive",
    "lost",
    "target_met",
}


async def test_redis_restart_and_a_dropped_websocket_lose_nothing(tmp_path):
    printed: list[str] = []
    results = await run_suite(["redis_restart", "ws_drop"], 1, None, tmp_path, emit=printed.append)

    assert [json.loads(line) for line in printed] == results
    assert [r["fault"] for r in results] == ["redis_restart", "ws_drop"]
    for result in results:
        assert set(result) == FIELDS, result
        assert result["calls_live"] == result["calls_completed"] == 1, result
        assert result["outcomes_stored"] == result["after_call_effects_applied"] == 1, result
        assert (result["lost"], result["server_alive"]) == (0, True), result
        assert 0 < result["longest_silence_s"] <= 3.0, result


async def test_a_server_killed_mid_call_still_finishes_the_call_after_its_restart(tmp_path):
    printed: list[str] = []
    [result] = await run_suite(["process_kill"], 1, None, tmp_path, emit=printed.append)

    assert result["calls_live"] == 1, result
    # The call was journaled when its stream started: the restarted server stores it (failed) and updates the lead.
    assert result["outcomes_stored"] == result["after_call_effects_applied"] == 1, result
    assert (result["lost"], result["server_alive"]) == (0, True), result
