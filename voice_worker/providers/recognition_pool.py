"""Where the offline recognizer's decoding runs: worker processes shared by every call, or threads.

pocketsphinx holds the GIL while it decodes (measured: two threads decoding take 1.05x the time of
one thread doing the same work twice), so decoding in a thread of the server process competes with
every call's event loop. `STT_DECODE_PROCESSES` >= 1 runs it in that many worker processes, started
once per server process and warmed (acoustic model, language model, cepstral mean) before the first
call; 0 keeps it in two threads of the server process.

A caller stream is pinned to one worker for its whole life, because its decoder holds the search
state of the utterance in progress: each worker is a single-worker executor, which also runs a
stream's operations in the order they were submitted, so audio can be handed over without waiting.
Decoders are kept per language model and reused by the next call with the same vocabulary (loading
one takes ~0.3 s).
"""

from __future__ import annotations

import asyncio
import audioop
import hashlib
import multiprocessing
import threading
import uuid
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from models.log_config import get_logger
from voice_worker.providers.speech_vocabulary import CALLER_PHRASES
from voice_worker.providers.streaming_recognizer import StreamingRecognizer, warm_cmn

log = get_logger(__name__)

# 20 ms frames louder than this count as speech for the recognizer's noise floor level (the same
# gate the Deepgram stand-in uses).
VOICED_RMS = 60
_THREADS_WITHOUT_PROCESSES = 2

# --- the worker side: runs in a worker process (or a thread of the server process) --------------------

_streams: dict[str, StreamingRecognizer] = {}
# Unvoiced audio at the end of what a stream was fed: decoded only once speech follows it, and the
# silence before an utterance's first word not at all. Decoding the silence VAD waits through before
# it reports a stop (with the noise floor added) measured "off" and "the" appended to lines (93-95%
# word accuracy against 98%), and the pre-roll's silence "fifth" put before them.
_held_silence: dict[str, bytearray] = {}
_LEADING_SILENCE_KEPT_S = 0.06
_idle: dict[str, list[StreamingRecognizer]] = {}
_worker_lock = threading.Lock()


def _vocabulary_key(phrases: list[str], sample_rate: int) -> str:
    return f"{sample_rate}:" + hashlib.sha256("\n".join(phrases).encode("utf-8")).hexdigest()


def _warm_worker() -> None:
    """Load the model once at start-up, so the first call does not wait for it."""
    warm_cmn(CALLER_PHRASES)
    _idle.setdefault(_vocabulary_key(CALLER_PHRASES, 8000), []).append(StreamingRecognizer(CALLER_PHRASES, 8000))


def _open(stream_id: str, phrases: list[str], sample_rate: int) -> None:
    key = _vocabulary_key(phrases, sample_rate)
    with _worker_lock:
        spare = _idle.get(key)
        recognizer = spare.pop() if spare else None
    if recognizer is None:
        recognizer = StreamingRecognizer(phrases, sample_rate)
    recognizer.start_stream()
    with _worker_lock:
        _streams[stream_id] = recognizer


def _begin(stream_id: str, pcm16: bytes) -> None:
    recognizer = _streams[stream_id]
    recognizer.begin()
    recognizer.heard_speech = False
    _held_silence[stream_id] = bytearray()
    _feed(stream_id, pcm16)


def _feed(stream_id: str, pcm16: bytes) -> None:
    recognizer = _streams[stream_id]
    if not recognizer.active:
        return
    held = _held_silence[stream_id]
    frame = recognizer.frame_bytes
    for i in range(0, len(pcm16) - len(pcm16) % 2, frame):
        chunk = pcm16[i : i + frame]
        rms = audioop.rms(chunk, 2)
        if rms <= VOICED_RMS:
            held += chunk
            continue
        recognizer.note_voiced_rms(rms)
        if held:
            if not recognizer.heard_speech:
                del held[: max(0, len(held) - int(_LEADING_SILENCE_KEPT_S * recognizer.sample_rate) * 2)]
            recognizer.feed(bytes(held))
            held.clear()
        recognizer.heard_speech = True
        recognizer.feed(chunk)


def _finish(stream_id: str) -> str:
    recognizer = _streams[stream_id]
    _held_silence.pop(stream_id, None)  # the silence after the last word: never decoded
    if not recognizer.active:
        return ""
    text, _ = recognizer.finish()
    return text


