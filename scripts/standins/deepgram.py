"""A local Deepgram live transcription endpoint: `wss://api.deepgram.com/v1/listen`, on loopback.

Pipecat's `DeepgramSTTService` (through the real `deepgram-sdk` client) runs against it unchanged with
`base_url="ws://127.0.0.1:<port>"`. It speaks the wire protocol of `/v1/listen`:

- handshake: `Authorization: Token <key>` (or `Bearer`, or the `token` subprotocol) else HTTP 401;
  query `encoding` (`linear16`, `mulaw`, `alaw`), `sample_rate` (required with them), `channels`
  (1 only), `interim_results`, `endpointing` (ms, or `false`), `utterance_end_ms`, `vad_events`,
  `punctuate`, `keyterm`/`keywords` (added to the vocabulary); anything unsupported is an HTTP 400.
  The answer carries a `dg-request-id` header.
- binary messages are audio; text messages `KeepAlive`, `Finalize` and `CloseStream`.
- `Results`: interim (`is_final: false`) about every `interim_every_s` of speech while the caller
  talks, then a final (`is_final: true`, `speech_final: true` unless `endpointing=false`)
  `final_delay_s` after the end of speech, with words and their times in the stream.
- `Finalize` flushes: the open segment's final comes with `from_finalize: true` (never before
  `final_delay_s` after its end of speech: the delay stands for processing time, which a flush
  does not remove); with nothing open, an empty final with `from_finalize: true` answers at once.
- `SpeechStarted` with `vad_events=true`; `UtteranceEnd` after `utterance_end_ms` without words.
- `CloseStream` sends what is left, then `Metadata` (request id, sha256 and duration of the audio),
  then closes (1000). No audio nor KeepAlive for `idle_timeout_s`: closed with 1011 (NET-0001).

The words come from real recognition of the audio (voice_worker/providers/streaming_recognizer.py: the
project's pocketsphinx model and caller-phrase language model); the end of speech is found by an
energy gate on 10 ms frames. A segment closes when the silence after it in the stream reaches the
final delay less 30 ms (or the client's `endpointing`, if longer), so a pause inside a line longer than
that splits it into two finals, as Deepgram's endpointing does. Silence is counted in the stream's
audio, not on the clock: a client that delivers its audio late gets its final late (a stream that
stops sending closes its segment after 1 s). The final is sent `final_delay_s` after the last voiced
audio arrived, or as soon as the segment is closed if that is later. Not implemented: `Configure`,
multichannel, diarization, smart formatting, numerals, languages other than English, containerized
audio.
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import hashlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from models.log_config import get_logger
from prompts.caller_intent import EXPECTED_REPLIES
from scripts.standins.observed import ObservedDelays, sleep_until
from voice_worker.providers.speech_vocabulary import CALLER_PHRASES, normalize
from voice_worker.providers.streaming_recognizer import StreamingRecognizer, Word, warm_cmn

log = get_logger(__name__)

# Deepgram hears any English; pocketsphinx needs a language model, and this is the one the project's
# offline recognizer uses for callers (voice_worker/providers/selection.py), before call-specific words.
VOCABULARY = [*CALLER_PHRASES, *EXPECTED_REPLIES]

MODEL_INFO = {"name": "general-nova-3", "version": "standin", "arch": "nova-3"}
MODEL_UUID = "00000000-0000-4000-8000-00000000d9a1"
_FRAME_SECONDS = 0.01
# Audio kept from before the energy gate opens, so a word's soft onset is not cut.
_PREROLL_SECONDS = 0.2
# Voiced 10 ms frames in a row that open a segment (a lone click does not).
_ONSET_FRAMES = 2
_ENCODINGS = {"linear16", "mulaw", "alaw"}
# How long before the final is due the end of a segment is decided.
_DECIDE_EARLY_S = 0.03
# No audio for this long closes an open segment (the client stopped streaming).
_STALL_S = 1.0


@dataclass
class DeepgramTiming:
    # From the end of speech (the last voiced audio received) to the final result.
    final_delay_s: float = 0.1
    # Speech audio between interim results.
    interim_every_s: float = 0.5
    # 16-bit RMS above which a 10 ms frame is speech. Low, for the digital silence of the simulated
    # line: at 300 the closures of stops inside espeak words ("tuesday at") read as 100 ms pauses.
    voice_rms: int = 60
    idle_timeout_s: float = 10.0


@dataclass
class _Options:
    encoding: str
    sample_rate: int
    interim_results: bool
    endpointing_s: float | None  # None: endpointing=false
    utterance_end_s: float | None
    vad_events: bool
    punctuate: bool
    vocabulary: list[str] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() == "true"


def _options(websocket: WebSocket) -> _Options:
    query = websocket.query_params
    encoding = query.get("encoding")
    if encoding is None:
        raise _Refused(400, "containerized audio is not supported by the stand-in: pass encoding and sample_rate")
    if encoding not in _ENCODINGS:
        raise _Refused(400, f"encoding {encoding!r} is not supported by the stand-in ({', '.join(sorted(_ENCODINGS))})")
    try:
        sample_rate = int(query.get("sample_rate", ""))
    except ValueError:
        raise _Refused(400, "sample_rate is required with encoding") from None
    if sample_rate < 8000 or sample_rate > 48000 or (encoding != "linear16" and sample_rate != 8000):
        raise _Refused(400, f"sample_rate {sample_rate} is not supported with {encoding}")
    if query.get("channels", "1") != "1" or _flag(query.get("multichannel"), False):
        raise _Refused(400, "only one channel is supported by the stand-in")
    endpointing = query.get("endpointing")
    if endpointing is None:
        endpointing_s: float | None = 0.01  # Deepgram's default
    elif endpointing.lower() == "false":
        endpointing_s = None
    else:
        try:
            endpointing_s = int(endpointing) / 1000
        except ValueError:
            raise _Refused(400, "endpointing must be a number of ms or false") from None
    utterance_end = query.get("utterance_end_ms")
    extra_words = [*query.getlist("keyterm"), *(k.split(":", 1)[0] for k in query.getlist("keywords"))]
    return _Options(
        encoding=encoding,
        sample_rate=sample_rate,
        interim_results=_flag(query.get("interim_results"), False),
        endpointing_s=endpointing_s,
        utterance_end_s=int(utterance_end) / 1000 if utterance_end and utterance_end.isdigit() else None,
        vad_events=_flag(query.get("vad_events"), False),
        punctuate=_flag(query.get("punctuate"), False),
        vocabulary=[w for w in extra_words if w.strip()],
    )


def _api_key(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The key, and the subprotocol to accept when it came as one."""
    auth = websocket.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() in ("token", "bearer") and key.strip():
        return key.strip(), None
    protocols = websocket.scope.get("subprotocols") or []
    if len(protocols) == 2 and protocols[0].lower() in ("token", "bearer"):
        return protocols[1], protocols[0]
    return None, None


