"""A local Cartesia TTS websocket: `wss://api.cartesia.ai/tts/websocket`, on loopback.

Pipecat's `CartesiaTTSService` runs against it unchanged with `url="ws://127.0.0.1:<port>/tts/websocket"`,
and the real `cartesia` client with `websocket_base_url="ws://127.0.0.1:<port>"`. What it implements:

- handshake: an API key (`X-API-Key`, `Authorization: Bearer`, or the `api_key`/`access_token` query
  parameters) else HTTP 401; a version (`Cartesia-Version` header or `cartesia_version`) else 400.
- generation requests: `context_id`, `transcript`, `continue`, `model_id`, `voice`, `output_format`
  (`raw`; `pcm_s16le`, `pcm_f32le`, `pcm_mulaw`, `pcm_alaw`; 8000-48000 Hz), `add_timestamps`,
  `flush`, `language` (English only). Inputs of one context are spoken in order; a context's voice
  and format are those of its first input. A bad request answers with an `error` message.
- `chunk` messages (base64 audio of `chunk_ms` each, `step_time`, `flush_id` once flushing is used):
  the first chunk of each input `first_audio_s` after the input arrived, the rest right after it
  (the service generates faster than real time); `timestamps` (`word_timestamps` words, start, end in
  seconds of the context's audio) when asked; `flush_done` after a `flush`; `done` once an input with
  `continue: false` has been spoken. `{"context_id", "cancel": true}` stops a context silently.

The audio is real speech from the project's eSpeak NG (voice_worker/providers/espeak_synth.py) at
22,050 Hz, resampled and encoded to the requested format; every voice id speaks with espeak's `en-us`
voice. Word times are estimated by spreading each input's audio over its words by length. Synthesis
is cached by text, since calls of one benchmark say the same lines. Not implemented: the HTTP
`/tts/bytes` and SSE endpoints, phoneme timestamps, speed/emotion/volume controls (SSML-like tags are
stripped), pronunciation dictionaries, `max_buffer_delay_ms` buffering (generation starts at once).
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from scripts.standins.observed import ObservedDelays, sleep_until
from voice_worker.providers.espeak_synth import resample_pcm16, synthesize_async

ENCODINGS = {"pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"}
SAMPLE_RATES = {8000, 16000, 22050, 24000, 44100, 48000}
VOICE = "en-us"
_TAG = re.compile(r"<[^>]*>")
_CACHE_SIZE = 512


@dataclass
class CartesiaTiming:
    # From an input's arrival to its first audio chunk.
    first_audio_s: float = 0.1
    chunk_ms: int = 100


@dataclass
class _Input:
    transcript: str
    more: bool
    flush: bool
    arrived: float


@dataclass
class _Context:
    id: str
    encoding: str
    sample_rate: int
    timestamps: bool
    inputs: asyncio.Queue[_Input] = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None
    audio_seconds: float = 0.0
    flushes: int = 0
    closed: bool = False


class _Invalid(ValueError):
    pass


def _encode(pcm16: bytes, encoding: str) -> bytes:
    if encoding == "pcm_s16le":
        return pcm16
    if encoding == "pcm_mulaw":
        return audioop.lin2ulaw(pcm16, 2)
    if encoding == "pcm_alaw":
        return audioop.lin2alaw(pcm16, 2)
    return (np.frombuffer(pcm16, dtype="<i2").astype("<f4") / 32768.0).tobytes()


def _bytes_per_sample(encoding: str) -> int:
    return {"pcm_s16le": 2, "pcm_f32le": 4}.get(encoding, 1)


class _SpeechCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    async def speech(self, text: str, encoding: str, sample_rate: int) -> bytes:
        key = (text, encoding, sample_rate)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        pcm, rate = await synthesize_async(text, VOICE)
        audio = _encode(resample_pcm16(pcm, rate, sample_rate), encoding)
        self._entries[key] = audio
        while len(self._entries) > _CACHE_SIZE:
            self._entries.popitem(last=False)
        return audio


def _credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    query = websocket.query_params
    auth = websocket.headers.get("authorization", "")
    key = (
        websocket.headers.get("x-api-key")
        or (auth[7:].strip() if auth.lower().startswith("bearer ") else None)
        or query.get("api_key")
        or query.get("access_token")
    )
    version = websocket.headers.get("cartesia-version") or query.get("cartesia_version")
    return key, version


class CartesiaStandin:
    """The `/tts/websocket` endpoint; one instance serves any number of connections."""

    def __init__(self, timing: CartesiaTiming | None = None, observed: ObservedDelays | None = None) -> None:
        self.timing = timing or CartesiaTiming()
        self.observed = observed or ObservedDelays()
        self.cache = _SpeechCache()

    async def __call__(self, websocket: WebSocket) -> None:
        key, version = _credentials(websocket)
        if not key:
            await websocket.send_denial_response(JSONResponse({"error": "Invalid API key"}, status_code=401))
            return
        if not version:
            await websocket.send_denial_response(JSONResponse({"error": "Cartesia-Version header is required"}, status_code=400))
            return
        await websocket.accept()
        await _Connection(websocket, self).run()


class _Connection:
    def __init__(self, websocket: WebSocket, standin: CartesiaStandin) -> None:
        self.ws = websocket
        self.standin = standin
        self.request_id = str(uuid.uuid4())
        self.contexts: dict[str, _Context] = {}
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await self._error(None, "binary messages are not accepted")
                    continue
                await self._on_message(text, time.monotonic())
        except WebSocketDisconnect:
            pass
        finally:
            for context in self.contexts.values():
                if context.task is not None:
                    context.task.cancel()

    async def _send(self, message: dict[str, Any]) -> bool:
        async with self._send_lock:
            try:
                await self.ws.send_text(json.dumps(message))
                return True
            except (WebSocketDisconnect, RuntimeError, OSError):
                return False

    async def _error(self, context_id: str | None, detail: str, status: int = 400) -> None:
        await self._send(
            {
                "type": "error",
                "context_id": context_id,
                "status_code": status,
                "done": True,
                "title": "Invalid request",
                "message": detail,
                "error_code": "invalid_request",
                "request_id": self.request_id,
            }
        )

    async def _on_message(self, text: str, arrived: float) -> None:
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise _Invalid("a message must be a JSON object")
        except (json.JSONDecodeError, _Invalid) as exc:
            await self._error(None, str(exc) if isinstance(exc, _Invalid) else "invalid JSON")
            return
        context_id = request.get("context_id")
        if not isinstance(context_id, str) or not context_id:
            await self._error(None, "context_id is required")
            return
        if request.get("cancel"):
            context = self.contexts.pop(context_id, None)
            if context is not None and context.task is not None:
                context.task.cancel()
            return
        try:
            context = self._context_for(context_id, request)
            transcript = request.get("transcript", "")
            if not isinstance(transcript, str):
                raise _Invalid("transcript must be a string")
        except _Invalid as exc:
            await self._error(context_id, str(exc))
            return
        context.inputs.put_nowait(
            _Input(transcript, bool(request.get("continue", False)), bool(request.get("flush", False)), arrived)
        )
        if not request.get("continue", False):
            context.closed = True

    def _context_for(self, context_id: str, request: dict[str, Any]) -> _Context:
        existing = self.contexts.get(context_id)
        if existing is not None:
            if existing.closed:
                raise _Invalid(f"context {context_id} has already received its last input")
            return existing
        if not request.get("model_id"):
            raise _Invalid("model_id is required")
        voice = request.get("voice")
        if not isinstance(voice, dict) or not voice.get("id"):
            raise _Invalid("voice must be {mode: id, id: <voice id>}")
        language = request.get("language") or "en"
        if not str(language).lower().startswith("en"):
            raise _Invalid(f"language {language!r} is not supported by the stand-in")
        output = request.get("output_format")
        if not isinstance(output, dict) or output.get("container") != "raw":
            raise _Invalid("output_format.container must be raw")
        if output.get("encoding") not in ENCODINGS:
            raise _Invalid(f"output_format.encoding must be one of {', '.join(sorted(ENCODINGS))}")
        if output.get("sample_rate") not in SAMPLE_RATES:
            raise _Invalid(f"output_format.sample_rate must be one of {sorted(SAMPLE_RATES)}")
        context = _Context(context_id, output["encoding"], int(output["sample_rate"]), bool(request.get("add_timestamps")))
        context.task = asyncio.create_task(self._speak(context))
        self.contexts[context_id] = context
        return context

    async def _speak(self, context: _Context) -> None:
        timing = self.standin.timing
        chunk_bytes = max(1, int(context.sample_rate * timing.chunk_ms / 1000)) * _bytes_per_sample(context.encoding)
        seconds_per_byte = 1 / (context.sample_rate * _bytes_per_sample(context.encoding))
        while True:
            item = await context.inputs.get()
            spoken = " ".join(_TAG.sub(" ", item.transcript).split())
            if spoken:
                started = time.perf_counter()
                audio = await self.standin.cache.speech(spoken, context.encoding, context.sample_rate)
                step_ms = round((time.perf_counter() - started) * 1000, 1)
                await sleep_until(item.arrived + timing.first_audio_s)
                for offset in range(0, len(audio), chunk_bytes):
                    chunk = {
                        "type": "chunk",
                        "context_id": context.id,
                        "data": base64.b64encode(audio[offset : offset + chunk_bytes]).decode(),
                        "done": False,
                        "status_code": 206,
                        "step_time": step_ms,
                    }
                    if context.flushes:
                        chunk["flush_id"] = context.flushes + 1
                    if not await self._send(chunk):
                        return
                    if offset == 0:
                        self.standin.observed.record("tts_first_audio", time.monotonic() - item.arrived)
                duration = len(audio) * seconds_per_byte
                if context.timestamps:
                    await self._send(self._timestamps(context, spoken, duration))
                context.audio_seconds += duration
            if item.flush:
                context.flushes += 1
                await self._send(
                    {
                        "type": "flush_done",
                        "context_id": context.id,
                        "done": False,
                        "flush_done": True,
                        "flush_id": context.flushes,
                        "status_code": 206,
                    }
                )
            if not item.more:
                await self._send({"type": "done", "context_id": context.id, "done": True, "status_code": 200})
                self.contexts.pop(context.id, None)
                return

    def _timestamps(self, context: _Context, text: str, duration: float) -> dict[str, Any]:
        words = text.split()
        weights = [len(w) + 1 for w in words]
        total = sum(weights)
        starts, ends, at = [], [], context.audio_seconds
        for weight in weights:
            starts.append(round(at, 3))
            at += duration * weight / total
            ends.append(round(at, 3))
        return {
            "type": "timestamps",
            "context_id": context.id,
            "status_code": 206,
            "done": False,
            "word_timestamps": {"words": words, "start": starts, "end": ends},
        }
