"""Tests of the broadcast mixing: loudness levels, beds, ducking, DJ transitions and their
labels, stingers and segment lengths, and the channel chain (EQ, compressors, limiter, codecs)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyloudnorm
import pytest
from scipy import signal

from musicdet.synth import SynthConfig, dsp, generate_programme, programme
from musicdet.synth.config import ROLES
from musicdet.synth.dsp import SAMPLE_RATE, samples

SHORT = SynthConfig(programme_seconds=12.0, min_segment_seconds=2.0, max_segment_seconds=6.0,
                    max_transition_seconds=1.0)
MUSIC_KINDS = {*programme.EASY_KINDS["music"], *programme.HARD_KINDS["music"], "stinger"}


def measured_lufs(x: np.ndarray) -> float:
    """The reference measurement: pyloudnorm's BS.1770 meter, used directly."""
    return float(pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(np.asarray(x, np.float64)))


def talk(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Speech-like noise: 3-5 syllables a second in words, with pauses (a quarter silent)."""
    n = samples(seconds)
    t = np.arange(n) / SAMPLE_RATE
    syllables = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(3, 5) * t)) ** 2
    words = np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.7
    return dsp.band(rng.standard_normal(n), 100, 5000) * syllables * words


def tones(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A steady chord: harmonics of 20 Hz, so every 50 ms frame has the same level."""
    t = np.arange(samples(seconds)) / SAMPLE_RATE
    return sum(np.sin(2 * np.pi * 20.0 * k * t) for k in rng.choice(np.arange(10, 40), 3, False))


def swelling_noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Noise whose level swells and fades over 26 dB once a second (never silent)."""
    t = np.arange(samples(seconds)) / SAMPLE_RATE
    return rng.standard_normal(len(t)) * (0.05 + 0.95 * (0.5 + 0.5 * np.sin(2 * np.pi * t)))


@dataclass(frozen=True)
class FakePalette(programme.Palette):
    """Every role plays: speech and singing as `talk`, the others as `tones`; roles in
    ``silent`` draw the same random numbers but return silence."""

    silent: tuple[str, ...] = ()

    def draw(self, rng: np.random.Generator, role: str, seconds: float) -> np.ndarray:
        x = (talk if role in ("speech", "singing") else tones)(rng, seconds)
        return 0.0 * x if role in self.silent else dsp.set_level(x, -20.0)

    def plays(self, kind: str) -> bool:
        return True


def fake(*silent: str) -> FakePalette:
    return FakePalette("train", {role: {} for role in ROLES}, silent)


def frame_db(x: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    """RMS level (dB) of consecutive frames of ``seconds``."""
    n = samples(seconds)
    frames = x[: len(x) // n * n].reshape(-1, n)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def test_loudness_is_gated_and_falls_back_to_rms_for_short_or_quiet_clips() -> None:
    rng = np.random.default_rng(0)
    speech = dsp.set_level(talk(rng, 6.0), -20.0)
    assert dsp.loudness(speech) == pytest.approx(measured_lufs(speech), abs=1e-9)
    with_pauses = np.concatenate([speech, np.zeros(len(speech))])  # RMS 3 dB lower
    assert dsp.loudness(with_pauses) == pytest.approx(dsp.loudness(speech), abs=0.5)
    short = speech[: samples(0.2)]  # shorter than one 400 ms gating block
    assert dsp.loudness(short) == pytest.approx(20 * np.log10(dsp.rms(short)))
    quiet = speech * 1e-4  # every block under the -70 LUFS absolute gate
    assert not np.isfinite(measured_lufs(quiet))
    assert dsp.loudness(quiet) == pytest.approx(20 * np.log10(dsp.rms(quiet)))
    assert dsp.loudness(np.zeros(16000)) == -np.inf
    np.testing.assert_array_equal(dsp.set_loudness(np.zeros(16000), -20.0), 0.0)
    assert measured_lufs(dsp.set_loudness(speech, -31.0)) == pytest.approx(-31.0, abs=0.01)


@pytest.mark.parametrize("kind", ["music", "speech", "solo_music", "stinger"])
def test_segments_are_levelled_to_the_programme_loudness(kind: str) -> None:
    config = replace(SHORT, background_noise_rate=0.0)
    for seed in range(3):
        segment = programme.PlannedSegment(kind, "music", 0, 3000)
        clip = programme.render_segment(np.random.default_rng(seed), segment, None, config,
                                        fake(), -20.0)
        spread = programme.LEVEL_SPREAD_LU + 1.0
        assert -20.0 - spread <= measured_lufs(clip) <= -20.0 + spread, (kind, seed)


@pytest.mark.parametrize("kind", ["speech_over_music", "speech_over_tonal"])
def test_beds_sit_7_to_18_lu_under_the_speech(kind: str) -> None:
    gaps = []
    for seed in range(8):
        render = programme.SEGMENT_RENDERERS[kind]
        mix = render(np.random.default_rng(seed), 8.0, SynthConfig(), fake())
        bed = render(np.random.default_rng(seed), 8.0, SynthConfig(), fake("speech"))
        gaps.append(measured_lufs(mix - bed) - measured_lufs(bed))
    assert all(7.0 - 0.1 <= gap <= 18.0 + 0.1 for gap in gaps), gaps
    assert max(gaps) - min(gaps) > 2.0  # drawn per segment, not fixed


def test_duck_envelope_falls_holds_and_recovers() -> None:
    start, stop = samples(1.0), samples(2.0)
    gain_db = 20 * np.log10(dsp.duck_envelope(samples(3.0), start, stop, 12.0, 0.25, 0.5))
    np.testing.assert_allclose(gain_db[: start - samples(0.25)], 0.0, atol=1e-9)
    np.testing.assert_allclose(gain_db[start:stop + 1], -12.0, atol=1e-9)
    np.testing.assert_allclose(gain_db[stop + samples(0.5):], 0.0, atol=1e-9)
    attack, release = np.diff(gain_db[: start + 1]), np.diff(gain_db[stop:])
    assert (attack <= 0).all() and (release >= 0).all()
    assert np.count_nonzero(attack) == samples(0.25)
    assert np.count_nonzero(release) == samples(0.5)


def test_talk_over_ducks_the_music_under_the_presenter_and_comes_back_up() -> None:
    for seed in range(4):
        music = programme._talk_over(np.random.default_rng(seed), 10.0, SHORT, fake("speech"))
        voice = programme._talk_over(np.random.default_rng(seed), 10.0, SHORT, fake("music"))
        level = frame_db(music)
        level -= level[0]  # the chord is steady: the frame levels are the ducking envelope
        spoken = np.flatnonzero(frame_db(voice) > -100)
        depth = -level[spoken].mean()
        assert 6.0 - 0.5 <= depth <= 20.0 + 0.5, seed
        np.testing.assert_allclose(level[spoken], -depth, atol=0.5)  # down while speaking
        assert abs(level[-1]) < 0.5 and spoken[0] > 0 and spoken[-1] < len(level) - 1
        low = int(np.argmin(level))
        assert (np.diff(level[:low]) < 0.5).all() and (np.diff(level[low:]) > -0.5).all()


@pytest.mark.parametrize("curve", sorted(dsp.FADE_CURVES))
def test_fade_curves_rise_monotonically_from_0_to_1(curve: str) -> None:
    rise = dsp.ramp(1000, curve)
    assert (np.diff(rise) > 0).all() and rise[0] < 0.01 and rise[-1] > 0.99
    fall = rise[::-1]  # the fade-out that a cross-fade of this curve pairs with it
    if curve == "equal-power":
        np.testing.assert_allclose(rise**2 + fall**2, 1.0, atol=1e-12)
    elif curve in ("linear", "s-curve"):
        np.testing.assert_allclose(rise + fall, 1.0, atol=1e-12)
    linear = dsp.ramp(1000, "linear")
    assert {"convex": (rise >= linear).all(), "concave": (rise <= linear).all()}.get(curve, True)


def _plan_with_crossfades(config: SynthConfig, seed: int) -> list[programme.PlannedSegment]:
    return programme.plan_segments(np.random.default_rng(seed), config, fake())


@pytest.mark.parametrize("seed", range(6))
def test_labels_are_frame_exact_and_every_crossfade_with_music_is_music(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Music kinds render ones and the others silence: the audible samples are exactly the
    music labels, transitions included."""
    for kind in programme.SEGMENT_RENDERERS:
        monkeypatch.setitem(programme.SEGMENT_RENDERERS, kind, lambda rng, s, c, p, kind=kind:
                            np.full(samples(s), float(kind in MUSIC_KINDS)))
    config = replace(SHORT, channel_effects=False, hard_case_rate=0.3)
    audio, segments = generate_programme(seed, config)
    labelled = np.zeros(len(audio), dtype=bool)
    for onset, offset, label in segments:
        labelled[round(onset * SAMPLE_RATE):round(offset * SAMPLE_RATE)] = label == "music"
    np.testing.assert_array_equal(audio != 0, labelled)
    plan = programme.plan_segments(np.random.default_rng(seed), config,
                                   programme.palette(config))
    changes = sum(a.label != b.label for a, b in zip(plan, plan[1:], strict=False))
    assert len(segments) == 1 + changes


def test_transitions_are_hard_cuts_and_crossfades_of_every_curve() -> None:
    joins = [s for seed in range(60) for s in _plan_with_crossfades(SHORT, seed)[1:]]
    lengths = np.array([s.fade_in_ms for s in joins])
    assert (lengths % 2 == 0).all() and lengths.min() == programme.HARD_CUT_MS
    assert lengths.max() <= 1000 and (lengths > 500).any()
    assert 0.2 < np.mean(lengths == programme.HARD_CUT_MS) < 0.6
    assert {s.fade_curve for s in joins} == set(dsp.FADE_CURVES)


def test_stingers_and_segment_lengths_are_like_radio() -> None:
    config = SynthConfig(programme_seconds=300.0)
    plans = [programme.plan_segments(np.random.default_rng(seed), config, fake())
             for seed in range(12)]
    stingers = 0
    for plan in plans:
        for previous, segment, following in zip(plan, plan[1:], plan[2:], strict=False):
            seconds = (segment.offset_ms - segment.onset_ms) / 1000
            if segment.kind == "stinger":
                stingers += 1
                assert segment.label == "music" and 0.5 <= seconds <= 4.0
                assert previous.kind in programme.TALK_KINDS and following.label == "no-music"
                assert segment.fade_in_ms == following.fade_in_ms == programme.HARD_CUT_MS
            elif segment.kind in programme.TALK_KINDS:
                assert 5.0 <= seconds <= 40.0, segment
            elif segment.label == "music" and segment.kind != "jingle":
                assert 5.0 <= seconds <= 60.0, segment
    assert stingers >= 5
    talk = [s.offset_ms - s.onset_ms for p in plans for s in p[:-1] if s.kind == "speech"]
    assert np.median(talk) > 8000  # talk runs long, as on air


def test_codec_round_trip_keeps_alignment_and_length() -> None:
    rng = np.random.default_rng(3)
    x = 0.3 * talk(rng, 3.0) + 0.05 * tones(rng, 3.0)
    x = x[: len(x) - 77]  # not a whole number of codec frames
    max_lag = samples(0.25)
    delays = []
    for codec, kbps in (("mp3", 32), ("mp3", 128), ("vorbis", 48)):
        raw = dsp._encode_decode(x, codec, kbps)
        delays.append(_lag(x, raw[: len(x)], max_lag))
        assert dsp._codec_delay(codec, kbps) == delays[-1]
        decoded = dsp.codec_round_trip(x, codec, kbps)
        assert len(decoded) == len(x)
        assert abs(_lag(x, decoded, max_lag)) <= samples(0.001), (codec, kbps)
        assert np.corrcoef(x, decoded)[0, 1] > 0.8
    assert max(delays) > 0  # here, mp3 at 32 kbit/s is delayed (LAME's 1105 samples)


def _lag(reference: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """Samples by which ``x`` lags ``reference`` (cross-correlation peak within max_lag)."""
    full = signal.correlate(x, reference, mode="full", method="fft")
    middle = len(reference) - 1
    return int(np.argmax(full[middle - max_lag: middle + max_lag + 1])) - max_lag


def test_codecs_run_near_the_asked_bit_rates() -> None:
    rng = np.random.default_rng(0)
    x = 0.1 * tones(rng, 4.0) + 0.02 * rng.standard_normal(samples(4.0))
    for codec, kbps in (("mp3", 32), ("mp3", 64), ("mp3", 128), ("vorbis", 32), ("vorbis", 64)):
        measured = len(dsp.encode(x, codec, kbps)) * 8 / 4.0 / 1000
        assert measured == pytest.approx(kbps, rel=0.2), (codec, kbps, measured)


def test_limiter_keeps_peaks_under_the_ceiling_and_leaves_quiet_audio_alone() -> None:
    rng = np.random.default_rng(4)
    x = swelling_noise(rng, 4.0)
    x[samples(2.0)] = 8.0  # an isolated spike
    out = dsp.limit(x, -1.0)
    assert np.abs(out).max() <= dsp.db_to_gain(-1.0) + 1e-12
    gain = np.abs(out[samples(2.0) - samples(0.004)]) / np.abs(x[samples(2.0) - samples(0.004)])
    assert gain < 1.0  # the lookahead lowers the gain before the spike arrives
    quiet = x * 0.01
    np.testing.assert_array_equal(dsp.limit(quiet, -1.0), quiet)


def test_multiband_bands_sum_back_and_compression_narrows_the_dynamics() -> None:
    rng = np.random.default_rng(5)
    x = dsp.band(swelling_noise(rng, 4.0), 50, 6000) * 0.1
    np.testing.assert_allclose(dsp.multiband_compress(x, (200, 2500), (0, 0, 0), (1, 1, 1)), x,
                               atol=1e-9)
    out = dsp.multiband_compress(x, (200, 2500), (-12, -12, -12), (6, 6, 6))
    spread = lambda y: np.ptp(np.percentile(frame_db(y, 0.2), [10, 90]))  # noqa: E731
    assert spread(out) < spread(x) - 3.0
    assert 20 * np.log10(dsp.rms(out) / dsp.rms(x)) == pytest.approx(0.0, abs=1.5)


def test_equaliser_shelves_and_peaks_where_asked() -> None:
    t = np.arange(samples(1.0)) / SAMPLE_RATE
    bands = [("low_shelf", 150.0, 6.0, 0.7), ("peaking", 1000.0, -8.0, 1.0),
             ("high_shelf", 5000.0, 4.0, 0.7)]
    for hz, expected_db in ((40.0, 6.0), (1000.0, -8.0), (7500.0, 4.0)):
        tone = np.sin(2 * np.pi * hz * t)
        out = dsp.equalise(tone, bands)[samples(0.5):]
        assert 20 * np.log10(dsp.rms(out) / dsp.rms(tone[samples(0.5):])) == pytest.approx(
            expected_db, abs=1.0), hz


def test_phone_ins_are_band_limited_to_300_3400_hz(monkeypatch: pytest.MonkeyPatch) -> None:
    config = replace(SHORT, background_noise_rate=0.0)
    wide = programme._speech(np.random.default_rng(2), 4.0, config, fake())
    monkeypatch.setattr(programme, "PHONE_RATE", 1.0)
    phone = programme._speech(np.random.default_rng(2), 4.0, config, fake())
    freqs, power = signal.welch(phone, SAMPLE_RATE, nperseg=1024)
    _, wide_power = signal.welch(wide, SAMPLE_RATE, nperseg=1024)
    outside = (freqs < 150) | (freqs > 5000)
    assert power[outside].sum() / power.sum() < 0.01 < wide_power[outside].sum() / wide_power.sum()


def test_channel_steps_are_drawn_with_sensible_rates_and_deterministically() -> None:
    channels = [programme.draw_channel(np.random.default_rng(seed), SHORT) for seed in range(300)]
    assert channels[7] == programme.draw_channel(np.random.default_rng(7), SHORT)
    rates = {
        "eq": np.mean([bool(c.eq) for c in channels]),
        "multiband": np.mean([len(c.ratios) == 3 for c in channels]),
        "one band": np.mean([len(c.ratios) == 1 for c in channels]),
        "limiter": np.mean([c.limiter is not None for c in channels]),
        "mp3": np.mean([c.codec is not None and c.codec[0] == "mp3" for c in channels]),
        "vorbis": np.mean([c.codec is not None and c.codec[0] == "vorbis" for c in channels]),
        "hum": np.mean([c.hum_db is not None for c in channels]),
    }
    expected = {"eq": 0.6, "multiband": 0.4, "one band": 0.3, "limiter": 0.6, "mp3": 0.3,
                "vorbis": 0.2, "hum": 0.2}
    for step, rate in expected.items():
        assert rates[step] == pytest.approx(rate, abs=0.1), step
    kbps = {c.codec[1] for c in channels if c.codec is not None}
    assert min(kbps) == 32 and max(kbps) == 128


FULL_CHAIN = programme.Channel(
    eq=(("low_shelf", 120.0, 4.0, 0.7), ("peaking", 900.0, -5.0, 1.5)), band_hz=(None, None),
    crossovers_hz=(200.0, 2500.0), thresholds_db=(-10.0, -8.0, -6.0), ratios=(3.0, 4.0, 5.0),
    hum_db=-40.0, limiter=(-1.0, 6.0), codec=("mp3", 32.0), noise_db=-60.0)


def test_the_full_chain_keeps_alignment_and_the_limiter_ceiling() -> None:
    rng = np.random.default_rng(6)
    x = dsp.set_loudness(talk(rng, 4.0) + 0.1 * tones(rng, 4.0), -20.0)
    out = programme.apply_channel(np.random.default_rng(0), x, FULL_CHAIN)
    assert len(out) == len(x)
    assert abs(_lag(x, out, samples(0.25))) <= samples(0.001)
    no_codec = programme.apply_channel(np.random.default_rng(0), x,
                                       replace(FULL_CHAIN, codec=None, noise_db=-200.0,
                                               hum_db=None))
    assert np.abs(no_codec).max() <= dsp.db_to_gain(-1.0) + 1e-9


def test_a_whole_programme_with_every_channel_step_is_deterministic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programme, "draw_channel", lambda rng, config: FULL_CHAIN)
    config = replace(SHORT, programme_seconds=6.0)
    audio, segments = generate_programme(5, config)
    again, segments_again = generate_programme(5, config)
    np.testing.assert_array_equal(audio, again)
    assert segments == segments_again and segments[-1][1] == 6.0
    assert audio.shape == (samples(6.0),) and np.abs(audio).max() <= 0.98 + 1e-6
