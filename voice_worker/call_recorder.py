"""Writes a call's stereo recording (caller left, agent right) from Pipecat's audio buffer.

The AudioBufferProcessor keeps both tracks aligned on the call's real timing (silence where nobody
speaks, overlap kept on barge-in); it hands over a chunk every few seconds and this writes each
chunk at once, so an error or a crash mid-call still leaves the audio up to that point on disk.
`finish` flushes what is left; the call runner calls it on every ending, before the outcome.
"""

import wave
from pathlib import Path

from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor

from models.context import ContextInstance
from models.log_config import get_logger
from models.settings import Settings
from models.twilio_media import SAMPLE_RATE
from services.recording_store import context_path, recording_path

log = get_logger(__name__)

SAMPLE_WIDTH = 2
CHANNELS = 2
# Bytes of one track buffered before a chunk is written: 5 s of 16-bit audio.
CHUNK_BYTES = SAMPLE_RATE * SAMPLE_WIDTH * 5


class CallRecorder:
    def __init__(self, settings: Settings, call_id: str, context: ContextInstance) -> None:
        self.call_id = call_id
        self.context = context
        self.path: Path = recording_path(settings, call_id)
        self.context_path: Path = context_path(settings, call_id)
        self.buffer = AudioBufferProcessor(
            sample_rate=SAMPLE_RATE, num_channels=CHANNELS, buffer_size=CHUNK_BYTES, auto_start_recording=True
        )
        self._wav: wave.Wave_write | None = None
        self._failed = False
        self.buffer.add_event_handler("on_audio_data", self._on_audio_data)

    async def _on_audio_data(self, _buffer, audio: bytes, sample_rate: int, num_channels: int) -> None:
        self.write(audio, sample_rate, num_channels)

    def write(self, audio: bytes, sample_rate: int, num_channels: int) -> None:
        if self._failed or not audio:
            return
        try:
            if self._wav is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 (open for the whole call)
                self._wav.setnchannels(num_channels)
                self._wav.setsampwidth(SAMPLE_WIDTH)
                self._wav.setframerate(sample_rate)
            # writeframes patches the header each time: the file is a valid WAV after every chunk.
            self._wav.writeframes(audio)
        except OSError:
            # A full disk loses the recording, never the call or its outcome.
            self._failed = True
            log.exception("recording_write_failed", call_id=self.call_id)

    async def finish(self) -> str | None:
        """Flush the buffered tail and close the file; the recording's path, or None without audio."""
        try:
            await self.buffer.stop_recording()
            # The audio handlers run as tasks; cleanup waits for them before the file is closed.
            await self.buffer.cleanup()
        except Exception:
            log.exception("recording_flush_failed", call_id=self.call_id)
        if self._wav is None:
            return None
        try:
            self._wav.close()
        except OSError:
            log.exception("recording_close_failed", call_id=self.call_id)
        self._wav = None
        if self._failed:
            return None
        try:
            self.context_path.write_text(self.context.model_dump_json())
        except OSError:
            log.exception("recording_context_write_failed", call_id=self.call_id)
        return str(self.path)


def with_disclosure(opening: str, settings: Settings) -> str:
    """The opening, preceded by the recording disclosure when calls are recorded and one is set."""
    if settings.record_calls and settings.recording_disclosure:
        return f"{settings.recording_disclosure.strip()} {opening}"
    return opening
