"""Small signal helpers shared by the synthesisers: levels, fades, noise, filters."""

from __future__ import annotations

import numpy as np
from scipy import signal

from musicdet.audio import SAMPLE_RATE


def samples(seconds: float) -> int:
    """Number of samples in ``seconds`` at 16 kHz."""
    return max(0, round(seconds * SAMPLE_RATE))


def db_to_gain(db: float) -> float:
    """Amplitude factor of ``db`` decibels."""
    return float(10.0 ** (db / 20.0))


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (0 for empty input)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``dbfs`` dB full scale (silence stays silent)."""
    level = rms(x)
    return x * (db_to_gain(dbfs) / level) if level > 1e-9 else x


def ramp(n: int) -> np.ndarray:
    """Raised-cosine rise from 0 to 1 over ``n`` samples."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / max(n, 1))


def fade(x: np.ndarray, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """``x`` with raised-cosine fades in and out (seconds), clipped to its length."""
    out = x.copy()
    n_in = min(samples(fade_in_s), len(out))
    n_out = min(samples(fade_out_s), len(out))
    out[:n_in] *= ramp(n_in)
    out[len(out) - n_out:] *= ramp(n_out)[::-1]
    return out


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded to exactly ``n`` samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples of unit-RMS 1/f noise (spectral shaping of white noise)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / max(rms(noise), 1e-12)


def band(x: np.ndarray, low_hz: float | None, high_hz: float | None, order: int = 4) -> np.ndarray:
    """``x`` through a Butterworth low-, high- or band-pass (``None`` leaves that edge open)."""
    nyquist = SAMPLE_RATE / 2
    if low_hz and high_hz:
        sos = signal.butter(order, [low_hz / nyquist, min(high_hz / nyquist, 0.99)], "bandpass",
                            output="sos")
    elif low_hz:
        sos = signal.butter(order, low_hz / nyquist, "highpass", output="sos")
    elif high_hz:
        sos = signal.butter(order, min(high_hz / nyquist, 0.99), "lowpass", output="sos")
    else:
        return x
    return signal.sosfilt(sos, x)


def add_at(buffer: np.ndarray, x: np.ndarray, start: int) -> None:
    """Mix ``x`` into ``buffer`` from sample ``start`` on, dropping what falls outside."""
    start = max(start, 0)
    end = min(start + len(x), len(buffer))
    if end > start:
        buffer[start:end] += x[: end - start]


def compress(audio: np.ndarray, threshold_db: float, ratio: float) -> np.ndarray:
    """Feed-forward RMS compressor (20 ms envelope) with make-up gain to the input level."""
    smoothing = np.exp(-1.0 / (0.02 * SAMPLE_RATE))
    power = signal.lfilter([1 - smoothing], [1, -smoothing], np.square(audio))
    level_db = 10 * np.log10(np.maximum(power, 1e-12))
    gain_db = np.minimum(0.0, (threshold_db - level_db) * (1 - 1 / ratio))
    return set_level(audio * 10 ** (gain_db / 20), 20 * np.log10(max(rms(audio), 1e-9)))
