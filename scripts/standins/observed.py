"""What the stand-ins actually did, so a benchmark can tell their delays from the worker's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict


async def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() reaches `deadline`: asyncio may wake a timer up to its clock
    resolution early, and a stand-in must never answer before its delay."""
    while (wait := deadline - time.monotonic()) > 0:
        await asyncio.sleep(wait)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


class ObservedDelays:
    """Delays as served, by kind (`stt_final`, `llm_first_token`, `tts_first_audio`), in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, list[float]] = defaultdict(list)

    def record(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._values[kind].append(seconds)

    def values(self, kind: str) -> list[float]:
        with self._lock:
            return list(self._values.get(kind, []))

    def reset(self) -> None:
        with self._lock:
            self._values.clear()

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        with self._lock:
            snapshot = {kind: list(values) for kind, values in self._values.items()}
        return {
            kind: {
                "count": len(values),
                "min_ms": round(min(values) * 1000, 1),
                "p50_ms": round(percentile(values, 0.5) * 1000, 1),  # type: ignore[operator]
                "p95_ms": round(percentile(values, 0.95) * 1000, 1),  # type: ignore[operator]
                "max_ms": round(max(values) * 1000, 1),
            }
            for kind, values in snapshot.items()
            if values
        }
