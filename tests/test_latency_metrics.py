"""The latency histograms an operator watches on GET /metrics, filled by a real call."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scripts.simulate_call import simulate
from tests.support import BOOK_MEETING_REQUEST


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_call_fills_turn_stage_and_event_loop_latency_histograms(live_server, tmp_path):
    report = await simulate(live_server, "opt_out", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550131"), {})
    async with httpx.AsyncClient(base_url=live_server) as http:
        samples = _samples((await http.get("/metrics")).text)

    assert report["outcome"] == "opted_out"
    assert samples[("voice_turn_latency_seconds_count", ())] >= 1
    assert samples[("voice_turn_latency_seconds_sum", ())] > 0
    for stage in ("endpointing", "stt_final", "llm_first_token", "tts_first_audio", "first_audio_sent"):
        assert samples[("voice_turn_stage_latency_seconds_count", (("stage", stage),))] >= 1, stage
    # Sampled every 100 ms for as long as the server has run: many samples, all in some bucket.
    lag_count = samples[("voice_event_loop_lag_seconds_count", ())]
    assert lag_count >= 10
    assert samples[("voice_event_loop_lag_seconds_bucket", (("le", "+Inf"),))] == lag_count
