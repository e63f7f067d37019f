"""The call benchmark runs end to end and reports every figure; the figures themselves are the bench's."""

import json

import pytest

from scripts import bench_calls

RUN_KEYS = {
    "calls",
    "completed_calls",
    "heard_ms",
    "played_ms",
    "worker_share_ms",
    "outbound_frame_gap_ms",
    "outbound_frame_jitter_p99_ms",
    "cpu_seconds_per_call_minute",
    "server_stages_ms",
    "standins_served",
}


def test_bench_with_two_calls_on_standins_reports_latency_jitter_cpu_and_capacity(capsys, tmp_path):
    plot = tmp_path / "latency.png"
    code = bench_calls.main(
        [
            "--calls",
            "2",
            "--providers",
            "standin",
            "--scenario",
            "opt_out",
            "--stagger",
            "0.5",
            "--min-calls",
            "1",
            "--plot",
            str(plot),
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    assert [run["calls"] for run in report["runs"]] == [1, 2]  # the N=1 baseline, then N
    result = report["result"]
    assert result.keys() >= RUN_KEYS
    assert (
        result["calls"] == 2
        and result["rounds"] == 1
        and result["completed_calls"] == 2
        and result["expected_outcome_calls"] == 2
    )
    heard = result["heard_ms"]
    assert heard["count"] == 2 and 0 < heard["p50"] <= heard["p95"] <= heard["p99"]
    assert result["played_ms"]["p50"] >= heard["p50"]  # played from the phone's buffer after it arrived
    configured = report["standin_delays_ms"]
    assert configured == {"stt_final": 100.0, "llm_first_token": 250.0, "llm_tokens_per_second": 100.0, "tts_first_audio": 100.0}
    assert result["worker_share_ms"]["p50"] == pytest.approx(heard["p50"] - 450.0, abs=0.2)
    assert result["outbound_frame_gap_ms"]["count"] > 100 and result["outbound_frame_gap_ms"]["p99"] > 0
    assert result["cpu_seconds_per_call_minute"] > 0
    assert {"stt_final", "llm_first_token", "tts_first_audio"} <= result["standins_served"].keys()
    assert {"endpointing", "stt_final", "first_audio_sent"} <= result["server_stages_ms"].keys()
    assert report["largest_n_within_50ms_of_n1"] in (None, 1, 2)
    assert report["machine"]["cpus"] >= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(n: int, p95: float, completed: int | None = None) -> dict:
    return {"calls": n, "rounds": 1, "completed_calls": n if completed is None else completed, "heard_ms": {"p95": p95}}


def test_largest_n_is_the_last_before_p95_rises_50ms_or_a_call_fails():
    assert bench_calls.largest_n_within([_run(1, 700), _run(2, 720), _run(4, 749), _run(8, 751)]) == 4
    assert bench_calls.largest_n_within([_run(1, 700), _run(2, 720), _run(4, 730, completed=3)]) == 2
    assert bench_calls.largest_n_within([_run(1, 700), _run(2, 900), _run(4, 720)]) == 1
    assert bench_calls.largest_n_within([_run(1, 700, completed=0)]) is None
    # N=1 held in two rounds: one call of the two failing breaks it.
    assert bench_calls.largest_n_within([{**_run(1, 700, completed=1), "rounds": 2}]) is None
    # Completed, but the callee was never heard (no_answer instead of the booking): a failed call too.
    assert bench_calls.largest_n_within([_run(1, 700), {**_run(2, 710), "expected_outcome_calls": 1}]) == 1


def test_bench_against_a_voice_pool_of_two_processes_reports_each_process_and_per_core_figures(capsys):
    code = bench_calls.main(
        ["--calls", "2", "--providers", "standin", "--scenario", "opt_out", "--workers", "2", "--min-calls", "1"]
    )
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    assert report["workers"] == 2
    result = report["result"]
    assert result["completed_calls"] == 2 and result["expected_outcome_calls"] == 2
    # The pool's two processes are measured apart from the API process, which served no stream.
    assert len(result["cpu_seconds_by_process"]) == 2
    assert sum(result["cpu_seconds_by_process"].values()) == pytest.approx(result["server_cpu_seconds"], abs=0.02)
    assert result["api_cpu_seconds"] > 0 and result["voice_cpu_cores_busy"] > 0 and result["calls_per_core_by_cpu"] > 0
    assert result["callers_cpu_seconds"] > 0
    per_core = report["per_core"]
    assert per_core["voice_processes"] == 2
    largest = report["largest_n_within_50ms_of_n1"]
    if largest is not None:
        assert per_core["calls_within_50ms_of_n1_per_process"] == largest / 2
        assert per_core["outbound_frame_jitter_p99_ms_at_that_n"] is not None


def test_per_core_figures_divide_the_largest_n_by_the_voice_processes():
    runs = [
        {
            **_run(1, 700),
            "calls_per_core_by_cpu": 30.0,
            "outbound_frame_gap_ms": {"p99": 44.0},
            "outbound_frame_jitter_p99_ms": 4.0,
        },
        {
            **_run(8, 720),
            "calls_per_core_by_cpu": 33.0,
            "outbound_frame_gap_ms": {"p99": 50.0},
            "outbound_frame_jitter_p99_ms": 9.0,
        },
        {
            **_run(16, 900),
            "calls_per_core_by_cpu": 35.0,
            "outbound_frame_gap_ms": {"p99": 90.0},
            "outbound_frame_jitter_p99_ms": 50.0,
        },
    ]
    assert bench_calls.per_core(runs, workers=2) == {
        "voice_processes": 2,
        "calls_within_50ms_of_n1_per_process": 4.0,
        "calls_per_core_by_cpu_at_that_n": 33.0,
        "outbound_frame_gap_p99_ms_at_that_n": 50.0,
        "outbound_frame_jitter_p99_ms_at_that_n": 9.0,
    }
