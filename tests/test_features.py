"""musicdet.features: frame grid, log-Mel vs librosa, chroma pitch, Normalizer, cache, writer."""

from __future__ import annotations

import json
import shutil

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile

from musicdet import features
from musicdet.audio import SAMPLE_RATE, AudioError, load_audio
from musicdet.configtools import ConfigError
from musicdet.features import (
    FeatureCache,
    FeatureConfig,
    Normalizer,
    chroma_features,
    extract_features,
    extract_file,
    log_mel,
    num_frames,
    opensmile_chroma,
    signal_frames,
    write_features,
)

CONFIG = FeatureConfig()
A, C, E, G = 9, 0, 4, 7  # chroma indices (chroma[0] is C)


def harmonic_tone(frequencies: list[float], seconds: float = 0.5) -> np.ndarray:
    """Tones with 4 decaying harmonics each, like an instrument, at 16 kHz."""
    time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = sum(
        0.2 * 0.6**k * np.sin(2 * np.pi * f * (k + 1) * time) for f in frequencies for k in range(4)
    )
    return signal.astype(np.float32)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)


def test_config_defaults_dims_and_round_trip():
    assert CONFIG.dims == 140
    assert (CONFIG.win_length, CONFIG.hop_length, CONFIG.n_mels) == (400, 160, 128)
    assert FeatureConfig.from_dict(json.loads(json.dumps(CONFIG.to_dict()))) == CONFIG


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"n_fft": 256, "win_length": 256}, "n_fft"),  # filters without any FFT bin
        ({"win_length": 401}, "win_length"),
        ({"hop_length": 500}, "hop_length"),
        ({"fmax": 9000.0}, "fmax"),
        ({"sample_rate": 22050}, "sample_rate"),
        ({"log_floor": 0.0}, "log_floor"),
    ],
)
def test_config_rejects_bad_values_naming_the_key(changes, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        FeatureConfig.from_dict({**CONFIG.to_dict(), **changes})


@pytest.mark.parametrize("samples", [0, 1, 159, 160, 161, 8000, 16001])
def test_shapes_follow_the_centred_grid(samples):
    matrix = extract_features(noise(samples / SAMPLE_RATE, seed=samples), CONFIG)
    assert matrix.shape == (num_frames(samples, CONFIG), 140) == (1 + samples // 160, 140)
    assert matrix.dtype == np.float32 and np.isfinite(matrix).all()


def test_log_mel_equals_librosa():
    """Same settings through librosa: each band within 0.1 % of its energy, plus float32
    round-off up to 1e-8 of the frame's strongest band (only seen ~90 dB below a tone)."""
    audio = np.concatenate([noise(1.0), harmonic_tone([440.0], 1.0)])
    power = librosa.feature.melspectrogram(
        y=audio,
        sr=SAMPLE_RATE,
        n_fft=1024,
        hop_length=160,
        win_length=400,
        window="hamming",
        center=True,
        pad_mode="constant",
        n_mels=128,
        fmin=64.0,
        fmax=8000.0,
    ).T
    energy = np.exp(log_mel(audio, CONFIG).astype(np.float64))
    tolerance = 1e-3 * power + 1e-8 * power.max(axis=1, keepdims=True)
    assert np.all(np.abs(energy - power) <= tolerance)
    np.testing.assert_allclose(energy[:100], power[:100], rtol=1e-4)  # noise: ~1e-6 apart


def test_digital_silence_is_finite():
    matrix = extract_features(np.zeros(SAMPLE_RATE, dtype=np.float32), CONFIG)
    assert np.all(matrix[:, :128] == np.float32(np.log(CONFIG.log_floor)))
    assert not matrix[:, 128:].any()


def active_frames(matrix: np.ndarray) -> tuple[list[int], list[int]]:
    """Frames where the log-Mel block rises above the floor, and where chroma is non-zero."""
    mel = np.flatnonzero((matrix[:, :128] > np.log(CONFIG.log_floor) + 1).any(axis=1))
    chroma = np.flatnonzero(matrix[:, 128:].any(axis=1))
    return mel.tolist(), chroma.tolist()


def test_click_lands_on_the_frame_centred_on_it():
    """Frame t covers samples [160t - 200, 160t + 200): a click at 0.5 s is in frames 49–51."""
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio[50 * 160] = 0.9
    matrix = extract_features(audio, CONFIG)
    assert active_frames(matrix) == ([49, 50, 51], [49, 50, 51])
    assert int(np.argmax(matrix[:, :128].sum(axis=1))) == 50


def test_tone_onset_and_offset_show_at_the_same_frame_in_both_blocks():
    """A tone over samples 16000–31999 first touches frame 99 and last touches frame 201."""
    audio = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    time = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    audio[SAMPLE_RATE : 2 * SAMPLE_RATE] = 0.5 * np.cos(2 * np.pi * 440.0 * time)
    expected = list(range(99, 202))
    assert active_frames(extract_features(audio, CONFIG)) == (expected, expected)


def test_chroma_peaks_on_the_pitch_class_played():
    """FFT bins 31.25 Hz apart resolve semitones from about 440 Hz up: test there."""
    time = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    for a4 in (harmonic_tone([440.0]), (0.5 * np.sin(2 * np.pi * 440.0 * time)).astype("f4")):
        assert np.all(np.argmax(chroma_features(a4, CONFIG)[10:-10], axis=1) == A)
    c_major = chroma_features(harmonic_tone([523.25, 659.26, 783.99]), CONFIG)[10:-10]
    top3 = np.sort(np.argsort(c_major.mean(axis=0))[-3:])
    assert top3.tolist() == [C, E, G]
    np.testing.assert_allclose(c_major.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("config", [CONFIG, FeatureConfig(win_length=800, hop_length=320)],
                         ids=["25ms", "50ms"])
def test_numpy_chroma_equals_opensmile(config):
    """Coloured noise 80 dB apart in level, tones, a chord, silence, a quiet and a clipping
    stretch: the numpy chroma is openSMILE's within float32 rounding."""
    rng = np.random.default_rng(1)
    second = SAMPLE_RATE
    pieces = [scipy.signal.lfilter([1], [1, rng.uniform(-0.99, 0.99)],
                                   rng.standard_normal(second)) * 10 ** rng.uniform(-4, 0.5)
              for _ in range(8)]
    time = np.arange(second) / SAMPLE_RATE
    pieces += [harmonic_tone([440.0], 1.0), harmonic_tone([523.25, 659.26, 783.99], 1.0),
               np.zeros(second), 1e-4 * np.sin(2 * np.pi * 300 * time),
               3 * np.sin(2 * np.pi * 97 * time)]
    audio = np.concatenate(pieces).astype(np.float32)[: 13 * second - 77]
    fast, reference = chroma_features(audio, config), opensmile_chroma(audio, config)
    assert fast.shape == reference.shape == (num_frames(len(audio), config), 12)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-5)
    assert np.array_equal(fast.any(axis=1), reference.any(axis=1))  # the same silent frames


def test_full_scale_input_does_not_wrap_in_chroma():
    """openSMILE reads int16: +1.0 must clip, not wrap to -32768."""
    tone = harmonic_tone([440.0])
    loud = tone / np.abs(tone).max()
    np.testing.assert_allclose(
        chroma_features(loud, CONFIG), chroma_features(0.5 * loud, CONFIG), atol=2e-3
    )


def test_extract_features_rejects_bad_signals():
    with pytest.raises(ValueError, match="1-D float"):
        extract_features(np.zeros((2, 100), dtype=np.float32), CONFIG)
    with pytest.raises(ValueError, match="finite"):
        extract_features(np.full(100, np.nan, dtype=np.float32), CONFIG)


def training_matrices(count: int = 3):
    for seed in range(count):
        yield extract_features(np.concatenate([noise(0.3, seed), harmonic_tone([330.0])]))


def test_normalizer_maps_each_block_to_unit_range():
    normalizer = Normalizer.fit(training_matrices(), CONFIG)  # a generator: streamed
    fitted = [normalizer.apply(matrix) for matrix in training_matrices()]
    stacked = np.concatenate(fitted)
    assert stacked.dtype == np.float32
    for block in (slice(0, 128), slice(128, 140)):
        assert stacked[:, block].min() == 0.0 and stacked[:, block].max() == pytest.approx(1.0)
    # one scale per block: the ordering of Mel bands within a frame is kept
    raw = next(training_matrices())
    np.testing.assert_array_equal(
        np.argsort(fitted[0][:, :128], axis=1, kind="stable")[5],
        np.argsort(raw[:, :128], axis=1, kind="stable")[5],
    )


def test_normalizer_clips_and_round_trips():
    normalizer = Normalizer.fit(training_matrices(2), CONFIG)
    unseen = extract_features(3.0 * noise(0.5, seed=9))
    unseen[0, :128] = np.log(CONFIG.log_floor) - 5.0
    scaled = normalizer.apply(unseen)
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0 and scaled[0, 0] == 0.0
    stored = json.loads(json.dumps(normalizer.to_dict()))
    assert all(isinstance(value, float) for value in stored["minimum"] + stored["maximum"])
    restored = Normalizer.from_dict(stored)
    np.testing.assert_array_equal(restored.apply(unseen), scaled)
    batched = normalizer.apply(np.stack([unseen, unseen]))  # (batch, frames, dims) works too
    np.testing.assert_array_equal(batched[1], scaled)


@pytest.mark.parametrize("gap", [(3.0123, 5.0371), (3.0, 5.0), (2.9901, 3.0403)])
def test_digital_silence_does_not_squash_the_fitted_range(gap):
    """Zeros over ``gap`` (s) of noise + tone: the frames whose windows hold none of them are
    the features of the same audio without the gap, and the Mel range fitted is theirs."""
    time = np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE
    audio = noise(8.0) + (0.2 * np.sin(2 * np.pi * 330 * time) * (time > 4)).astype("f4")
    gapped = audio.copy()
    gapped[round(gap[0] * SAMPLE_RATE) : round(gap[1] * SAMPLE_RATE)] = 0.0
    plain, silenced = extract_features(audio, CONFIG), extract_features(gapped, CONFIG)
    kept = signal_frames(silenced, CONFIG)
    np.testing.assert_array_equal(silenced[kept], plain[kept])
    assert len(kept) - kept.sum() < (gap[1] - gap[0]) * 100 + 8  # the gap ± 3 frames each side
    reference, fitted = Normalizer.fit([plain], CONFIG), Normalizer.fit([silenced], CONFIG)
    assert fitted.minimum[0] == reference.minimum[0] > -9.0  # not log(1e-10) ≈ -23.0
    assert fitted.maximum[0] == reference.maximum[0]
    np.testing.assert_array_equal(fitted.apply(silenced[kept])[:, :128],
                                  reference.apply(plain[kept])[:, :128])
    assert not fitted.apply(silenced[~kept][5:-5])[:, :128].any()  # silence clips to 0


def test_normalizer_leaves_out_silent_frames_and_their_neighbours():
    """Frame 10 is digital silence; frames 7–13 (3 either side at hop 160, window 400) may hold
    its zeros and are left out of the fit; frames 6 and 14 are in."""
    floor = np.log(np.float32(CONFIG.log_floor))
    matrix = np.zeros((20, 140), dtype=np.float32)
    matrix[10, :128] = floor
    matrix[[7, 13], :128] = -5.0
    matrix[[6, 14], :128] = -4.0
    matrix[12, 128:] = 0.9
    assert np.flatnonzero(~signal_frames(matrix, CONFIG)).tolist() == list(range(7, 14))
    fitted = Normalizer.fit([matrix], CONFIG)
    assert (fitted.minimum, fitted.maximum) == ([-4.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="frames that are not digital silence"):
        Normalizer.fit([matrix[8:13]], CONFIG)


def test_normalizer_constant_block_and_bad_input():
    constant = np.ones((10, 140), dtype=np.float32)
    assert not Normalizer.fit([constant]).apply(constant).any()
    with pytest.raises(ValueError, match="at least one"):
        Normalizer.fit([])
    with pytest.raises(ValueError, match=r"matrices\[1\]: expected shape \(frames, 140\)"):
        Normalizer.fit([constant, np.ones((10, 139))])
    with pytest.raises(ConfigError, match="^maximum: "):
        Normalizer([128, 12], [0.0, 1.0], [1.0, 0.0])


@pytest.fixture
def audio_file(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, np.concatenate([noise(0.5), harmonic_tone([440.0])]), SAMPLE_RATE)
    return path


@pytest.fixture
def counted_extractions(monkeypatch):
    calls = []

    def counting(path, config=None):
        calls.append(path)
        return extract_file(path, config)

    monkeypatch.setattr(features, "extract_file", counting)
    return calls


def test_cache_computes_once_per_content_and_config(tmp_path, audio_file, counted_extractions):
    cache = FeatureCache(tmp_path / "cache")
    first = cache.load(audio_file, CONFIG)
    np.testing.assert_array_equal(first, extract_file(audio_file, CONFIG))
    assert len(counted_extractions) == 1
    copy = shutil.copy(audio_file, tmp_path / "renamed.wav")
    np.testing.assert_array_equal(cache.load(copy, CONFIG), first)
    assert len(counted_extractions) == 1  # same bytes: a hit, whatever the name
    other = FeatureConfig(log_floor=1e-8)
    assert cache.key(audio_file, other) != cache.key(audio_file, CONFIG)
    cache.load(audio_file, other)
    assert len(counted_extractions) == 2
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_cache_misses_on_changed_content_and_repairs_bad_entries(
    tmp_path, audio_file, counted_extractions
):
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key(audio_file, CONFIG)
    cache.path(audio_file, CONFIG).parent.mkdir(parents=True)
    cache.path(audio_file, CONFIG).write_bytes(b"garbage")
    assert cache.load(audio_file, CONFIG).shape[1] == 140
    assert len(counted_extractions) == 1
    soundfile.write(audio_file, noise(0.7, seed=5), SAMPLE_RATE)
    assert cache.key(audio_file, CONFIG) != key
    with pytest.raises(AudioError, match="no such file"):
        cache.load(tmp_path / "absent.wav", CONFIG)


def test_write_features_skips_bad_files_only_when_asked(tmp_path, audio_file):
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    out = tmp_path / "out"
    with pytest.raises(AudioError, match="broken.wav"):
        write_features([audio_file, bad], out, CONFIG, progress=False)
    failures = write_features([bad, audio_file], out, CONFIG, skip_bad=True, progress=False)
    assert [path for path, _ in failures] == [bad] and "cannot decode" in failures[0][1]
    stored = np.load(out / "clip.npy")
    assert stored.shape == (num_frames(len(load_audio(audio_file)), CONFIG), 140)
    assert not (out / "broken.npy").exists()


def test_write_features_refuses_colliding_names(tmp_path, audio_file):
    twin = tmp_path / "sub" / "clip.wav"
    twin.parent.mkdir()
    shutil.copy(audio_file, twin)
    with pytest.raises(ValueError, match="same output name clip.npy"):
        write_features([audio_file, twin], tmp_path / "out", CONFIG, progress=False)


@pytest.mark.parametrize("config", [CONFIG, FeatureConfig(n_fft=2048, n_mels=64, fmin=0.0,
                                                          fmax=6000.0)])
def test_mel_matrix_is_librosas(config):
    expected = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft,
                                   n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax,
                                   dtype=np.float32)
    np.testing.assert_allclose(features.mel_matrix(config), expected, rtol=1e-6, atol=0)