class DeepgramStandin:
    """The `/v1/listen` websocket endpoint; one instance serves any number of streams."""

    def __init__(self, timing: DeepgramTiming | None = None, observed: ObservedDelays | None = None) -> None:
        self.timing = timing or DeepgramTiming()
        self.observed = observed or ObservedDelays()

    def warm_up(self) -> None:
        """Build the language model and measure the warm-up mean before the first stream needs them."""
        warm_cmn(VOCABULARY)

    async def __call__(self, websocket: WebSocket) -> None:
        key, subprotocol = _api_key(websocket)
        try:
            if key is None:
                raise _Refused(401, "INVALID_AUTH: Invalid credentials.")
            options = _options(websocket)
        except _Refused as refused:
            body = {"err_code": "Bad Request" if refused.status == 400 else "INVALID_AUTH", "err_msg": str(refused)}
            await websocket.send_denial_response(JSONResponse(body, status_code=refused.status))
            return
        request_id = str(uuid.uuid4())
        await websocket.accept(subprotocol=subprotocol, headers=[(b"dg-request-id", request_id.encode())])
        stream = _Stream(websocket, options, self.timing, self.observed, request_id)
        await stream.run()


class _Stream:
    def __init__(
        self, websocket: WebSocket, options: _Options, timing: DeepgramTiming, observed: ObservedDelays, request_id: str
    ) -> None:
        self.ws = websocket
        self.options = options
        self.timing = timing
        self.observed = observed
        self.request_id = request_id
        self.recognizer = StreamingRecognizer([*VOCABULARY, *options.vocabulary], options.sample_rate)
        self.frame_bytes = int(options.sample_rate * _FRAME_SECONDS) * 2
        self.audio = hashlib.sha256()
        self.audio_seconds = 0.0
        self._pending = bytearray()
        self._preroll: deque[bytes] = deque(maxlen=int(_PREROLL_SECONDS / _FRAME_SECONDS))
        self._voiced_run = 0
        self._segment_start = 0.0  # stream seconds where the open segment's audio begins
        self._speech_seconds = 0.0  # speech audio in the open segment (interim pacing)
        self._next_interim = 0.0
        self._last_partial = ""
        self._last_voiced_audio = 0.0  # stream seconds at the end of the last voiced frame
        self._last_voiced_wall = 0.0  # monotonic time that frame arrived
        self._last_word_end: float | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._utterance_end_timer: asyncio.TimerHandle | None = None
        # (monotonic due time, message); a message is sent no earlier than due, and in order.
        self._outbox: asyncio.Queue[tuple[float, dict | None]] = asyncio.Queue()
        self._last_due = 0.0
        self._last_heard = time.monotonic()

    @property
    def required_silence(self) -> float:
        """Silence that ends a segment. The decision comes a little before the final is due, so that
        ending the search and a busy loop do not make the final late."""
        endpointing = self.options.endpointing_s or 0.0
        delay = self.timing.final_delay_s
        return max(delay - min(_DECIDE_EARLY_S, delay / 3), endpointing)

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        watchdog = asyncio.create_task(self._idle_watchdog())
        close_stream = False
        try:
            while not close_stream:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self._last_heard = time.monotonic()
                if message.get("bytes") is not None:
                    self._on_audio(message["bytes"])
                elif message.get("text") is not None:
                    close_stream = self._on_control(message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            watchdog.cancel()
            for timer in (self._stall_timer, self._utterance_end_timer):
                if timer is not None:
                    timer.cancel()
            if close_stream:
                self._queue(time.monotonic(), self._metadata())
            # None tells the sender to finish what is queued, in time, and stop.
            self._queue(time.monotonic(), None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sender, timeout=self.timing.final_delay_s + 5)
            if close_stream:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client did not wait for the close
                    await self.ws.close(code=1000)

    # --- audio in -------------------------------------------------------------------------------
    def _on_audio(self, data: bytes) -> None:
        self.audio.update(data)
        if self.options.encoding == "mulaw":
            data = audioop.ulaw2lin(data, 2)
        elif self.options.encoding == "alaw":
            data = audioop.alaw2lin(data, 2)
        self._pending += data
        now = time.monotonic()
        self._arm_stall_timer(now)
        while len(self._pending) >= self.frame_bytes:
            frame = bytes(self._pending[: self.frame_bytes])
            del self._pending[: self.frame_bytes]
            self._on_frame(frame, now)

    def _on_frame(self, frame: bytes, now: float) -> None:
        self.audio_seconds += _FRAME_SECONDS
        rms = audioop.rms(frame, 2)
        voiced = rms > self.timing.voice_rms
        pause_begins = not voiced and self._voiced_run > 0
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        if voiced:
            self.recognizer.note_voiced_rms(rms)
        if not self.recognizer.active:
            self._preroll.append(frame)
            if self._voiced_run >= _ONSET_FRAMES:
                self._open_segment(now)
            return
        if voiced:
            self._last_voiced_audio, self._last_voiced_wall = self.audio_seconds, now
            self._speech_seconds += _FRAME_SECONDS
            if self._utterance_end_timer is not None:
                self._utterance_end_timer.cancel()
                self._utterance_end_timer = None
        if pause_begins:
            # Decode the speech up to here now: if the pause turns out to be the end, only the
            # search's end is left to do when the final is due.
            self.recognizer.flush()
            self.recognizer.feed(frame)
        elif self.recognizer.feed(frame) and self.options.interim_results and self._speech_seconds >= self._next_interim:
            self._next_interim = self._speech_seconds + self.timing.interim_every_s
            self._send_interim()
        # Silence is counted in the stream's time, as Deepgram does: audio that comes late (a busy
        # client) delays the final, audio that comes faster than real time hastens the decision.
        if not voiced and self.audio_seconds - self._last_voiced_audio >= self.required_silence:
            self._close_segment(from_finalize=False, trailing_silence=True)

    def _open_segment(self, now: float) -> None:
        self._segment_start = self.audio_seconds - len(self._preroll) * _FRAME_SECONDS
        self._speech_seconds = self._voiced_run * _FRAME_SECONDS
        self._next_interim = self.timing.interim_every_s
        self._last_partial = ""
        self._last_voiced_audio, self._last_voiced_wall = self.audio_seconds, now
        self.recognizer.begin()
        self.recognizer.feed(b"".join(self._preroll))
        self._preroll.clear()
        if self.options.vad_events:
            self._queue(now, {"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(self._segment_start, 3)})

    def _arm_stall_timer(self, now: float) -> None:
        # A client that stops sending audio mid-speech still gets its final, a while later.
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        loop = asyncio.get_running_loop()
        self._stall_timer = loop.call_at(loop.time() + _STALL_S, self._close_after_stall)

    def _close_after_stall(self) -> None:
        self._stall_timer = None
        if self.recognizer.active:
            self._close_segment(from_finalize=False, trailing_silence=False)

    # --- results out ----------------------------------------------------------------------------
    def _send_interim(self) -> None:
        text = self.recognizer.partial()
        if not text or text == self._last_partial:
            return
        self._last_partial = text
        duration = self.audio_seconds - self._segment_start
        self._queue(time.monotonic(), self._results(text, [], is_final=False, speech_final=False, duration=duration))

    def _close_segment(self, *, from_finalize: bool, trailing_silence: bool = False) -> None:
        text, words = self.recognizer.finish(trailing_silence=trailing_silence)
        duration = self.audio_seconds - self._segment_start
        speech_final = not from_finalize and self.options.endpointing_s is not None
        due = self._last_voiced_wall + self.timing.final_delay_s
        message = self._results(
            text, words, is_final=True, speech_final=speech_final, duration=duration, from_finalize=from_finalize
        )
        self._queue(due, message, observe_from=self._last_voiced_wall)
        if words:
            self._last_word_end = self._segment_start + words[-1].end
        if self.options.utterance_end_s is not None and self.options.interim_results and self._last_word_end is not None:
            loop = asyncio.get_running_loop()
            when = max(due, self._last_voiced_wall + self.options.utterance_end_s)
            self._utterance_end_timer = loop.call_at(when - time.monotonic() + loop.time(), self._utterance_end)

    def _utterance_end(self) -> None:
        self._utterance_end_timer = None
        if not self.recognizer.active and self._last_word_end is not None:
            self._queue(
                time.monotonic(), {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self._last_word_end, 3)}
            )

    def _results(
        self, text: str, words: list[Word], *, is_final: bool, speech_final: bool, duration: float, from_finalize: bool = False
    ) -> dict:
        transcript = " ".join(normalize(text))
        spoken = [w for w in words if w.word]
        word_items = []
        for i, w in enumerate(spoken):
            shown = w.word
            if self.options.punctuate:
                shown = (shown[:1].upper() + shown[1:]) if i == 0 else shown
                shown = shown + "." if i == len(spoken) - 1 else shown
            word_items.append(
                {
                    "word": w.word,
                    "start": round(self._segment_start + w.start, 3),
                    "end": round(self._segment_start + w.end, 3),
                    "confidence": 0.9,
                    "punctuated_word": shown,
                }
            )
        if self.options.punctuate and transcript:
            transcript = transcript[:1].upper() + transcript[1:] + "."
        message: dict = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration, 3),
            "start": round(self._segment_start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [{"transcript": transcript, "confidence": 0.9 if transcript else 0.0, "words": word_items}]
            },
            "metadata": {"request_id": self.request_id, "model_info": MODEL_INFO, "model_uuid": MODEL_UUID},
        }
        if is_final:
            message["from_finalize"] = from_finalize
        return message

    def _queue(self, due: float, message: dict | None, observe_from: float | None = None) -> None:
        self._last_due = max(self._last_due, due)
        if message is not None and observe_from is not None:
            message = {**message, "_observe_from": observe_from}
        self._outbox.put_nowait((self._last_due, message))

    async def _send_loop(self) -> None:
        while True:
            due, message = await self._outbox.get()
            if message is None:
                return
            await sleep_until(due)
            observe_from = message.pop("_observe_from", None)
            try:
                await self.ws.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            if observe_from is not None and message["channel"]["alternatives"][0]["transcript"]:
                self.observed.record("stt_final", time.monotonic() - observe_from)

    # --- control messages -----------------------------------------------------------------------
    def _on_control(self, text: str) -> bool:
        """Handle a text message; True when the client asked to close the stream."""
        try:
            kind = json.loads(text).get("type")
        except (json.JSONDecodeError, AttributeError):
            kind = None
        if kind == "KeepAlive":
            return False
        if kind in ("Finalize", "CloseStream"):
            if self.recognizer.active:
                self._close_segment(from_finalize=True)
            elif kind == "Finalize":
                self._queue(
                    time.monotonic(), self._results("", [], is_final=True, speech_final=False, duration=0.0, from_finalize=True)
                )
            return kind == "CloseStream"
        log.info("deepgram_standin_ignored_message", kind=kind)
        return False

    def _metadata(self) -> dict:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": self.audio.hexdigest(),
            "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "duration": round(self.audio_seconds, 3),
            "channels": 1,
            "models": [MODEL_UUID],
            "model_info": {MODEL_UUID: MODEL_INFO},
        }

    async def _idle_watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if time.monotonic() - self._last_heard > self.timing.idle_timeout_s:
                log.info("deepgram_standin_idle_close", request_id=self.request_id)
                with contextlib.suppress(RuntimeError):
                    await self.ws.close(
                        code=1011,
                        reason="Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001",
                    )
                return
