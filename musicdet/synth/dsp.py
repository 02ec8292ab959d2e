"""Small signal helpers shared by the synthesisers: levels and loudness, fades, noise, filters,
and the broadcast chain's processors (EQ, compressors, limiter, lossy codecs)."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence

import numpy as np
import pyloudnorm
import soundfile as sf
from pyloudnorm.iirfilter import IIRfilter
from scipy import signal
from scipy.ndimage import minimum_filter1d

from musicdet.audio import SAMPLE_RATE

# Fade-in curves on t in [0, 1] (a fade-out is the same curve reversed in time). Linear and
# s-curve fades out and in sum to 1 (equal gain), equal-power ones have squares summing to 1.
FADE_CURVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda t: t,
    "convex": lambda t: 1.0 - (1.0 - t) ** 2,
    "concave": lambda t: t**2,
    "s-curve": lambda t: 0.5 - 0.5 * np.cos(np.pi * t),
    "equal-power": lambda t: np.sin(0.5 * np.pi * t),
}
# Lossy codecs: (libsndfile format, subtype) by name.
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS")}
# libvorbis's bit rate (kbit/s, mono 16 kHz, measured) at libsndfile compression levels 1 .. 0.
VORBIS_KBPS = ((29.0, 1.0), (32.5, 0.8), (39.0, 0.6), (46.5, 0.4), (58.0, 0.2), (68.0, 0.0))


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


def loudness(x: np.ndarray) -> float:
    """Integrated loudness of ``x`` in LUFS (ITU-R BS.1770-4, gated); the RMS level in dBFS
    when ``x`` is shorter than one 400 ms gating block or the gates leave nothing; -inf for
    silence."""
    if len(x) >= samples(0.4):
        lufs = _meter().integrated_loudness(np.asarray(x, dtype=np.float64))
        if np.isfinite(lufs):
            return float(lufs)
    level = rms(x)
    return 20.0 * float(np.log10(level)) if level > 1e-9 else -np.inf


@functools.cache
def _meter() -> pyloudnorm.Meter:
    return pyloudnorm.Meter(SAMPLE_RATE)


def set_loudness(x: np.ndarray, lufs: float) -> np.ndarray:
    """``x`` scaled to a `loudness` of ``lufs`` (silence stays silent)."""
    level = loudness(x)
    return x * db_to_gain(lufs - level) if np.isfinite(level) else x


def keep_peak(x: np.ndarray, ceiling: float = 0.98) -> np.ndarray:
    """``x`` scaled down if its peak passes ``ceiling`` (full scale = 1)."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return x * (ceiling / peak) if peak > ceiling else x


def ramp(n: int, curve: str = "s-curve") -> np.ndarray:
    """Rise from 0 to 1 over ``n`` samples along one of `FADE_CURVES`."""
    return FADE_CURVES[curve]((np.arange(n) + 0.5) / max(n, 1))


def fade(x: np.ndarray, fade_in_s: float, fade_out_s: float,
         curves: tuple[str, str] = ("s-curve", "s-curve")) -> np.ndarray:
    """``x`` with fades in and out (seconds, clipped to its length) along ``curves`` (in, out;
    `FADE_CURVES`)."""
    out = x.copy()
    n_in = min(samples(fade_in_s), len(out))
    n_out = min(samples(fade_out_s), len(out))
    out[:n_in] *= ramp(n_in, curves[0])
    out[len(out) - n_out:] *= ramp(n_out, curves[1])[::-1]
    return out


def duck_envelope(n: int, start: int, stop: int, depth_db: float, attack_s: float,
                  release_s: float) -> np.ndarray:
    """Gain over ``n`` samples: 1, falling by ``depth_db`` (linearly in dB) over ``attack_s``
    to reach it at sample ``start``, held until ``stop``, then back up over ``release_s``."""
    t = np.arange(n, dtype=np.float64)
    n_attack, n_release = max(samples(attack_s), 1), max(samples(release_s), 1)
    down = np.clip((t - start + n_attack) / n_attack, 0.0, 1.0)
    up = np.clip((t - stop) / n_release, 0.0, 1.0)
    return 10.0 ** (-depth_db * (down - up) / 20.0)


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


def equalise(x: np.ndarray, bands: Sequence[tuple[str, float, float, float]]) -> np.ndarray:
    """``x`` through biquads (kind "low_shelf" | "high_shelf" | "peaking", Hz, gain dB, Q;
    the Audio EQ Cookbook's, as pyloudnorm builds them)."""
    if not bands:
        return x
    filters = [IIRfilter(gain_db, q, hz, SAMPLE_RATE, kind) for kind, hz, gain_db, q in bands]
    return signal.sosfilt(np.array([np.concatenate([f.b, f.a]) for f in filters]), x)