def _close(stream_id: str) -> None:
    # The stream's decoder is dropped, not handed to the next call: a decoder that heard a caller
    # carries state its resets miss (after a barge-in call, the next caller's "stop calling me" came out
    # "off calling me" and the opt-out was lost). Only the decoders warmed at start-up, which heard
    # nobody, are handed out as they are.
    with _worker_lock:
        _streams.pop(stream_id, None)
        _held_silence.pop(stream_id, None)


# --- the server side ---------------------------------------------------------------------------------


class RecognitionStream:
    """One caller's recognizer in the pool: `begin` at speech start, `feed` while it lasts, `finish` at its end."""

    def __init__(self, executor: Executor, stream_id: str, release: callable) -> None:  # type: ignore[valid-type]
        self._executor = executor
        self._id = stream_id
        self._release = release
        self._pending: Future | None = None

    def _submit(self, fn, *args) -> Future:
        future = self._executor.submit(fn, self._id, *args)
        self._pending = future
        return future

    def begin(self, preroll: bytes) -> None:
        """Start an utterance with the audio heard just before speech was detected (not awaited)."""
        self._submit(_begin, preroll)

    def feed(self, pcm16: bytes) -> None:
        """Hand over audio; decoded in the worker while the caller goes on speaking (not awaited)."""
        self._submit(_feed, pcm16)

    async def finish(self) -> str:
        """End the utterance; its words (all audio fed before is decoded first: one worker runs in order)."""
        return await asyncio.wrap_future(self._submit(_finish))

    async def close(self) -> None:
        try:
            await asyncio.wrap_future(self._submit(_close))
        finally:
            self._release()


class RecognitionPool:
    """Single-worker executors (processes or threads); a stream goes to the one holding fewest streams."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executors: list[Executor] = [self._new_executor() for _ in range(processes or _THREADS_WITHOUT_PROCESSES)]
        self._load = [0] * len(self._executors)
        self._lock = threading.Lock()

    def _new_executor(self) -> Executor:
        if self.processes > 0:
            # spawn: the server process runs threads and an event loop, which a fork would copy half-way.
            context = multiprocessing.get_context("spawn")
            return ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_warm_worker)
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-decode")

    def warm(self) -> list[Future]:
        """Start every worker and load the model in it now (a process starts on its first task)."""
        if self.processes > 0:
            return [executor.submit(_noop) for executor in self._executors]
        return [self._executors[0].submit(_warm_worker)]

    def worker_pids(self) -> list[int]:
        """The decode worker processes running now (none when decoding in threads)."""
        return [pid for executor in self._executors for pid in getattr(executor, "_processes", None) or {}]

    async def open_stream(self, phrases: list[str], sample_rate: int) -> RecognitionStream:
        with self._lock:
            slot = min(range(len(self._executors)), key=self._load.__getitem__)
            self._load[slot] += 1
        # Unique across pools: decoding in threads, every pool of the process shares the worker-side
        # stream table, and one pool's "s3" took over another's (a stream still open fed its audio in).
        stream_id = uuid.uuid4().hex
        executor = self._executors[slot]

        def release() -> None:
            with self._lock:
                self._load[slot] -= 1

        try:
            try:
                await asyncio.wrap_future(executor.submit(_open, stream_id, list(phrases), sample_rate))
            except BrokenExecutor:
                # Its worker died (killed, out of memory): the calls on it lose their utterance in
                # progress; later calls get a new worker.
                log.warning("stt_decode_worker_replaced", slot=slot)
                with self._lock:
                    if self._executors[slot] is executor:
                        self._executors[slot] = self._new_executor()
                    executor = self._executors[slot]
                await asyncio.wrap_future(executor.submit(_open, stream_id, list(phrases), sample_rate))
        except BaseException:
            release()
            raise
        return RecognitionStream(executor, stream_id, release)

    def shutdown(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)


def _noop() -> None:
    return None


_pool: RecognitionPool | None = None
_pool_lock = threading.Lock()


def recognition_pool(processes: int) -> RecognitionPool:
    """The process's one pool, built on first use with `processes` workers (STT_DECODE_PROCESSES)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = RecognitionPool(processes)
            _pool.warm()
            log.info("stt_decode_pool_started", processes=processes)
        return _pool
