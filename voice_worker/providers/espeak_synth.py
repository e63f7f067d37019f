"""Offline speech synthesis through libespeak-ng (shipped by the espeakng-loader wheel).

libespeak-ng keeps all of its state in process globals (current voice, parameters,
output callback), so it is initialised once and every call is serialised behind one
lock. The async entry point funnels work onto a single dedicated thread so the event
loop never blocks and the library only ever sees one caller at a time.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

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

    def __init__(self) -> None:
        import espeakng_loader  # deferred: importing this module must stay cheap

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
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


_lock = threading.Lock()
_engine: _Engine | None = None
# One thread, not a pool: libespeak-ng must never be entered concurrently, and a
# single long-lived thread also avoids per-call thread churn.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def _clean(text: str) -> str:
    # NUL would terminate the C string early; other control chars are just noise.
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def synthesize(text: str, voice: str = "en-us", rate_wpm: int = 170, pitch: int | None = None) -> tuple[bytes, int]:
    """Speak ``text`` as mono int16 PCM; returns ``(pcm, sample_rate)``.

    Blank text returns ``(b"", 22050)`` without touching the library.
    """
    cleaned = _clean(text)
    if not cleaned:
        return b"", ESPEAK_SAMPLE_RATE
    with _lock:
        engine = _get_engine()
        return engine.synth(cleaned, voice, rate_wpm, pitch), engine.sample_rate


async def synthesize_async(text: str, voice: str = "en-us", rate_wpm: int = 170, pitch: int | None = None) -> tuple[bytes, int]:
    """Like :func:`synthesize`, run on the dedicated espeak thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(synthesize, text, voice, rate_wpm, pitch))


def resample_pcm16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono int16 PCM with soxr (one-shot, whole buffer)."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16)
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16).tobytes()
