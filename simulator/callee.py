"""A callee on a simulated phone line, speaking Twilio's Media Streams protocol to `/ws`.

It behaves like Twilio does on a real call: it sends `connected` and `start` (with the
call's `call_id` and `token` parameters), then 20 ms of 8 kHz mu-law every 20 ms
(silence when the callee is not talking), buffers the agent's audio and plays it in
real time, drops that buffer on `clear`, and echoes each `mark` once the audio sent
before it has played. The callee's lines are synthesized to real speech.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import secrets
import time
import wave
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import websockets

from models.log_config import get_logger
from models.twilio_media import FRAME_MS, MULAW_FRAME_BYTES, SAMPLE_RATE
from simulator.caller_scripts import CallerLine
from voice_worker.providers.espeak_synth import resample_pcm16, synthesize_async

log = get_logger(__name__)

SILENCE = b"\xff" * MULAW_FRAME_BYTES
FRAME_S = FRAME_MS / 1000
# RMS (16-bit) above which a frame counts as speech rather than line noise.
VOICE_RMS = 300
CALLER_VOICE = "en-us"
# A lower pitch than the agent's default, so the two sides are easy to tell apart on the recording.
CALLER_PITCH = 30


def _voiced(mulaw: bytes) -> bool:
    return audioop.rms(audioop.ulaw2lin(mulaw, 2), 2) > VOICE_RMS


async def speech_frames(text: str, voice: str = CALLER_VOICE) -> list[bytes]:
    pcm, rate = await synthesize_async(text, voice=voice, rate_wpm=165, pitch=CALLER_PITCH, reproducible=True)
    pcm8 = resample_pcm16(pcm, rate, SAMPLE_RATE)
    mulaw = audioop.lin2ulaw(pcm8, 2)
    frames = [mulaw[i : i + MULAW_FRAME_BYTES] for i in range(0, len(mulaw), MULAW_FRAME_BYTES)]
    if frames and len(frames[-1]) < MULAW_FRAME_BYTES:
        frames[-1] = frames[-1] + SILENCE[len(frames[-1]) :]
    # The synthesizer pads with silence; trim it so "end of speech" means the last spoken word.
    voiced = [i for i, frame in enumerate(frames) if _voiced(frame)]
    return frames[voiced[0] : voiced[-1] + 1] if voiced else []


@dataclass
class TurnLatency:
    line: str
    speech_end_s: float
    first_agent_audio_s: float | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.first_agent_audio_s is None:
            return None
        return round((self.first_agent_audio_s - self.speech_end_s) * 1000, 1)


@dataclass
class CallerReport:
    call_id: str
    stream_sid: str
    duration_s: float = 0.0
    hung_up_by: str = ""
    close_code: int | None = None
    close_reason: str = ""
    lines_spoken: list[str] = field(default_factory=list)
    turns: list[TurnLatency] = field(default_factory=list)
    clears_at_s: list[float] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    agent_voiced_seconds: float = 0.0
    # When the agent's first voiced audio arrived: how long the callee waited for a greeting.
    first_agent_audio_s: float | None = None
    # Whether the agent was audible (within 100 ms) when each `clear` arrived: a real barge-in.
    clear_cut_agent_audio: list[bool] = field(default_factory=list)
    # Voiced agent audio played in the 200 ms after each `clear` (0 when barge-in truly stops it).
    agent_voiced_after_clear_s: list[float] = field(default_factory=list)

    def longest_wait_s(self, *, caller_left: bool) -> float:
        """The longest the callee waited in silence for the agent: the greeting, then each answer.

        A line left unanswered counts up to the end of the call, unless the callee itself left
        (`caller_left`: it hung up or its line dropped before an answer could come).
        """
        waits = [self.first_agent_audio_s if self.first_agent_audio_s is not None else self.duration_s]
        for turn in self.turns:
            if turn.first_agent_audio_s is not None:
                waits.append(turn.first_agent_audio_s - turn.speech_end_s)
            elif not caller_left:
                waits.append(self.duration_s - turn.speech_end_s)
        return round(max(waits), 3)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["turns"] = [{**asdict(t), "latency_ms": t.latency_ms} for t in self.turns]
        return data


class SimulatedCaller:
    def __init__(
        self,
        ws_url: str,
        call_id: str,
        token: str,
        lines: list[CallerLine],
        *,
        voice: str = CALLER_VOICE,
        call_sid: str | None = None,
        max_seconds: float = 180.0,
        answer_timeout: float = 30.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.ws_url = ws_url
        self.call_id = call_id
        self.token = token
        self.lines = lines
        self.voice = voice
        self.call_sid = call_sid or "CA" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.max_seconds = max_seconds
        self.answer_timeout = answer_timeout
        self.extra_headers = extra_headers or {}
        self.report = CallerReport(call_id=call_id, stream_sid=self.stream_sid)
        self.caller_track = bytearray()
        self.agent_track = bytearray()
        # Twilio's playback buffer: audio frames and mark names, in arrival order.
        self._playback: deque[bytes | str] = deque()
        self._mic: deque[bytes] = deque()
        self._t0 = 0.0
        self._ws = None
        self._closed = asyncio.Event()
        self._agent_started_at: float | None = None
        self._last_agent_voice: float | None = None
        self._awaiting: TurnLatency | None = None
        self._seq = 0

    def _now(self) -> float:
        return time.monotonic() - self._t0

    async def _send(self, message: dict) -> None:
        self._seq += 1
        message.setdefault("sequenceNumber", str(self._seq))
        await self._ws.send(json.dumps(message))

    async def run(self) -> CallerReport:
        prepared = [await speech_frames(line.text, self.voice) for line in self.lines]
        async with websockets.connect(self.ws_url, max_size=None, additional_headers=self.extra_headers) as ws:
            self._ws = ws
            self._t0 = time.monotonic()
            await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await self._send(
                {
                    "event": "start",
                    "streamSid": self.stream_sid,
                    "start": {
                        "streamSid": self.stream_sid,
                        "accountSid": "AC" + "0" * 32,
                        "callSid": self.call_sid,
                        "tracks": ["inbound"],
                        "customParameters": {"call_id": self.call_id, "token": self.token},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
                    },
                }
            )
            tasks = [
                asyncio.create_task(self._receive()),
                asyncio.create_task(self._clock()),
                asyncio.create_task(self._speak(prepared)),
            ]
            try:
                await asyncio.wait_for(self._closed.wait(), self.max_seconds)
            except TimeoutError:
                self.report.hung_up_by = "caller_timeout"
                await self._send({"event": "stop", "streamSid": self.stream_sid, "stop": {"callSid": self.call_sid}})
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        self.report.duration_s = round(self._now(), 3)
        return self.report

    async def _receive(self) -> None:
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":
                    audio = base64.b64decode(message["media"]["payload"])
                    for i in range(0, len(audio), MULAW_FRAME_BYTES):
                        chunk = audio[i : i + MULAW_FRAME_BYTES].ljust(MULAW_FRAME_BYTES, b"\xff")
                        self._playback.append(chunk)
                        if self.report.first_agent_audio_s is None and _voiced(chunk):
                            self.report.first_agent_audio_s = round(self._now(), 3)
                        if self._awaiting is not None and _voiced(chunk):
                            self._awaiting.first_agent_audio_s = round(self._now(), 3)
                            self._awaiting = None
                elif event == "clear":
                    self.report.clears_at_s.append(round(self._now(), 3))
                    audible = self._last_agent_voice is not None and self._now() - self._last_agent_voice < 0.1
                    self.report.clear_cut_agent_audio.append(audible)
                    marks = [item for item in self._playback if isinstance(item, str)]
                    self._playback.clear()
                    for name in marks:  # Twilio echoes the marks a clear discards
                        await self._echo_mark(name)
                elif event == "mark":
                    self._playback.append(str(message.get("mark", {}).get("name", "")))
            self.report.hung_up_by = self.report.hung_up_by or "agent"
        except websockets.ConnectionClosed:
            self.report.hung_up_by = self.report.hung_up_by or "agent"
        finally:
            self.report.close_code = self._ws.close_code
            self.report.close_reason = self._ws.close_reason or ""
            self._closed.set()

    async def _echo_mark(self, name: str) -> None:
        self.report.marks_echoed.append(name)
        await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _clock(self) -> None:
        """Every 20 ms: send one frame of the callee's line, and play one frame of the agent's."""
        tick = 0
        while True:
            mic = self._mic.popleft() if self._mic else SILENCE
            await self._send(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(tick + 1),
                        "timestamp": str(tick * FRAME_MS),
                        "payload": base64.b64encode(mic).decode(),
                    },
                }
            )
            while self._playback and isinstance(self._playback[0], str):
                await self._echo_mark(self._playback.popleft())
            played = self._playback.popleft() if self._playback else SILENCE
            now = self._now()
            if played is not SILENCE and _voiced(played):
                if self._agent_started_at is None or (self._last_agent_voice is not None and now - self._last_agent_voice > 0.5):
                    self._agent_started_at = now
                self._last_agent_voice = now
                self.report.agent_voiced_seconds += FRAME_S
                for i, cleared in enumerate(self.report.clears_at_s):
                    if 0 <= now - cleared < 0.2:
                        self.report.agent_voiced_after_clear_s[i] += FRAME_S
            self.caller_track += audioop.ulaw2lin(mic, 2)
            self.agent_track += audioop.ulaw2lin(played, 2)
            while len(self.report.agent_voiced_after_clear_s) < len(self.report.clears_at_s):
                self.report.agent_voiced_after_clear_s.append(0.0)
            tick += 1
            await asyncio.sleep(max(0.0, self._t0 + tick * FRAME_S - time.monotonic()))

    def _agent_done_talking(self, since: float, pause: float) -> bool:
        return (
            self._last_agent_voice is not None
            and self._last_agent_voice > since
            and not self._playback
            and self._now() - self._last_agent_voice >= pause
        )

    async def _speak(self, prepared: list[list[bytes]]) -> None:
        last_line_end = 0.0
        for line, frames in zip(self.lines, prepared, strict=True):
            waited_from = self._now()
            if line.barge_in_after is not None:
                while self._agent_started_at is None or self._agent_started_at <= last_line_end:
                    await asyncio.sleep(FRAME_S)
                await asyncio.sleep(max(0.0, self._agent_started_at + line.barge_in_after - self._now()))
            else:
                while not self._agent_done_talking(last_line_end, line.pause):
                    if self._now() - waited_from > self.answer_timeout:
                        break
                    await asyncio.sleep(FRAME_S)
            self._mic.extend(frames)
            while self._mic:
                await asyncio.sleep(FRAME_S)
            last_line_end = self._now()
            turn = TurnLatency(line.text, round(last_line_end, 3))
            self.report.turns.append(turn)
            self.report.lines_spoken.append(line.text)
            self._awaiting = turn

    def write_wav(self, path: Path) -> Path:
        """Two-sided audio: the callee on the left channel, the agent on the right."""
        path.parent.mkdir(parents=True, exist_ok=True)
        n = min(len(self.caller_track), len(self.agent_track))
        stereo = bytearray()
        left, right = self.caller_track[:n], self.agent_track[:n]
        stereo = audioop.add(audioop.tostereo(bytes(left), 2, 1, 0), audioop.tostereo(bytes(right), 2, 0, 1), 2)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(stereo)
        return path
