"""Offline speech recognition, fed while the caller speaks: the offline STT's and the Deepgram stand-in's.

Decoding a whole utterance only once it is over took 150-250 ms for a 2 s line, after VAD stop. Here
the pocketsphinx en-us acoustic model, the call's language model and the phone-band preparation
(upsampling with fricative mirroring, a noise floor: pocketsphinx_recognizer.py) run on 100 ms blocks
as they arrive, so at the end of speech only the last block and the search's end are left: a few ms
(measured p50 ~10 ms). On espeak lines over 8 kHz mu-law (13 phrases x 4 voices) it recognized 97.8-
99.6% of words, the whole-utterance decoder it replaced 98.2-99.1%, given two changes that streaming
needs:

- cepstral mean normalization is live, not batch, and every utterance starts from a mean measured
  once on warm-up speech (a cold start garbles the first lines; a fixed start also makes a line come
  out the same whatever was said before it);
- the noise floor has a level fixed from the running speech level instead of each block's own.

The forward flat-lexicon pass is off: it re-searches the whole utterance at its end (50-100 ms).
"""

from __future__ import annotations

import audioop
import threading
from dataclasses import dataclass

import numpy as np

from voice_worker.providers.espeak_synth import resample_pcm16, synthesize
from voice_worker.providers.pocketsphinx_recognizer import (
    MODEL_SAMPLE_RATE,
    NOISE_FLOOR_SNR_DB,
    _telephone_to_wideband,
    language_model_for,
)

# Decoding works on blocks this long: long enough for the band mirroring's 20 ms frames, short
# enough that the block still pending at the end of speech decodes in a few ms.
BLOCK_SECONDS = 0.1
# Speech level assumed before any speech was heard (espeak over mu-law measures ~3,000 RMS).
_INITIAL_SPEECH_RMS = 3000.0
_WARMUP_LINES = ("hello who is this", "we have about twenty employees", "call me back later")
_FRAMES_PER_SECOND = 100  # pocketsphinx's frame rate

_warm_cmn: str | None = None
_warm_lock = threading.Lock()


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the segment's audio
    end: float


def _decoder(phrases: list[str]):
    import pocketsphinx

    lm_path, dict_path = language_model_for(phrases)
    return pocketsphinx.Decoder(
        hmm=pocketsphinx.get_model_path("en-us/en-us"),
        lm=str(lm_path),
        dict=str(dict_path),
        samprate=MODEL_SAMPLE_RATE,
        topn=8,
        cmn="live",
        fwdflat=False,
        # Wider than pocketsphinx's defaults (1e-48, 7e-29): without the second pass, the first must not
        # prune the right word at an utterance's start ("tuesday at" -> "do fine"); ~20% more CPU.
        beam=1e-60,
        wbeam=1e-40,
        # The language model is the callers' phrases: leaning on it (default 6.5) keeps "tuesday at three
        # pm" from coming out as "do fifth we pm" when espeak's waveform varies (60/60 against 57/60).
        lw=10.0,
        loglevel="FATAL",
    )


def warm_cmn(phrases: list[str]) -> str:
    """The cepstral mean of espeak phone speech, measured once per process."""
    global _warm_cmn
    with _warm_lock:
        if _warm_cmn is None:
            pcm, rate = synthesize(" ".join(_WARMUP_LINES), "en-us", 165, 30, reproducible=True)
            phone = audioop.ulaw2lin(audioop.lin2ulaw(resample_pcm16(pcm, rate, 8000), 2), 2)
            prepared = _PhoneBand(8000, seed=1)
            decoder = _decoder(phrases)
            decoder.start_utt()
            decoder.process_raw(prepared.wideband(phone), False, False)
            decoder.end_utt()
            _warm_cmn = decoder.get_cmn(False)
        return _warm_cmn


