"""A call that goes well logs no ERROR: an operator's alert on ERROR lines must fire only on real errors."""

import json

from scripts.local_server import running_server
from scripts.simulate_call import simulate
from tests.support import BOOK_MEETING_REQUEST, server_env


def error_lines(log_text: str) -> list[str]:
    """ERROR and worse, in each of the log's formats: our JSON lines and pipecat's loguru lines."""
    found = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            if json.loads(line).get("level") in ("error", "critical", "exception"):
                found.append(line)
        elif "| ERROR" in line or "| CRITICAL" in line or line.startswith("Traceback"):
            found.append(line)
    return found


async def test_a_whole_simulated_call_logs_no_error(tmp_path):
    log_path = tmp_path / "server.log"
    # LOG_LEVEL=INFO, as an operator runs it; uvicorn's own logger stays at its default (warning) here.
    with running_server(server_env(tmp_path, LOG_LEVEL="INFO", SILENCE_TIMEOUT_SECONDS="3"), log_path=log_path) as base_url:
        report = await simulate(base_url, "happy", tmp_path, dict(BOOK_MEETING_REQUEST, phone="+14155550193"), {})

    assert report["status"] == "completed" and report["outcome"] == "meeting_booked"
    assert error_lines(log_path.read_text()) == []
