"""The paper's front end: 128 log-Mel energies (64 Hz–8 kHz) + 12 openSMILE chroma = 140 dims.

Both blocks share one frame grid: a 25 ms Hamming window (400 samples at 16 kHz) every
10 ms (160 samples) by default, frames centred, so frame t is centred at t·hop_length /
sample_rate seconds (`FeatureConfig.hop_seconds`, the one definition every frame label,
time column and segment uses) and a signal of N samples gives ``1 + N // hop_length``
frames. The signal is zero-padded by half a window on both sides for both blocks.

* Log-Mel: the 400-sample windowed frame is zero-padded to ``n_fft`` = 1024 points, the
  smallest power of two at which every one of the 128 Slaney Mel filters (librosa's
  default) covers at least two FFT bins (bins 15.6 Hz apart; the lowest filters' centres
  are 22.9 Hz apart; at 512 points 25 filters fall on a single bin). Power spectrum ×
  ``librosa.filters.mel`` matrix, then ``log(max(energy, log_floor))`` (natural log), so
  digital silence gives the finite value ``log(log_floor)``. Equal to
  ``librosa.feature.melspectrogram`` with the same settings within 0.1 % of each band's
  energy (≈1e-6 on noise), plus float32 round-off up to 1e-8 of the frame's strongest band.
  With ``mel_scaling: pcen`` the Mel block is per-channel energy normalisation instead
  (`MelScaler`): ``librosa.pcen`` with librosa's defaults (gain 0.98, bias 2, power 0.5,
  time constant 0.4 s, eps 1e-6), set for Mel amplitudes of 32-bit audio, so its input is
  ``sqrt(energy) · 2**31``; energies below ``log_floor`` count as silence (0). Its
  smoother starts in the steady state of the first frame and runs through the file, so
  PCEN frames depend on all earlier audio: streaming carries the filter state on.
* Chroma: openSMILE with the config shipped beside this module (``chroma.conf``), computed
  in numpy by `chroma_features` (equal to `opensmile_chroma`, openSMILE itself, within 1e-5):
  chroma[0] is C, chroma[9] is A; each frame sums to 1, or is all zero without energy.
  At 25 ms the FFT bins are 31.25 Hz apart, so semitones are resolved from about 440 Hz
  up; lower notes count mostly through their harmonics (the paper's setting, kept).
  openSMILE reads 16-bit samples, so the signal is clipped to [-1, 1) for this block.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import librosa
import numpy as np
import scipy.fft
import scipy.signal
from scipy.ndimage import maximum_filter1d
from tqdm import tqdm

from musicdet import configtools
from musicdet.audio import SAMPLE_RATE, AudioError, load_audio
from musicdet.configtools import require
from musicdet.fsutil import save_npy

FEATURE_VERSION = 1
"""Bump whenever extraction code changes its output: cached features are keyed by it."""

CHROMA_BINS = 12
MAX_N_FFT = 1 << 16  # 4.1 s at 16 kHz; with MAX_N_MELS it bounds the Mel matrix to 134 MB
MAX_N_MELS = 1024
CHROMA_CONFIG = Path(__file__).with_name("chroma.conf")
_CHROMA_LEVEL = "chroma"  # the sink level in CHROMA_CONFIG
_INT16_MAX = 32767 / 32768  # openSMILE receives int16(signal * 32768)
_TONE_OCTAVES = 6  # chroma.conf: cTonespec nOctaves
_TONE_FIRST_NOTE = 65.40639  # chroma.conf: cTonespec firstNote (C2, Hz)
_MEL_CHUNK_FRAMES = 256  # frames per FFT batch: the spectrum (1 MB) stays in cache
_MEL_GROUP_BANDS = 8  # Mel bands multiplied together over the FFT bins they share
MelScaling = Literal["log", "pcen"]
PCEN_INPUT_SCALE = 2.0**31  # Mel amplitudes of [-1, 1) audio → the 32-bit scale of librosa's
PCEN_TIME_CONSTANT = 0.4  # seconds (librosa's default, as gain, bias, power and eps)


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings: lengths in samples, frequencies in Hz."""

    sample_rate: int = SAMPLE_RATE
    win_length: int = 400  # 25 ms Hamming window
    hop_length: int = 160  # 10 ms between frame centres
    n_fft: int = 1024  # FFT size of the log-Mel block (window zero-padded)
    n_mels: int = 128
    fmin: float = 64.0
    fmax: float = 8000.0
    log_floor: float = 1e-10  # Mel energies below it are raised to it before the log
    mel_scaling: MelScaling = "log"  # log: the paper's log-Mel; pcen: see the module doc

    def __post_init__(self) -> None:
        require(
            self.sample_rate == SAMPLE_RATE, "sample_rate", "sample_rate == 16000", self.sample_rate
        )
        require(
            self.win_length > 0 and self.win_length % 2 == 0,
            "win_length",
            "win_length > 0 and even",
            self.win_length,
        )
        require(
            0 < self.hop_length <= self.win_length,
            "hop_length",
            "0 < hop_length <= win_length",
            self.hop_length,
        )
        require(
            self.win_length <= self.n_fft <= MAX_N_FFT,
            "n_fft",
            f"win_length <= n_fft <= {MAX_N_FFT}",
            self.n_fft,
        )
        require(
            0 < self.n_mels <= MAX_N_MELS, "n_mels", f"0 < n_mels <= {MAX_N_MELS}", self.n_mels
        )
        require(
            0 <= self.fmin < self.fmax <= self.sample_rate / 2,
            "fmax",
            "0 <= fmin < fmax <= sample_rate / 2",
            (self.fmin, self.fmax),
        )
        require(self.log_floor > 0, "log_floor", "log_floor > 0", self.log_floor)
        empty = int((mel_matrix(self) > 0).sum(axis=1).min()) == 0
        require(not empty, "n_fft", "every Mel filter covers an FFT bin (raise n_fft)", self.n_fft)

    @property
    def hop_seconds(self) -> float:
        """Seconds between frame centres: frame t is centred at t · hop_seconds."""
        return self.hop_length / self.sample_rate

    @property
    def dims(self) -> int:
        """Feature dimensions per frame: Mel bands + chroma."""
        return self.n_mels + CHROMA_BINS

    def to_dict(self) -> dict[str, Any]:
        return configtools.to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FeatureConfig:
        return configtools.from_dict(cls, data)