class _PhoneBand:
    """Turns caller audio at the stream's rate into what the 16 kHz model expects."""

    def __init__(self, sample_rate: int, seed: int = 0) -> None:
        self.sample_rate = sample_rate
        self.speech_rms = _INITIAL_SPEECH_RMS
        # Fixed seed: the same audio always gives the same transcript.
        self._rng = np.random.default_rng(seed)

    def note_voiced_rms(self, rms: float) -> None:
        self.speech_rms = 0.9 * self.speech_rms + 0.1 * rms

    def wideband(self, pcm16: bytes) -> bytes:
        if self.sample_rate == 8000:
            wide = _telephone_to_wideband(pcm16)
        else:
            wide = resample_pcm16(pcm16, self.sample_rate, MODEL_SAMPLE_RATE)
        samples = np.frombuffer(wide, dtype=np.int16).astype(np.float64)
        noise = self._rng.normal(0.0, self.speech_rms * 10 ** (-NOISE_FLOOR_SNR_DB / 20), len(samples))
        return np.clip(samples + noise, -32768, 32767).astype(np.int16).tobytes()


class StreamingRecognizer:
    """One caller stream: `begin`, `feed` while speech lasts, `partial` any time, `finish` at its end."""

    def __init__(self, phrases: list[str], sample_rate: int) -> None:
        self._decoder = _decoder(phrases)
        self._cmn = warm_cmn(phrases)
        self._band = _PhoneBand(sample_rate)
        self._block_bytes = int(sample_rate * BLOCK_SECONDS) * 2
        self.sample_rate = sample_rate
        self.frame_bytes = sample_rate // 50 * 2  # 20 ms
        self.heard_speech = False  # set by whoever feeds it (recognition_pool), per utterance
        self._pending = bytearray()
        self._active = False

    def start_stream(self) -> None:
        """Forget the previous stream's speech level and noise: a reused decoder hears a new caller."""
        self._band = _PhoneBand(self._band.sample_rate)

    @property
    def active(self) -> bool:
        return self._active

    def note_voiced_rms(self, rms: float) -> None:
        self._band.note_voiced_rms(rms)

    def begin(self) -> None:
        self._decoder.set_cmn(self._cmn)
        self._decoder.start_utt()
        self._pending.clear()
        self._active = True

    def feed(self, pcm16: bytes) -> bool:
        """Queue audio; decodes every full block. True when a block was decoded (a partial may have changed)."""
        self._pending += pcm16
        decoded = False
        while len(self._pending) >= self._block_bytes:
            block = bytes(self._pending[: self._block_bytes])
            del self._pending[: self._block_bytes]
            self._decoder.process_raw(self._band.wideband(block), False, False)
            decoded = True
        return decoded

    def flush(self) -> None:
        """Decode what is queued now (at a pause), so the end of speech is decoded before it is known to be one."""
        if self._pending:
            self._decoder.process_raw(self._band.wideband(bytes(self._pending)), False, False)
            self._pending.clear()

    def partial(self) -> str:
        hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""

    def finish(self, *, trailing_silence: bool = False) -> tuple[str, list[Word]]:
        """End the utterance. `trailing_silence`: what is still queued is known silence, dropped unheard."""
        if trailing_silence:
            self._pending.clear()
        self.flush()
        self._decoder.end_utt()
        self._active = False
        hyp = self._decoder.hyp()
        # No segmentation at all when nothing was decoded (a segment that was only a click).
        words = [
            Word(_plain(seg.word), seg.start_frame / _FRAMES_PER_SECOND, (seg.end_frame + 1) / _FRAMES_PER_SECOND)
            for seg in self._decoder.seg() or []
            if _plain(seg.word)
        ]
        return (hyp.hypstr.strip() if hyp is not None else ""), words


def _plain(token: str) -> str:
    """A dictionary word without its variant suffix; "" for silences, fillers and sentence marks."""
    if token.startswith(("<", "[", "+")):
        return ""
    return token.split("(", 1)[0]
