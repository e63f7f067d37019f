"""Where call recordings live on disk, and how long: one stereo WAV per call under RECORDINGS_DIR.

Shared by the worker (which writes them) and the control API (which serves them); the retention
sweep deletes what is older than RECORDING_RETENTION_DAYS.
"""

import asyncio
import contextlib
import time
from pathlib import Path

from models.log_config import get_logger
from models.settings import Settings

log = get_logger(__name__)

SWEEP_INTERVAL_SECONDS = 3600.0
WAV_MAGIC = (b"RIFF", b"WAVE")


def recordings_dir(settings: Settings) -> Path:
    return Path(settings.recordings_dir)


def recording_path(settings: Settings, call_id: str) -> Path:
    return recordings_dir(settings) / f"{call_id}.wav"


def context_path(settings: Settings, call_id: str) -> Path:
    """The call's context beside its recording, so that a replay runs the same call (scripts/replay.py)."""
    return recordings_dir(settings) / f"{call_id}.context.json"


def is_wav(path: Path) -> bool:
    """A RIFF/WAVE header; what a player needs to find before it plays anything."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return len(head) == 12 and head[:4] == WAV_MAGIC[0] and head[8:12] == WAV_MAGIC[1]


def sweep_expired_recordings(settings: Settings, now: float | None = None) -> int:
    """Delete recordings whose last write is older than the retention period; returns how many."""
    folder = recordings_dir(settings)
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - settings.recording_retention_days * 86400
    deleted = 0
    for path in [*folder.glob("*.wav"), *folder.glob("*.context.json")]:
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
    if deleted:
        log.info("recordings_expired", deleted=deleted, retention_days=settings.recording_retention_days)
    return deleted


async def sweep_recordings_periodically(settings: Settings, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    while True:
        try:
            await asyncio.to_thread(sweep_expired_recordings, settings)
        except OSError:
            # A full or unreadable disk must not stop the service; the next sweep tries again.
            log.exception("recording_sweep_failed")
        await asyncio.sleep(interval)