def multiband_compress(x: np.ndarray, crossovers_hz: Sequence[float],
                       thresholds_db: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """``x`` split at ``crossovers_hz`` (ascending; none: one band) into bands that sum back
    to ``x``, each band `compress`-ed with its threshold (dB relative to the band's RMS) and
    ratio."""
    bands, rest = [], x
    for hz in crossovers_hz:
        bands.append(band(rest, None, hz, order=2))
        rest = rest - bands[-1]
    bands.append(rest)
    return sum(compress(part, 20.0 * np.log10(max(rms(part), 1e-9)) + threshold, ratio)
               for part, threshold, ratio in zip(bands, thresholds_db, ratios, strict=True))


def limit(x: np.ndarray, ceiling_db: float, lookahead_s: float = 0.005,
          hold_s: float = 0.05) -> np.ndarray:
    """Brickwall peak limiter without delay: no sample of the output passes ``ceiling_db``
    dBFS; the gain falls over ``lookahead_s`` before a peak and is held ``hold_s`` after it."""
    ceiling = db_to_gain(ceiling_db)
    needed = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-12))
    n_ramp, n_hold = max(samples(lookahead_s), 1), samples(hold_s)
    size = n_ramp + n_hold  # each window: n_hold samples back, n_ramp - 1 ahead
    held = minimum_filter1d(needed, size, mode="constant", cval=1.0, origin=n_hold - size // 2)
    total = np.cumsum(np.concatenate([np.ones(n_ramp), held]))
    gain = (total[n_ramp:] - total[:-n_ramp]) / n_ramp  # mean of the last n_ramp: <= needed
    return np.clip(x * gain, -ceiling, ceiling)


def codec_round_trip(x: np.ndarray, codec: str, kbps: float) -> np.ndarray:
    """``x`` (within full scale) encoded with ``codec`` (`CODECS`) at about ``kbps`` kbit/s
    and decoded, realigned by the codec's measured delay to the same samples and length."""
    delay = _codec_delay(codec, kbps)
    return fit_length(_encode_decode(x, codec, kbps)[delay:], len(x))


def encode(x: np.ndarray, codec: str, kbps: float) -> bytes:
    """``x`` (within full scale) as a ``codec`` (`CODECS`) file of about ``kbps`` kbit/s."""
    file_format, subtype = CODECS[codec]
    if codec == "mp3":  # constant bit rate: 160 kbit/s at level 0 down to 8 at level 1
        level, mode = float(np.clip((160.0 - kbps) / 152.0, 0.0, 1.0)), "CONSTANT"
    else:
        rates, levels = zip(*VORBIS_KBPS, strict=True)
        level, mode = float(np.interp(kbps, rates, levels)), None
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(x, dtype=np.float32), SAMPLE_RATE, format=file_format,
             subtype=subtype, compression_level=level, bitrate_mode=mode)
    return buffer.getvalue()


def _encode_decode(x: np.ndarray, codec: str, kbps: float) -> np.ndarray:
    return sf.read(io.BytesIO(encode(x, codec, kbps)), dtype="float64")[0]


@functools.cache
def _codec_delay(codec: str, kbps: float) -> int:
    """Samples by which ``codec`` at ``kbps`` delays its input: the lag (within 0.25 s) of
    the cross-correlation peak of a 2 s noise probe and its round trip."""
    probe = band(np.random.default_rng(0).standard_normal(samples(2.0)), 100, 3000) * 0.1
    decoded = fit_length(_encode_decode(probe, codec, kbps), len(probe) + samples(0.25))
    lags = signal.correlate(decoded, probe, mode="valid", method="fft")
    return int(np.argmax(lags))


def compress(audio: np.ndarray, threshold_db: float, ratio: float) -> np.ndarray:
    """Feed-forward RMS compressor (20 ms envelope) with make-up gain to the input level."""
    smoothing = np.exp(-1.0 / (0.02 * SAMPLE_RATE))
    power = signal.lfilter([1 - smoothing], [1, -smoothing], np.square(audio))
    level_db = 10 * np.log10(np.maximum(power, 1e-12))
    gain_db = np.minimum(0.0, (threshold_db - level_db) * (1 - 1 / ratio))
    return set_level(audio * 10 ** (gain_db / 20), 20 * np.log10(max(rms(audio), 1e-9)))