def num_frames(num_samples: int, config: FeatureConfig) -> int:
    """Frames of a signal of ``num_samples`` samples: centred frames, one per hop."""
    return 1 + num_samples // config.hop_length


def extract_features(audio: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """Raw (T, 140) float32 features of a 16 kHz mono signal: scaled Mel block then chroma."""
    config = config or FeatureConfig()
    return MelScaler(config)(frame_features(audio, config))


def frame_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T, dims) float32 Mel energies (before `MelScaler`) then chroma: each frame depends only
    on the audio under its window, so blocks of audio with context give the same frames."""
    audio = _checked_signal(audio)
    energies = mel_energies(audio, config)
    chroma = chroma_features(audio, config)
    expected = num_frames(len(audio), config)
    if not len(energies) == len(chroma) == expected:
        raise RuntimeError(
            f"frame grids differ: {len(energies)} Mel, {len(chroma)} chroma frames, "
            f"{expected} expected for {len(audio)} samples"
        )
    return np.concatenate([energies, chroma], axis=1)


class MelScaler:
    """Scales the Mel block of consecutive `frame_features` blocks of one signal.

    log: ``log(max(energy, log_floor))``, frame by frame. pcen: ``librosa.pcen`` (module doc)
    with its low-pass filter state carried from block to block, so the blocks' results equal
    the whole signal's up to float rounding.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._state: np.ndarray | None = None  # PCEN filter state after the last frame

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, dims) with Mel energies → (T, dims) float32 with the Mel block scaled."""
        config = self.config
        out = np.array(frames, dtype=np.float32)
        mel = out[:, : config.n_mels]
        if config.mel_scaling == "log":
            _floored_log(mel, config.log_floor)
        elif len(mel):
            mel[:] = self._pcen(mel)
        return out

    def _pcen(self, energies: np.ndarray) -> np.ndarray:
        config = self.config
        energies = np.where(energies < config.log_floor, 0.0, energies.astype(np.float64))
        amplitude = np.sqrt(energies) * PCEN_INPUT_SCALE
        if self._state is None:  # steady state of the first frame
            b = _pcen_coefficient(config)
            self._state = scipy.signal.lfilter_zi([b], [1, b - 1]) * amplitude[:1]
        scaled, self._state = librosa.pcen(
            amplitude, sr=config.sample_rate, hop_length=config.hop_length,
            time_constant=PCEN_TIME_CONSTANT, axis=0, zi=self._state, return_zf=True,
        )
        return scaled


def _pcen_coefficient(config: FeatureConfig) -> float:
    """The smoother's coefficient b that ``librosa.pcen`` derives from its time constant."""
    frames = PCEN_TIME_CONSTANT * config.sample_rate / config.hop_length
    return float((np.sqrt(1 + 4 * frames**2) - 1) / (2 * frames**2))


