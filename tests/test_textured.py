"""Tests of the textured-noise provider: registry and defaults, determinism, level and length,
and that its ambiences are far from stationary and far from music (stable pitch classes,
steady beats) compared with pink noise and `music.render_music`; the default corpus's share
of noise; the machine-line tonal hard case."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal
from scipy.ndimage import median_filter

from musicdet.synth import SynthConfig, music, programme, sounds, sources
from musicdet.synth.config import ROLES
from musicdet.synth.dsp import SAMPLE_RATE, band, pink_noise, rms
from musicdet.synth.sources import textured

OCTAVES = 125.0 * 2.0 ** np.arange(7)  # band edges (Hz) of the spectral-shape measure


def stationarity(audio: np.ndarray, frame: int = 4000) -> tuple[float, float]:
    """Spread over 250-ms frames (above 100 Hz) of the level and of the spectral shape: the
    standard deviation (dB) of the frame level, and the median over six octave bands of the
    standard deviation (dB) of each band's share of the frame's energy."""
    x = band(audio.astype(np.float64), 100, None)
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1 / SAMPLE_RATE)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                      for lo, hi in zip(OCTAVES[:-1], OCTAVES[1:], strict=True)], axis=1)
    shape = 10 * np.log10((bands + 1e-20) / (bands.sum(axis=1, keepdims=True) + 1e-20))
    return float(level.std()), float(np.median(shape.std(axis=0)))


def pitch_class_consistency(audio: np.ndarray) -> float:
    """How strongly the same pitch classes carry stable spectral peaks second after second:
    per 1-s window the mean power spectrum (100-4000 Hz), peaks more than 8.7 dB (e^2) above
    the local median (31 bins) summed by pitch class; the norm of their mean over windows.
    Near 0 for noise (no peaks, or peaks that wander); tens or more for tonal music."""
    freqs, _, stft = signal.stft(audio, SAMPLE_RATE, nperseg=4096, noverlap=3072)
    keep = (freqs >= 100) & (freqs <= 4000)
    power, freqs = np.abs(stft[keep]) ** 2, freqs[keep]
    per_window = SAMPLE_RATE // 1024
    windows = power.shape[1] // per_window
    mean = power[:, : windows * per_window].reshape(len(freqs), windows, per_window).mean(axis=2)
    floor = median_filter(mean, size=(31, 1), mode="nearest")
    excess = np.maximum(np.log((mean + 1e-20) / (floor + 1e-20)) - 2.0, 0.0)
    chroma = np.zeros((12, windows))
    np.add.at(chroma, np.round(12 * np.log2(freqs / 440.0)).astype(int) % 12, excess)
    return float(np.linalg.norm(chroma.mean(axis=1)))


def beat_strength(audio: np.ndarray) -> float:
    """The highest normalised autocorrelation, at lags of 0.3-1.0 s, of the spectral flux
    (mean rise of log magnitude per 10-ms hop, slow trend removed): a steady beat at
    60-200 BPM gives a high value."""
    _, _, stft = signal.stft(audio, SAMPLE_RATE, nperseg=512, noverlap=352)
    rise = np.maximum(np.diff(np.log(np.abs(stft) + 1e-4), axis=1), 0.0).mean(axis=0)
    onsets = rise - signal.medfilt(rise, 51)
    onsets -= onsets.mean()
    correlation = np.correlate(onsets, onsets, "full")[len(onsets) - 1:]
    return float(correlation[30:101].max() / max(correlation[0], 1e-12))


def _draws(render, seeds: range, seconds: float = 6.0) -> list[np.ndarray]:
    return [render(np.random.default_rng(seed), seconds) for seed in seeds]


def test_textured_noise_is_registered_and_the_main_default_noise() -> None:
    source = sources.registry()["textured-noise"]
    assert source.info.kind == "noise" and source.available()
    default = ROLES["noise"].default
    assert max(default, key=default.get) == "textured-noise"
    assert "textured-noise" in programme.palette(SynthConfig()).roles["noise"]


@pytest.mark.parametrize("seconds", [0.0, 0.3, 4.0])
def test_draw_is_deterministic_sized_levelled_and_finite(seconds: float) -> None:
    source = sources.registry()["textured-noise"]
    first = source.draw(np.random.default_rng(11), seconds, "validation")
    again = source.draw(np.random.default_rng(11), seconds, "validation")
    other = source.draw(np.random.default_rng(12), seconds, "validation")
    assert first.dtype == np.float32 and first.shape == (round(seconds * SAMPLE_RATE),)
    np.testing.assert_array_equal(first, again)
    if seconds:
        assert np.isfinite(first).all() and not np.array_equal(first, other)
        assert 20 * np.log10(rms(first)) == pytest.approx(-20.0, abs=0.05)
        assert np.abs(first).max() <= textured.CREST * 0.1 + 1e-6  # crest-limited peaks


def test_every_split_draws_from_the_same_generator() -> None:
    source = sources.registry()["textured-noise"]
    draws = [source.draw(np.random.default_rng(5), 1.0, split) for split in sources.SPLITS]
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], draws[2])


@pytest.mark.parametrize("layer", sorted(textured.LAYERS))
def test_every_layer_alone_is_far_less_stationary_than_pink_noise(layer: str) -> None:
    pink = np.array([stationarity(pink_noise(np.random.default_rng(s), 6 * SAMPLE_RATE))
                     for s in range(3)]).max(axis=0)
    for seed in range(3):
        audio = textured.textured_ambience(np.random.default_rng(seed), 6.0, (layer,))
        assert audio.shape == (6 * SAMPLE_RATE,) and np.isfinite(audio).all()
        level_spread, shape_spread = stationarity(audio)
        assert level_spread > 5 * pink[0] or shape_spread > 2.5 * pink[1], (seed, level_spread,
                                                                             shape_spread)


def test_mixed_ambiences_vary_in_level_and_colour_far_more_than_pink_noise() -> None:
    pink = np.array([stationarity(pink_noise(np.random.default_rng(s), 6 * SAMPLE_RATE))
                     for s in range(3)]).max(axis=0)
    spreads = np.array([stationarity(x) for x in _draws(textured.textured_ambience,
                                                          range(10))])
    assert np.median(spreads[:, 0]) > 8 * pink[0]
    assert np.median(spreads[:, 1]) > 4 * pink[1]
    assert ((spreads[:, 0] > 5 * pink[0]) | (spreads[:, 1] > 2.5 * pink[1])).all(), spreads


def test_ambiences_have_no_stable_pitch_class_profile_unlike_music() -> None:
    noise = [pitch_class_consistency(x) for x in _draws(textured.textured_ambience, range(10))]
    tunes = [pitch_class_consistency(x) for x in _draws(music.render_music, range(10))]
    assert np.percentile(noise, 80) < np.percentile(tunes, 20), (noise, tunes)
    assert np.median(noise) < np.median(tunes) / 5, (noise, tunes)


def test_ambiences_have_no_steady_beat_unlike_music() -> None:
    noise = [beat_strength(x) for x in _draws(textured.textured_ambience, range(10))]
    tunes = [beat_strength(x) for x in _draws(music.render_music, range(10))]
    assert np.percentile(noise, 80) < np.percentile(tunes, 20) / 2, (noise, tunes)


def test_most_draws_are_led_by_a_continuous_bed_under_two_or_three_distinct_layers() -> None:
    picks = [textured.pick_layers(np.random.default_rng(seed)) for seed in range(400)]
    assert all(len(set(p)) == len(p) and 2 <= len(p) <= 3 for p in picks)
    led_by_bed = np.mean([p[0] in textured.BEDS for p in picks])
    weights = {name: weight for name, (_, weight) in textured.LAYERS.items()}
    bed_share = sum(weights[name] for name in textured.BEDS) / sum(weights.values())
    expected = textured.BED_RATE + (1 - textured.BED_RATE) * bed_share  # beds lead by chance too
    assert led_by_bed == pytest.approx(expected, abs=0.05)
    assert {name for p in picks for name in p} == set(textured.LAYERS)


def test_events_come_irregularly_and_at_least_once() -> None:
    rng = np.random.default_rng(0)
    onsets = textured.event_times(rng, 200.0, 2.0)
    gaps = np.diff(onsets)
    assert 0.5 * 2.0 * 200 < len(onsets) < 1.5 * 2.0 * 200
    assert gaps.std() / gaps.mean() > 0.8  # Poisson-like or burstier, not a grid (0)
    assert all(len(textured.event_times(np.random.default_rng(s), 0.5, 0.01)) >= 1
               for s in range(20))


def test_an_unknown_layer_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"unknown textured layers \['organ'\]; known: clatter"):
        textured.textured_ambience(np.random.default_rng(0), 1.0, ("organ",))


def test_the_default_corpus_gives_noise_a_large_share_of_no_music_time() -> None:
    """Ambience alone is about a quarter of the no-music time (0.14 with the old weights),
    and with speech over noise close to half of it."""
    config = SynthConfig()
    chosen = programme.palette(config)
    seconds: dict[str, float] = {}
    for seed in range(400):
        for segment in programme.plan_segments(np.random.default_rng(seed), config, chosen):
            if segment.label == programme.NO_MUSIC:
                seconds[segment.kind] = seconds.get(segment.kind, 0.0) + (
                    segment.offset_ms - segment.onset_ms) / 1000
    total = sum(seconds.values())
    assert 0.22 < seconds["ambience"] / total < 0.32
    noisy = seconds["ambience"] + config.background_noise_rate * seconds["speech"]
    assert 0.38 < noisy / total < 0.5


def test_machine_lines_are_tonal_non_music_whose_pitch_wanders_unlike_mains_hum() -> None:
    lines = _draws(sounds.machine_line, range(8))
    assert all(x.dtype == np.float32 and 20 * np.log10(rms(x)) == pytest.approx(-20.0, abs=0.1)
               for x in lines)
    np.testing.assert_array_equal(lines[0], sounds.machine_line(np.random.default_rng(0), 6.0))
    assert sounds.TONAL["machine"] is sounds.machine_line
    whine = [pitch_class_consistency(x) for x in lines]
    hum = [pitch_class_consistency(x) for x in _draws(sounds.hum, range(8))]
    assert np.percentile(whine, 80) < np.percentile(hum, 20), (whine, hum)
