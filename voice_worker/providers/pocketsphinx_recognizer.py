"""Offline utterance recogniser: pocketsphinx en-us acoustic model + a call-specific LM."""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from voice_worker.providers.espeak_synth import resample_pcm16
from voice_worker.providers.speech_vocabulary import build_language_model

# The bundled en-us acoustic model was trained on 16 kHz audio (filterbank up to
# 6.8 kHz) and its feat.params pin that filterbank, so 8 kHz input is upsampled;
# decoding at 8 kHz with a narrower filterbank measured far worse (~2% vs ~80%).
MODEL_SAMPLE_RATE = 16000
# Minimum background-noise level relative to the speech level (dB). The model was
# trained on recordings that always carry some noise; digitally silent gaps and the
# empty 4-8 kHz band of upsampled phone audio produce features it never saw. Topping
# the noise floor up to this SNR took word accuracy on 8 kHz mu-law espeak speech
# from ~25% to ~80%; audio that is already noisier than this is left as it is.
NOISE_FLOOR_SNR_DB = 18.0
_FRAME = 320  # 20 ms at 16 kHz
# Telephone audio loses everything above 4 kHz, where the model looks for /s/, /z/,
# /t/ ("list", "tuesday" came out as "this", "who fine"). In frames whose energy
# leans to 2.5-4 kHz (fricative-like) the 0-4 kHz spectrum is mirrored into 4-8 kHz
# at this gain. Measured +1 to +7 points word accuracy across five espeak voices;
# voiced frames are left alone: mirroring them too measured worse than nothing.
_FOLD_GAIN = 3.0
_FRICATIVE_RATIO = 1.0  # energy >= 2.5 kHz / energy < 1 kHz that marks a frame

_CACHE_ROOT = Path(tempfile.gettempdir()) / "voice_worker_lm"
_build_lock = threading.Lock()


def language_model_for(phrases: list[str]) -> tuple[Path, Path]:
    """Build (or reuse) the LM + dictionary for ``phrases``, keyed by their content."""
    digest = hashlib.sha256("\n".join(phrases).encode("utf-8")).hexdigest()[:16]
    out_dir = _CACHE_ROOT / digest
    lm_path, dict_path = out_dir / "caller.lm", out_dir / "caller.dict"
    with _build_lock:
        if lm_path.exists() and dict_path.exists():
            return lm_path, dict_path
        # Build beside the final directory and rename, so a concurrent process
        # never loads a half-written model.
        _CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=_CACHE_ROOT))
        build_language_model(phrases, staging)
        try:
            os.rename(staging, out_dir)
        except OSError:  # another process won the race; use its copy
            for p in staging.iterdir():
                p.unlink()
            staging.rmdir()
    return lm_path, dict_path


class PocketsphinxRecognizer:
    """Whole-utterance transcription; one decoder per instance, used under a lock."""

    def __init__(self, phrases: list[str], noise_floor_snr_db: float | None = NOISE_FLOOR_SNR_DB) -> None:
        import pocketsphinx

        lm_path, dict_path = language_model_for(phrases)
        self._decoder = pocketsphinx.Decoder(
            hmm=pocketsphinx.get_model_path("en-us/en-us"),
            lm=str(lm_path),
            dict=str(dict_path),
            samprate=MODEL_SAMPLE_RATE,
            # Measured on 8 kHz mu-law speech: scoring 8 Gaussians per senone instead
            # of 4 gained 2-4 points word accuracy. (Dropping the fwdflat second pass
            # would save ~35% decode time but loses word-final /s/: "works" -> "work".)
            topn=8,
            loglevel="FATAL",
        )
        self._lock = threading.Lock()
        self._noise_floor_snr_db = noise_floor_snr_db

    def transcribe(self, pcm16: bytes, sample_rate: int) -> str:
        """Recognise one utterance of mono int16 PCM; returns lowercase words or ""."""
        pcm16 = pcm16[: len(pcm16) - len(pcm16) % 2]
        if not pcm16:
            return ""
        audio = _telephone_to_wideband(pcm16) if sample_rate == 8000 else resample_pcm16(pcm16, sample_rate, MODEL_SAMPLE_RATE)
        if self._noise_floor_snr_db is not None:
            audio = _raise_noise_floor(audio, self._noise_floor_snr_db)
        with self._lock:
            self._decoder.start_utt()
            # full_utt=True: we always hand over a complete segment, which lets
            # batch CMN normalise over the whole utterance.
            self._decoder.process_raw(audio, no_search=False, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


def _raise_noise_floor(pcm16: bytes, snr_db: float) -> bytes:
    """Add white noise so the background sits no higher than ``snr_db`` below speech."""
    samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float64)
    usable = len(samples) // _FRAME * _FRAME
    if usable == 0:
        return pcm16
    frame_rms = np.sqrt((samples[:usable].reshape(-1, _FRAME) ** 2).mean(axis=1))
    loud = frame_rms[frame_rms > frame_rms.max() * 0.05]
    speech_rms = float(np.sqrt((loud**2).mean())) if loud.size else 0.0
    if speech_rms < 1.0:  # nothing but silence: no speech level to anchor to
        return pcm16
    target = speech_rms * 10 ** (-snr_db / 20)
    existing = float(np.percentile(frame_rms, 10))
    extra = math.sqrt(max(0.0, target**2 - existing**2))
    if extra < 1.0:
        return pcm16
    # Fixed seed: the same audio always gives the same transcript (testable, debuggable).
    noise = np.random.default_rng(0).normal(0.0, extra, len(samples))
    return np.clip(samples + noise, -32768, 32767).astype(np.int16).tobytes()


def _telephone_to_wideband(pcm8k: bytes) -> bytes:
    """Upsample 8 kHz PCM to 16 kHz, mirroring the band into 4-8 kHz on fricative frames."""
    narrow = np.frombuffer(pcm8k, dtype=np.int16).astype(np.float64)
    wide = np.frombuffer(resample_pcm16(pcm8k, 8000, MODEL_SAMPLE_RATE), dtype=np.int16)
    n = min(len(wide), 2 * len(narrow))
    # Zero-stuffing to twice the rate creates a mirror image of 0-4 kHz in 4-8 kHz;
    # keep only that image.
    stuffed = np.zeros(2 * len(narrow))
    stuffed[::2] = narrow * 2
    spectrum = np.fft.rfft(stuffed)
    spectrum[np.fft.rfftfreq(len(stuffed), 1 / MODEL_SAMPLE_RATE) < 4000] = 0
    image = np.fft.irfft(spectrum, len(stuffed))

    frame = _FRAME // 2  # 20 ms at 8 kHz
    count = len(narrow) // frame
    if count == 0:
        return wide.tobytes()
    window = np.hanning(frame)
    power = np.abs(np.fft.rfft(narrow[: count * frame].reshape(count, frame) * window, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1 / 8000)
    high, low = power[:, freqs >= 2500].sum(axis=1), power[:, freqs < 1000].sum(axis=1) + 1e-9
    gate = np.convolve((high / low > _FRICATIVE_RATIO).astype(np.float64), np.ones(3) / 3, "same")
    weights = np.zeros(n)
    spread = np.repeat(gate, 2 * frame)[:n]
    weights[: len(spread)] = spread
    out = wide[:n] + _FOLD_GAIN * weights * image[:n]
    return np.clip(out, -32768, 32767).astype(np.int16).tobytes()
