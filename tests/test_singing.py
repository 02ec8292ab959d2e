"""Tests of the sung voices: providers and splits, determinism and caching, and that the output
is sung (its pitch follows the planned notes, long sustained voiced notes) rather than spoken;
song and a cappella segments in programmes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

from musicdet.synth import SynthConfig, programme, singing, sources, speech
from musicdet.synth.config import ROLES
from musicdet.synth.dsp import SAMPLE_RATE, rms
from musicdet.synth.sources import singing as sung

PROVIDERS = ("sung-voice", "piper-sung")
SINGERS = {"sung-voice": sung.espeak_singers, "piper-sung": sung.piper_singers}
HOP = 160  # samples (10 ms) of the analysis frames below


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path) -> None:
    sources.set_cache_dir(tmp_path / "cache")


def periodic_frames(audio: np.ndarray) -> np.ndarray:
    """Per 10 ms hop: whether the 40 ms frame there is loud (within 30 dB of the clip's RMS)
    and periodic at 60-1000 Hz (normalised autocorrelation peak > 0.6)."""
    frames = librosa.util.frame(audio.astype(np.float64), frame_length=640, hop_length=HOP).T
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, 1280)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:, :640]
    peak = autocorrelation[:, 16:267].max(axis=1) / (autocorrelation[:, 0] + 1e-12)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > rms(audio) * 10 ** (-30 / 20)
    return loud & (peak > 0.6)


def typical_run_s(flags: np.ndarray) -> float:
    """The median over True hops of ``flags`` (one per 10 ms) of the length (s) of the run of
    True each belongs to: how long voiced stretches last, weighted by duration."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    lengths = edges[1::2] - edges[::2]
    return float(np.median(np.repeat(lengths, lengths)) * HOP / SAMPLE_RATE)


def test_providers_are_registered_available_and_the_singing_default() -> None:
    registry = sources.registry()
    for name in PROVIDERS:
        assert registry[name].info.kind == "singing" and registry[name].available(), name
        assert "pyworld" in registry[name].info.version
    assert set(ROLES["singing"].default) == set(PROVIDERS)
    chosen = programme.palette(SynthConfig())
    assert set(chosen.roles["singing"]) == set(PROVIDERS)
    assert chosen.plays("song") and chosen.plays("a_cappella")


def test_without_pyworld_nothing_sings_and_songs_are_not_planned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(singing, "world_available", lambda: False)
    assert not any(sources.registry()[name].available() for name in PROVIDERS)
    chosen = programme.palette(SynthConfig())
    assert chosen.roles["singing"] == {} and not chosen.plays("song")


@pytest.mark.parametrize("name", PROVIDERS)
def test_splits_share_no_voice_and_a_draw_sings_with_its_splits(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    per_split = {split: SINGERS[name](split) for split in sources.SPLITS}
    assert all(per_split.values())
    keys = {split: {(s.identity, s.range_name, s.formant) for s in singers}
            for split, singers in per_split.items()}
    assert not (keys["train"] & keys["validation"] or keys["train"] & keys["test"]
                or keys["validation"] & keys["test"])
    used: list[singing.Singer] = []
    real = singing.analysis
    monkeypatch.setattr(singing, "analysis", lambda s, text: used.append(s) or real(s, text))
    sources.registry()[name].draw(np.random.default_rng(2), 1.5, "test")
    assert used and {(s.identity, s.range_name, s.formant) for s in used} <= keys["test"]


@pytest.mark.parametrize("name", PROVIDERS)
def test_draw_is_deterministic_levelled_and_the_cache_gives_the_same_samples(
        name: str, tmp_path: Path) -> None:
    source = sources.registry()[name]
    singing._ANALYSES.clear()
    cold = source.draw(np.random.default_rng(11), 3.3, "validation")
    assert list((tmp_path / "cache" / "singing").glob("*.npz"))
    warm = source.draw(np.random.default_rng(11), 3.3, "validation")
    singing._ANALYSES.clear()
    from_disk = source.draw(np.random.default_rng(11), 3.3, "validation")
    other = source.draw(np.random.default_rng(12), 3.3, "validation")
    assert cold.dtype == np.float32 and cold.shape == (round(3.3 * SAMPLE_RATE),)
    assert np.isfinite(cold).all() and np.abs(cold).max() <= 1.0
    assert 20 * np.log10(rms(cold)) == pytest.approx(-20.0, abs=0.1)
    np.testing.assert_array_equal(cold, warm)
    np.testing.assert_array_equal(cold, from_disk)
    assert not np.array_equal(cold, other)


@pytest.mark.parametrize(("name", "seed"), [("sung-voice", 0), ("sung-voice", 1),
                                            ("piper-sung", 0)])
def test_pitch_follows_the_planned_notes(name: str, seed: int) -> None:
    audio, notes = singing.sing(np.random.default_rng(seed), 6.0, SINGERS[name]("test"), "song",
                                choir=False)
    hz = [singing.midi_to_hz(note.midi) for note in notes]
    f0 = librosa.yin(audio.astype(np.float64), fmin=min(hz) / 1.6, fmax=max(hz) * 1.6,
                     sr=SAMPLE_RATE, frame_length=1024, hop_length=HOP)
    errors = []
    for note in notes:
        first, end = round(note.onset * 100) + 5, round(note.offset * 100) - 3
        if end - first >= 8 and not note.ornamented:
            errors.append(1200 * np.log2(np.median(f0[first:end]) / singing.midi_to_hz(note.midi)))
    assert len(errors) >= 4
    assert np.mean(np.abs(errors) < 50) >= 0.8, np.round(errors)
    assert len({note.midi for note in notes}) >= 3  # a melody, not a monotone


def test_singing_holds_long_voiced_notes_unlike_speech() -> None:
    singers = sung.espeak_singers("train")
    sung_flags = np.concatenate([periodic_frames(singing.sing(
        np.random.default_rng(seed), 6.0, singers, "song", choir=False)[0]) for seed in range(3)])
    spoken_flags = np.concatenate([periodic_frames(speech.speech(np.random.default_rng(seed),
                                                                 6.0)) for seed in range(3)])
    assert sung_flags.mean() > 0.7 and sung_flags.mean() > spoken_flags.mean() + 0.15
    assert typical_run_s(sung_flags) > max(3 * typical_run_s(spoken_flags), 0.6)


def test_styles_chant_recites_carnatic_ornaments() -> None:
    singers = sung.espeak_singers("train")
    _, chant = singing.sing(np.random.default_rng(4), 6.0, singers, "chant", choir=True)
    pitches, counts = np.unique([note.midi for note in chant], return_counts=True)
    assert counts.max() / counts.sum() >= 0.5 and len(chant) >= 6
    _, carnatic = singing.sing(np.random.default_rng(5), 6.0, singers, "carnatic")
    assert any(note.ornamented for note in carnatic)


def test_song_and_a_cappella_are_planned_and_render() -> None:
    chosen = programme.palette(SynthConfig())
    config = SynthConfig(hard_case_rate=0.5)
    kinds = {s.kind for seed in range(30)
             for s in programme.plan_segments(np.random.default_rng(seed), config, chosen)}
    assert {"song", "a_cappella"} <= kinds
    for kind in ("song", "a_cappella"):
        clip = programme.SEGMENT_RENDERERS[kind](np.random.default_rng(1), 2.0, config, chosen)
        assert np.isfinite(clip).all() and rms(clip) > 0.01


def test_a_draw_is_identical_in_a_fresh_process_without_a_cache() -> None:
    draws = [sources.registry()[name].draw(np.random.default_rng(6), 2.0, "train")
             for name in PROVIDERS]
    script = ("import hashlib, numpy as np; from musicdet.synth import sources; "
              f"print(*(hashlib.sha256(sources.registry()[n].draw(np.random.default_rng(6), 2.0, "
              f"'train').tobytes()).hexdigest() for n in {PROVIDERS!r}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == [hashlib.sha256(d.tobytes()).hexdigest() for d in draws]
