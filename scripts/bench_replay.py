"""How long a replay takes, and how large recordings are: one real call, recorded, then replayed.

    python -m scripts.bench_replay

Prints JSON: the call's length, the replay's wall time (server start included), the estimate for a
3-minute call (replay is paced in real time, so length + the measured fixed overhead), and the
recording's bytes per second, measured and computed (8 kHz x 16-bit x 2 channels), per hour.
"""

import asyncio
import json
import os
import tempfile
import time
import wave
from pathlib import Path

from scripts import replay
from scripts.local_server import running_server
from scripts.simulate_call import DEMO_REQUEST, simulate

COMPUTED_BYTES_PER_SECOND = 8000 * 2 * 2


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        data = Path(tmp)
        env = {
            "TELEPHONY_PROVIDER": "none",
            "DATABASE_URL": f"sqlite:///{data / 'calls.db'}",
            "RECORDINGS_DIR": str(data / "recordings"),
            "ENFORCE_CALLING_HOURS": "false",
            "RATE_LIMIT_PER_MINUTE": "10000",
        }
        with running_server(env, log_path=data / "server.log") as base_url:
            report = asyncio.run(simulate(base_url, "happy", data / "out", dict(DEMO_REQUEST), {}))
        wav = data / "recordings" / f"{report['call_id']}.wav"
        with wave.open(str(wav), "rb") as audio:
            seconds = audio.getnframes() / audio.getframerate()
        os.environ |= {"DATABASE_URL": env["DATABASE_URL"], "RECORDINGS_DIR": env["RECORDINGS_DIR"]}
        source = replay.stored_input(report["call_id"], replay.Settings(), use_transcript=False)
        started = time.monotonic()
        new, _ = replay.replay(source)
        wall = time.monotonic() - started
        size = wav.stat().st_size
    overhead = wall - seconds
    print(
        json.dumps(
            {
                "call_seconds": round(seconds, 1),
                "replay_wall_seconds": round(wall, 1),
                "replay_overhead_seconds": round(overhead, 1),
                "estimated_replay_seconds_for_3_minute_call": round(180 + overhead, 1),
                "same_outcome": new.outcome == report["outcome"],
                "recording_bytes": size,
                "recording_bytes_per_second_measured": round(size / seconds),
                "recording_mb_per_hour_measured": round(size / seconds * 3600 / 1e6, 1),
                "recording_mb_per_hour_computed": round(COMPUTED_BYTES_PER_SECOND * 3600 / 1e6, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
