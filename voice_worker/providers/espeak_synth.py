"""Offline speech synthesis through libespeak-ng (shipped by the espeakng-loader wheel).

libespeak-ng keeps all of its state in process globals (current voice, parameters,
output callback), so it is initialised once and every call is serialised behind one
lock. The async entry point funnels work onto a single dedicated thread so the event
loop never blocks and the library only ever sees one caller at a time.

Some of that state carries from one line to the next: the pitch flutter's phase (a static
inside the wave generator, out of reach of any API) goes on from where the previous line
left it, so the same text comes out as a slightly different waveform every time, and what
the offline recognizer makes of a caller's line depended on everything synthesized before
it in the process ("i'm not interested" heard as "i'm off it" about 1 time in 40).
`reproducible=True` speaks the line on a freshly loaded instance of the library (its own
copy of the shared object, so the agent's long-lived instance is left alone): the same
arguments always give the same audio. The callee's lines and the recognizer's warm-up use
it; the agent's voice does not need it and keeps the instance it loaded once (reloading
costs ~2.5 ms a line, and libespeak-ng keeps ~3 KB of each loaded voice after it ends).
"""

from __future__ import annotations

import _ctypes
import asyncio
import ctypes
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soxr

ESPEAK_SAMPLE_RATE = 22050

# Values from espeak-ng/speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report data errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # trailing sentence pause, so back-to-back sentences don't run together
_PARAM_RATE = 1
_PARAM_PITCH = 3
_DEFAULT_PITCH = 50
_RATE_MIN, _RATE_MAX = 80, 450

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """libespeak-ng refused a request (unknown voice, bad data path, ...)."""


class _Engine:
    """Process-wide handle on libespeak-ng; only ever used with ``_lock`` held."""

    def __init__(self, library_path: str) -> None:
        import espeakng_loader  # deferred: importing this module must stay cheap

        self._lib = ctypes.CDLL(library_path)
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self._lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_SetParameter.restype = ctypes.c_int
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        self._lib.espeak_Synth.restype = ctypes.c_int

        data_path = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({rate})")
        self.sample_rate = rate
        self._chunks: list[bytes] = []
        # The CFUNCTYPE object must outlive every synth call, or the C side would
        # jump into freed memory; keeping it on the instance pins it.
        self._callback = _SynthCallback(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav: ctypes.Array, numsamples: int, _events: int) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0  # 0 = keep going

    def synth(self, text: str, voice: str, rate_wpm: int, pitch: int | None) -> bytes:
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(f"unknown espeak voice {voice!r}")
            self._voice = voice
        self._lib.espeak_SetParameter(_PARAM_RATE, min(max(rate_wpm, _RATE_MIN), _RATE_MAX), 0)
        # Parameters are sticky globals, so an unspecified pitch must be reset
        # explicitly or it would inherit the previous caller's.
        pitch_value = _DEFAULT_PITCH if pitch is None else min(max(pitch, 0), 100)
        self._lib.espeak_SetParameter(_PARAM_PITCH, pitch_value, 0)

        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        self._chunks = []
        # No espeakSSML / espeakPHONEMES flag: caller text is spoken literally and
        # cannot smuggle markup or phoneme codes into the synthesiser.
        err = self._lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if err != 0:
            raise EspeakError(f"espeak_Synth failed ({err})")
        pcm = b"".join(self._chunks)
        self._chunks = []
        return pcm

    def unload(self) -> None:
        """End the library and unload it, so the next load starts from its initial state."""
        self._lib.espeak_ng_Terminate()
        _ctypes.dlclose(self._lib._handle)


_lock = threading.Lock()
_engine: _Engine | None = None
# One thread, not a pool: libespeak-ng must never be entered concurrently, and a
# single long-lived thread also avoids per-call thread churn.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")


_fresh_lock = threading.Lock()
_private_copy: str | None = None


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        import espeakng_loader

        _engine = _Engine(espeakng_loader.get_library_path())
    return _engine


def _library_copy() -> str:
    """A copy of libespeak-ng under another path: loading it gives an instance of its own."""
    global _private_copy
    if _private_copy is None:
        import espeakng_loader

        source = Path(espeakng_loader.get_library_path())
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        target = Path(tempfile.gettempdir()) / "voice_worker_espeak" / f"{digest}-{source.name}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copied beside the target and renamed, so another process never loads half a file.
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as staging, source.open("rb") as original:
                shutil.copyfileobj(original, staging)
            os.replace(staging.name, target)
        _private_copy = str(target)
    return _private_copy


def _clean(text: str) -> str:
    # NUL would terminate the C string early; other control chars are just noise.
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def synthesize(
    text: str, voice: str = "en-us", rate_wpm: int = 170, pitch: int | None = None, *, reproducible: bool = False
) -> tuple[bytes, int]:
    """Speak ``text`` as mono int16 PCM; returns ``(pcm, sample_rate)``.

    Blank text returns ``(b"", 22050)`` without touching the library. ``reproducible``: the
    same arguments give the same samples, whatever was spoken before.
    """
    cleaned = _clean(text)
    if not cleaned:
        return b"", ESPEAK_SAMPLE_RATE
    if reproducible:
        with _fresh_lock:
            engine = _Engine(_library_copy())
            try:
                return engine.synth(cleaned, voice, rate_wpm, pitch), engine.sample_rate
            finally:
                engine.unload()
    with _lock:
        engine = _get_engine()
        return engine.synth(cleaned, voice, rate_wpm, pitch), engine.sample_rate


async def synthesize_async(
    text: str, voice: str = "en-us", rate_wpm: int = 170, pitch: int | None = None, *, reproducible: bool = False
) -> tuple[bytes, int]:
    """Like :func:`synthesize`, run on the dedicated espeak thread."""
    loop = asyncio.get_running_loop()
    call = functools.partial(synthesize, text, voice, rate_wpm, pitch, reproducible=reproducible)
    return await loop.run_in_executor(_executor, call)


def resample_pcm16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono int16 PCM with soxr (one-shot, whole buffer)."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16)
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16).tobytes()
