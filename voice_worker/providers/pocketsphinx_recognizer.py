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
# the noise floor up to this SNR measured +50 points word accuracy on 8 kHz mu-law
# input; audio that is already noisier than this is left as it is.
NOISE_FLOOR_SNR_DB = 18.0
_FRAME = 320  # 20 ms at 16 kHz

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
            loglevel="FATAL",
        )
        self._lock = threading.Lock()
        self._noise_floor_snr_db = noise_floor_snr_db

    def transcribe(self, pcm16: bytes, sample_rate: int) -> str:
        """Recognise one utterance of mono int16 PCM; returns lowercase words or ""."""
        if len(pcm16) < 2:
            return ""
        audio = resample_pcm16(pcm16, sample_rate, MODEL_SAMPLE_RATE)
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