def log_mel(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T, n_mels) float32 natural-log Mel energies on the centred frame grid."""
    return _floored_log(mel_energies(_checked_signal(audio), config), config.log_floor)


def _floored_log(energies: np.ndarray, floor: float) -> np.ndarray:
    """``log(max(energies, floor))`` in place; returns ``energies``."""
    return np.log(np.maximum(energies, floor, out=energies), out=energies)


def mel_energies(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T, n_mels) float32 Mel power energies on the centred frame grid."""
    half = config.win_length // 2
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, half), config.win_length)[
        :: config.hop_length
    ]
    window = _hamming(config.win_length)
    out = np.empty((len(frames), config.n_mels), dtype=np.float32)
    for start in range(0, len(frames), _MEL_CHUNK_FRAMES):
        chunk = frames[start : start + _MEL_CHUNK_FRAMES] * window
        spectrum = scipy.fft.rfft(chunk, n=config.n_fft, axis=1, workers=1)
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        rows = out[start : start + len(chunk)]
        for bands, bins, weights in _mel_groups(config):
            np.matmul(power[:, bins], weights, out=rows[:, bands])
    return out


def chroma_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T, 12) float32 chroma on the centred frame grid (pitch classes C … B).

    The computation `opensmile_chroma` runs through openSMILE (``chroma.conf``), in numpy:
    int16 samples, symmetric Hamming frames, power spectrum, one semitone filter weight per
    FFT bin (`_tone_filters`), square root, octaves folded, each frame normalised to sum 1.
    Equal to openSMILE's float32 output within 1e-5 (tests/test_features.py), ~10× faster.
    """
    padded = np.pad(_int16_signal(audio), config.win_length // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.win_length)[
        :: config.hop_length
    ]
    window = np.hamming(config.win_length).astype(np.float32)
    filters = _tone_filters(config.win_length, config.sample_rate)
    out = np.empty((len(frames), CHROMA_BINS), dtype=np.float32)
    for start in range(0, len(frames), _MEL_CHUNK_FRAMES):
        chunk = frames[start : start + _MEL_CHUNK_FRAMES] * window
        spectrum = scipy.fft.rfft(chunk, n=_next_power_of_two(config.win_length), axis=1,
                                  workers=1)[:, filters.bins]
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        power *= filters.weights
        tones = np.zeros((len(chunk), _TONE_OCTAVES * CHROMA_BINS), dtype=np.float32)
        tones[:, filters.notes] = np.sqrt(np.add.reduceat(power, filters.starts, axis=1))
        chroma = tones.reshape(len(chunk), -1, CHROMA_BINS).sum(axis=1, dtype=np.float64)
        total = chroma.sum(axis=1, keepdims=True)
        out[start : start + len(chunk)] = np.divide(chroma, total, out=np.zeros_like(chroma),
                                                    where=total != 0)
    return out


def opensmile_chroma(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T, 12) float32 chroma computed by openSMILE itself: the reference `chroma_features`
    reproduces."""
    padded = np.pad(np.clip(audio, -1.0, _INT16_MAX), config.win_length // 2)
    extractor = _chroma_extractor(config.win_length, config.hop_length, config.sample_rate)
    return extractor.process_signal(padded, config.sample_rate).to_numpy(dtype=np.float32)


def _int16_signal(audio: np.ndarray) -> np.ndarray:
    """The samples openSMILE sees, float32: ``int16(clip(x, -1, 1 - 2**-15) · 32768)``
    (truncated, as opensmile.Smile converts)."""
    clipped = np.clip(audio, -1.0, _INT16_MAX).astype(np.float32) * np.float32(32768)
    return clipped.astype(np.int16).astype(np.float32)


def _next_power_of_two(length: int) -> int:
    return 1 << (length - 1).bit_length()


class ToneFilters(NamedTuple):
    """openSMILE's semitone filter bank: each FFT bin of ``bins`` (ascending) feeds one note,
    weighted; the bins of ``notes[i]`` start at ``bins[starts[i]]``."""

    bins: np.ndarray  # FFT bins used
    weights: np.ndarray  # float32 weight of each
    notes: np.ndarray  # notes (0 … 71) that get bins, ascending
    starts: np.ndarray  # where each note's bins start in ``bins``


@functools.cache
def _tone_filters(win_length: int, sample_rate: int) -> ToneFilters:
    """openSMILE's cTonespec (chroma.conf: 6 octaves from C2, triangular filters, power,
    dB(A)) as `ToneFilters`: each bin feeds the note nearest to it, weighted by its
    triangular filter and dB(A) value over the note's bin count. A sum per note of the
    weighted bins (``np.add.reduceat``): no matrix product, whose BLAS threads spun on a
    busy machine.

    As openSMILE does it: filters for notes 1 … 70 only, and the dB(A) curve indexed from
    the first used bin (so bin ``first + k`` takes the weight of frequency ``k · F0``).
    Only the weights' ratios matter (chroma is normalised per frame).
    """
    n_fft = _next_power_of_two(win_length)
    n_bins, f0, notes = n_fft // 2 + 1, sample_rate / n_fft, _TONE_OCTAVES * CHROMA_BINS
    pitch = _TONE_FIRST_NOTE / 2 ** (1 / 12) * 2 ** (np.arange(notes + 2) / 12)
    first = max(1, math.ceil((pitch[0] + pitch[1]) / (2 * f0)))
    last = min(n_bins - 1, math.floor((pitch[notes] + pitch[notes + 1]) / (2 * f0)))
    key = _nearest_notes(pitch, n_bins, f0, notes)
    count = np.bincount(key[first : last + 1], minlength=notes + 2)
    edges = (pitch[:-1] + pitch[1:]) / 2 / f0  # FFT-bin positions of the notes' borders
    shape = np.zeros(n_bins)
    for note in range(1, notes - 1):
        low, high, middle = edges[note - 1], edges[note], pitch[note] / f0
        start, stop = max(1, min(math.ceil(low), n_bins - 1)), min(math.floor(high), n_bins - 1)
        if math.ceil(low) > math.floor(high):
            continue
        index = np.arange(start, stop + 1)
        rising = index < round(middle)
        value = np.where(rising, 1 - (middle - index) / (middle - low),
                         1 - (index - middle) / (high - middle))
        shape[index] = np.where(value > 1, 2 - value, value)
    shape[:first], shape[last + 1 :] = 0, 0
    shape[first : last + 1] *= _db_a(np.arange(last + 1 - first) * f0)
    used = np.arange(first, last + 1)
    used = used[(key[used] > 0) & (key[used] <= notes) & (count[key[used]] > 0)]
    note_of_bin = key[used] - 1  # ascending: the search above only moves up
    fed, starts = np.unique(note_of_bin, return_index=True)
    return ToneFilters(used, (shape[used] / count[key[used]]).astype(np.float32), fed, starts)


def _nearest_notes(pitch: np.ndarray, n_bins: int, f0: float, notes: int) -> np.ndarray:
    """openSMILE's bin → note map: for each FFT bin, the note nearest to it, searched upward
    from the previous bin's note."""
    key = np.empty(n_bins, dtype=np.int64)
    current = 0
    for index in range(n_bins):
        current = min(current, notes)
        near, candidate = abs(pitch[current] - index * f0), current + 1
        far = abs(pitch[candidate] - index * f0)
        while near > far and candidate <= notes:
            near, candidate = far, candidate + 1
            far = abs(pitch[candidate] - index * f0)
        current = candidate - 1
        key[index] = current
    return key


def _db_a(frequency: np.ndarray) -> np.ndarray:
    """openSMILE's dB(A) weighting (computeDBA) as a power factor at ``frequency`` Hz."""
    f2 = frequency**2
    ratio = 12200.0**2 * f2**2 / ((f2 + 20.6**2) * (f2 + 12200.0**2))
    ratio /= np.sqrt(f2 + 107.7**2) * np.sqrt(f2 + 737.9**2)
    with np.errstate(divide="ignore"):
        return 10 ** ((10 * np.log(ratio) + 2) / 10)


@functools.cache
def mel_matrix(config: FeatureConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Slaney Mel filter bank: ``librosa.filters.mel``'s
    default (Slaney scale and area norm), computed as librosa does, in numpy (librosa's own
    import costs ~110 MB of numba; tests/test_features.py checks they are equal)."""
    n_bins = config.n_fft // 2 + 1
    fft_hz = np.fft.rfftfreq(n=config.n_fft, d=1.0 / config.sample_rate)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax),
                                    config.n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    weights = np.zeros((config.n_mels, n_bins), dtype=np.float32)
    for band in range(config.n_mels):
        rising, falling = -ramps[band] / widths[band], ramps[band + 2] / widths[band + 1]
        weights[band] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[: config.n_mels]))[:, np.newaxis]
    return weights


_MEL_STEP_HZ = 200.0 / 3  # Slaney Mel scale: linear below 1 kHz, logarithmic above
_MEL_LOG_HZ = 1000.0
_MEL_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz < _MEL_LOG_HZ:
        return hz / _MEL_STEP_HZ
    return _MEL_LOG_HZ / _MEL_STEP_HZ + math.log(hz / _MEL_LOG_HZ) / _MEL_LOG_STEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    log_region = mels >= _MEL_LOG_HZ / _MEL_STEP_HZ
    return np.where(log_region, _MEL_LOG_HZ * np.exp(_MEL_LOG_STEP * (
        mels - _MEL_LOG_HZ / _MEL_STEP_HZ)), _MEL_STEP_HZ * mels)


@functools.cache
def _hamming(length: int) -> np.ndarray:
    """Periodic Hamming window, as ``librosa.filters.get_window("hamming", length)``."""
    return np.hamming(length + 1)[:-1].astype(np.float32)


@functools.cache
def _mel_groups(config: FeatureConfig) -> tuple[tuple[slice, slice, np.ndarray], ...]:
    """The Mel matrix as (band slice, FFT-bin slice, (bins, bands) weights) per 8 bands.

    Each group multiplies only the FFT bins its filters touch: ~7 % of the dense product.
    """
    matrix = mel_matrix(config)
    groups = []
    for start in range(0, config.n_mels, _MEL_GROUP_BANDS):
        bands = slice(start, min(start + _MEL_GROUP_BANDS, config.n_mels))
        used = np.flatnonzero(matrix[bands].any(axis=0))
        bins = slice(int(used[0]), int(used[-1]) + 1)
        groups.append((bands, bins, np.ascontiguousarray(matrix[bands, bins].T)))
    return tuple(groups)


@functools.cache
def _chroma_config_text() -> str:
    return CHROMA_CONFIG.read_text(encoding="utf-8")


@functools.cache
def _chroma_extractor(win_length: int, hop_length: int, sample_rate: int) -> Any:
    """An ``opensmile.Smile`` for chroma.conf (imported here: it costs ~100 MB of pandas)."""
    import opensmile

    options = {"frameSize": win_length / sample_rate, "frameStep": hop_length / sample_rate}
    return opensmile.Smile(
        feature_set=str(CHROMA_CONFIG), feature_level=_CHROMA_LEVEL, options=options
    )


def _checked_signal(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio: expected a 1-D float array of 16 kHz mono samples, got "
            f"{audio.dtype} array of shape {audio.shape}"
        )
    if not np.isfinite(audio).all():
        raise ValueError("audio: expected finite samples, got NaN or infinite values")
    return audio.astype(np.float32, copy=False)


def extract_file(path: str | Path, config: FeatureConfig | None = None) -> np.ndarray:
    """Raw (T, 140) float32 features of an audio file (`load_audio` + `extract_features`)."""
    return extract_features(load_audio(path), config)


def write_features(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    config: FeatureConfig | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> list[tuple[Path, str]]:
    """Write raw features of each file to ``out_dir/NAME.npy``; return the files skipped.

    A file that cannot be read raises its `AudioError`, unless ``skip_bad``: then it is
    listed with its error message in the result (for the caller to report) and the rest go on.
    """
    paths = [Path(path) for path in paths]
    _check_unique_stems(paths)
    failures: list[tuple[Path, str]] = []
    for path in tqdm(paths, desc="features", unit="file", disable=not progress):
        try:
            features = extract_file(path, config)
        except AudioError as error:
            if not skip_bad:
                raise
            failures.append((path, str(error)))
            continue
        save_npy(Path(out_dir) / f"{path.stem}.npy", features)
    return failures


def _check_unique_stems(paths: Sequence[Path]) -> None:
    first_with_stem: dict[str, Path] = {}
    for path in paths:
        other = first_with_stem.setdefault(path.stem, path)
        if other != path:
            raise ValueError(
                f"{path}: same output name {path.stem}.npy as {other}; "
                "expected input files with distinct names"
            )


@dataclass
class Normalizer:
    """Min-max scaling of each feature block to [0, 1], fitted on training features.

    One scalar minimum and maximum per block (all 128 Mel bands share one, the 12 chroma
    another), as the paper normalises "each of the two blocks": a shared scale keeps the
    relative level of the Mel bands (the spectral shape) that per-dimension scaling would
    erase, and no band with a tiny training range gets its noise blown up. `apply` clips
    values outside the training range to [0, 1].

    Frames whose window holds digital silence are left out of the fit (`signal_frames`): the
    log-Mel floor they sit at is no measurement, and one such frame would otherwise pin the
    Mel minimum at ``log(log_floor)`` (≈ -23, what only 16-bit quantisation noise reaches),
    squashing the range of the audio itself. At `apply` they clip to 0.
    """

    block_sizes: list[int]
    minimum: list[float]
    maximum: list[float]

    def __post_init__(self) -> None:
        blocks = len(self.block_sizes)
        require(
            blocks > 0 and all(size > 0 for size in self.block_sizes),
            "block_sizes",
            "a non-empty list of positive sizes",
            self.block_sizes,
        )
        require(
            len(self.minimum) == blocks == len(self.maximum),
            "minimum",
            "one minimum and one maximum per block",
            (self.minimum, self.maximum),
        )
        pairs = zip(self.minimum, self.maximum, strict=True)
        require(
            all(np.isfinite([low, high]).all() and low <= high for low, high in pairs),
            "maximum",
            "finite minimum <= maximum for each block",
            (self.minimum, self.maximum),
        )

    @classmethod
    def fit(cls, matrices: Iterable[np.ndarray], config: FeatureConfig | None = None) -> Normalizer:
        """Block-wise minimum and maximum over the `signal_frames` of (T, dims) matrices, read
        one at a time."""
        config = config or FeatureConfig()
        sizes = [config.n_mels, CHROMA_BINS]
        bounds = np.cumsum([0, *sizes])
        low = np.full(len(sizes), np.inf)
        high = np.full(len(sizes), -np.inf)
        for index, matrix in enumerate(matrices):
            matrix = _checked_matrix(matrix, config.dims, f"matrices[{index}]")
            kept = matrix[signal_frames(matrix, config)]
            if not len(kept):
                continue
            for block, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                low[block] = min(low[block], kept[:, start:stop].min())
                high[block] = max(high[block], kept[:, start:stop].max())
        if not np.isfinite(low).all():
            raise ValueError("matrices: expected at least one feature matrix with frames that "
                             "are not digital silence")
        return cls(sizes, low.tolist(), high.tolist())

    def apply(self, features: np.ndarray) -> np.ndarray:
        """``features`` (..., dims) scaled block-wise and clipped to [0, 1], float32."""
        offset, scale = self.offset_scale()
        if features.shape[-1] != len(offset):
            raise ValueError(
                f"features: expected {len(offset)} dims in the last axis, got shape "
                f"{features.shape}"
            )
        scaled = (features.astype(np.float32) - offset) * scale
        return np.clip(scaled, 0.0, 1.0, out=scaled)

    def offset_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension float32 offset and scale: `apply` is ``clip((x - offset) · scale)``."""
        low = np.asarray(self.minimum, dtype=np.float32)
        span = np.asarray(self.maximum, dtype=np.float32) - low
        scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
        return np.repeat(low, self.block_sizes), np.repeat(scale, self.block_sizes)

    def to_dict(self) -> dict[str, Any]:
        return configtools.to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Normalizer:
        return configtools.from_dict(cls, data)


class ScaledFeatures:
    """Raw (T, dims) features seen through a `Normalizer`, scaled as they are read: slicing
    gives the scaled frames of the slice only, so a memory-mapped matrix is never copied whole
    (training reads the windows it draws). Values equal ``normalizer.apply(raw)[key]``."""

    def __init__(self, raw: np.ndarray, normalizer: Normalizer) -> None:
        self.raw, self.normalizer = raw, normalizer

    @property
    def shape(self) -> tuple[int, ...]:
        return self.raw.shape

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.normalizer.apply(self.raw[key])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        scaled = self.normalizer.apply(np.asarray(self.raw))
        return scaled if dtype is None else scaled.astype(dtype, copy=False)


def signal_frames(matrix: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T,) bool: frames of raw features (T, dims) whose window holds no digital silence.

    A frame with every Mel band at the floor (`mel_floor`) is silent; the frames up to
    ``ceil(win_length / hop_length)`` either side of one may hold some of its zero samples.
    """
    silent = (matrix[:, : config.n_mels] <= mel_floor(config)).all(axis=1)
    reach = math.ceil(config.win_length / config.hop_length)
    return ~maximum_filter1d(silent, size=2 * reach + 1, mode="constant", cval=False)


def mel_floor(config: FeatureConfig) -> np.float32:
    """The scaled Mel value of a band without energy: ``log(log_floor)``, or 0 for PCEN."""
    if config.mel_scaling == "pcen":
        return np.float32(0.0)
    return np.log(np.float32(config.log_floor))


def _checked_matrix(matrix: np.ndarray, dims: int, name: str) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != dims:
        raise ValueError(f"{name}: expected shape (frames, {dims}), got {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name}: expected finite features, got NaN or infinite values")
    return matrix


class FeatureCache:
    """Raw features on disk under ``root``, computed once per (audio content, config).

    The key hashes the file's bytes, the `FeatureConfig`, `FEATURE_VERSION` and the chroma
    config file, so a renamed file still hits and an edited one misses. Files are written
    atomically: processes that compute the same key at once each rename a complete file
    into place.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, path: str | Path, config: FeatureConfig) -> str:
        """Hex digest identifying the features of ``path`` under ``config``."""
        stat = os.stat(path)
        content = _content_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        chroma = hashlib.sha256(_chroma_config_text().encode()).hexdigest()
        settings = json.dumps([FEATURE_VERSION, chroma, config.to_dict()], sort_keys=True)
        return hashlib.sha256(f"{content}:{settings}".encode()).hexdigest()

    def path(self, path: str | Path, config: FeatureConfig) -> Path:
        """Where the features of ``path`` under ``config`` are stored."""
        return self.root / f"{self.key(path, config)}.npy"

    def load(self, path: str | Path, config: FeatureConfig | None = None,
             mmap: bool = False) -> np.ndarray:
        """Raw (T, dims) float32 features of ``path``: from the cache, else computed and stored.

        ``mmap``: a read-only `np.memmap` of the cache file (its ``filename`` says which),
        which reads from disk only the frames that are sliced.
        """
        config = config or FeatureConfig()
        if not Path(path).is_file():
            raise AudioError(path, "no such file")
        stored = self.path(path, config)
        mode = "r" if mmap else None
        try:
            return np.load(stored, mmap_mode=mode)
        except (OSError, ValueError, EOFError):  # absent, or not an .npy written by us: recompute
            features = extract_file(path, config)
            save_npy(stored, features)
            return np.load(stored, mmap_mode=mode) if mmap else features


@functools.lru_cache(maxsize=65536)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime) within the process."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
