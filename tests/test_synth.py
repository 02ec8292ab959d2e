"""Tests of the synthetic corpus: determinism, labels, balance, speech realism, corpus files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicdet.configtools import ConfigError, from_dict, to_dict
from musicdet.synth import SynthConfig, corpus, generate_programme, programme, speech, write_corpus
from musicdet.synth.dsp import SAMPLE_RATE

SHORT = SynthConfig(programme_seconds=10.0, min_segment_seconds=1.0, max_segment_seconds=4.0,
                    max_transition_seconds=0.5)
TWO_SHORT_PROGRAMMES_H = 2 * 5.0 / 3600


def modulation_fraction(audio: np.ndarray) -> float:
    """Share of the 0.5-20 Hz energy envelope modulation that lies at 3-8 Hz (syllable rate)."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    envelope = np.sqrt(np.mean(frames**2, axis=1))
    spectrum = np.abs(np.fft.rfft((envelope - envelope.mean()) * np.hanning(len(envelope))))**2
    freqs = np.fft.rfftfreq(len(envelope), 0.01)
    return float(spectrum[(freqs >= 3) & (freqs <= 8)].sum()
                 / spectrum[(freqs >= 0.5) & (freqs <= 20)].sum())


def voiced_fraction(audio: np.ndarray) -> float:
    """Share of non-quiet 30 ms frames that are periodic at 70-400 Hz (autocorrelation > 0.5)."""
    frames = audio[: len(audio) // 480 * 480].reshape(-1, 480).astype(np.float64)
    threshold = 0.1 * np.sqrt(np.mean(audio.astype(np.float64) ** 2))
    voiced = []
    for frame in frames[np.sqrt(np.mean(frames**2, axis=1)) > threshold]:
        frame = frame - frame.mean()
        autocorrelation = np.correlate(frame, frame, "full")[479:]
        voiced.append(autocorrelation[40:230].max() / (autocorrelation[0] + 1e-12) > 0.5)
    return float(np.mean(voiced))


def test_config_rejects_bad_values_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="music_fraction"):
        SynthConfig(music_fraction=1.5)
    with pytest.raises(ConfigError, match="bed_level_db_min"):
        SynthConfig(bed_level_db_min=-3.0, bed_level_db_max=-10.0)
    with pytest.raises(ConfigError, match=r"speech_sources\.festival: `a speech source"):
        from_dict(SynthConfig, {"speech_sources": {"festival": 1.0}})
    with pytest.raises(ConfigError, match=r"noise_sources\.gm-scores: `a noise source"):
        SynthConfig(noise_sources={"gm-scores": 1.0})
    assert from_dict(SynthConfig, to_dict(SHORT)) == SHORT


def test_same_seed_same_programme_other_seed_differs() -> None:
    audio, segments = generate_programme(7, SHORT)
    again, segments_again = generate_programme(7, SHORT)
    other, _ = generate_programme(8, SHORT)
    np.testing.assert_array_equal(audio, again)
    assert segments == segments_again
    assert not np.array_equal(audio, other)


def test_programme_identical_in_a_fresh_process() -> None:
    audio, _ = generate_programme(3, SHORT)
    script = ("import hashlib; from musicdet.synth import generate_programme as g; "
              f"from musicdet.synth import SynthConfig as C; a, _ = g(3, C(**{to_dict(SHORT)!r}));"
              " print(hashlib.sha256(a.tobytes()).hexdigest())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == hashlib.sha256(audio.tobytes()).hexdigest()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segments_tile_the_programme_and_audio_is_valid(seed: int) -> None:
    audio, segments = generate_programme(seed, SHORT)
    assert audio.dtype == np.float32 and audio.shape == (10 * SAMPLE_RATE,)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0.01
    assert segments[0][0] == 0.0 and segments[-1][1] == pytest.approx(10.0)
    for (_, offset, label), (onset, _, next_label) in zip(segments, segments[1:], strict=False):
        assert offset == onset and label != next_label
    assert all(onset < offset and label in ("music", "no-music")
               for onset, offset, label in segments)


def test_music_fraction_is_near_the_target() -> None:
    labelled = [generate_programme(seed, SHORT)[1] for seed in range(12)]
    music_s = sum(off - on for segments in labelled for on, off, label in segments
                  if label == "music")
    assert 0.35 <= music_s / (12 * 10.0) <= 0.65


@pytest.mark.parametrize(("fraction", "label"), [(0.0, "no-music"), (1.0, "music")])
def test_music_fraction_extremes_give_one_label(fraction: float, label: str) -> None:
    config = SynthConfig(**{**to_dict(SHORT), "music_fraction": fraction})
    _, segments = generate_programme(4, config)
    assert segments == [(0.0, 10.0, label)]


@pytest.mark.parametrize("kind", sorted(programme.SEGMENT_RENDERERS))
def test_every_segment_kind_renders_finite_audio_or_is_never_planned(kind: str) -> None:
    rng = np.random.default_rng(5)
    chosen = programme.palette(SynthConfig())
    if not chosen.plays(kind):  # an optional role that nothing installed here plays
        config = SynthConfig(hard_case_rate=0.5)
        kinds = {s.kind for seed in range(20) for s in programme.plan_segments(
            np.random.default_rng(seed), config, chosen)}
        assert kind not in kinds and len(kinds) > 5
        return
    clip = programme.SEGMENT_RENDERERS[kind](rng, 2.5, SynthConfig(), chosen)
    assert abs(len(clip) - 2.5 * SAMPLE_RATE) <= 2
    assert np.isfinite(clip).all() and np.abs(clip).max() > 1e-4


def test_espeak_speech_is_voiced_with_syllable_rate_modulation() -> None:
    assert speech.espeak_available()
    text = "Guten Abend, meine Damen und Herren. Der Minister bestätigte heute einen neuen Plan."
    audio = speech.espeak_speak(text, "de+m3", 170, 50, 50)
    assert audio.dtype == np.float32 and len(audio) > 3 * SAMPLE_RATE
    assert voiced_fraction(audio) > 0.3
    assert modulation_fraction(audio) > 0.4
    assert modulation_fraction(np.random.default_rng(0).standard_normal(len(audio))) < 0.4


def test_espeak_output_does_not_depend_on_what_was_spoken_before() -> None:
    first = speech.espeak_speak("Hello, this is the news.", "en+f3", 160, 60, 50)
    speech.espeak_speak("Bonjour à tous, voici les nouvelles.", "fr+klatt", 200, 30, 80)
    np.testing.assert_array_equal(first, speech.espeak_speak("Hello, this is the news.", "en+f3",
                                                             160, 60, 50))


def test_unknown_espeak_voice_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="unknown voice 'xx-nope'"):
        speech.espeak_speak("hello", "xx-nope", 170, 50, 50)


def test_formant_fallback_sounds_like_speech() -> None:
    audio = speech.formant_speech(np.random.default_rng(2), 6.0)
    assert len(audio) == 6 * SAMPLE_RATE and np.isfinite(audio).all()
    assert voiced_fraction(audio) > 0.3
    assert modulation_fraction(audio) > 0.4


def test_speech_falls_back_to_formants_without_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "espeak_available", lambda: False)
    fallback = speech.speech(np.random.default_rng(1), 3.0, "espeak")
    expected = speech.speech(np.random.default_rng(1), 3.0, "formant")
    np.testing.assert_array_equal(fallback, expected)
    assert len(fallback) == 3 * SAMPLE_RATE


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_write_corpus_files_labels_and_manifest(tmp_path: Path) -> None:
    config = SynthConfig(**{**to_dict(SHORT), "programme_seconds": 5.0})
    wavs = write_corpus(tmp_path, TWO_SHORT_PROGRAMMES_H, seed=11, config=config, progress=False)
    assert [w.name for w in wavs] == ["prog-0000.wav", "prog-0001.wav"]
    audio, rate = sf.read(wavs[0], dtype="float32")
    assert rate == SAMPLE_RATE and audio.shape == (5 * SAMPLE_RATE,)
    lines = wavs[0].with_suffix(".tsv").read_text().splitlines()
    assert lines[0] == "onset\toffset\tlabel"
    rows = [line.split("\t") for line in lines[1:]]
    assert float(rows[0][0]) == 0.0 and float(rows[-1][1]) == 5.0
    assert {row[2] for row in rows} <= {"music", "no-music"}
    manifest = json.loads((tmp_path / "corpus.json").read_text())
    assert manifest["seed"] == 11 and manifest["programmes"] == 2
    assert manifest["config"] == to_dict(config) and manifest["version"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_write_corpus_is_idempotent_and_extends(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = SynthConfig(**{**to_dict(SHORT), "programme_seconds": 5.0})
    write_corpus(tmp_path / "big", 3 * 5.0 / 3600, seed=4, config=config, progress=False)
    write_corpus(tmp_path / "small", TWO_SHORT_PROGRAMMES_H, seed=4, config=config,
                 progress=False)
    before = _tree(tmp_path / "small")
    monkeypatch.setattr(corpus, "generate_programme", pytest.fail)
    write_corpus(tmp_path / "small", TWO_SHORT_PROGRAMMES_H, seed=4, config=config,
                 progress=False)
    assert _tree(tmp_path / "small") == before
    monkeypatch.undo()
    write_corpus(tmp_path / "small", 3 * 5.0 / 3600, seed=4, config=config, progress=False)
    big, extended = _tree(tmp_path / "big"), _tree(tmp_path / "small")
    for name in ("prog-0000.wav", "prog-0001.tsv", "prog-0002.wav", "prog-0002.tsv"):
        assert extended[name][0] == big[name][0]
    assert extended["prog-0000.wav"][1] == before["prog-0000.wav"][1]  # kept, not rewritten


def test_write_corpus_regenerates_for_another_seed_and_trims(tmp_path: Path) -> None:
    config = SynthConfig(**{**to_dict(SHORT), "programme_seconds": 5.0})
    write_corpus(tmp_path, 3 * 5.0 / 3600, seed=1, config=config, progress=False)
    first = (tmp_path / "prog-0000.wav").read_bytes()
    write_corpus(tmp_path, TWO_SHORT_PROGRAMMES_H, seed=2, config=config, progress=False)
    assert (tmp_path / "prog-0000.wav").read_bytes() != first
    assert not (tmp_path / "prog-0002.wav").exists()
    assert json.loads((tmp_path / "corpus.json").read_text())["seed"] == 2


def test_write_corpus_crash_leaves_no_partial_files(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = SynthConfig(**{**to_dict(SHORT), "programme_seconds": 5.0})
    calls = []

    def failing(seed: int, config: SynthConfig, split: str) -> tuple[np.ndarray, list]:
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate_programme(seed, config, split)

    monkeypatch.setattr(corpus, "generate_programme", failing)
    with pytest.raises(KeyboardInterrupt):
        write_corpus(tmp_path, TWO_SHORT_PROGRAMMES_H, seed=3, config=config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog-0000.tsv", "prog-0000.wav"]


def test_write_corpus_rejects_bad_hours(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hours: expected a positive number"):
        write_corpus(tmp_path, 0.0, seed=1, progress=False)


def test_worker_processes_write_the_same_corpus(tmp_path: Path) -> None:
    config = replace(SHORT, programme_seconds=2.0, min_segment_seconds=0.5,
                     max_segment_seconds=1.0, max_transition_seconds=0.25)
    hours = 8 * 2.0 / 3600
    write_corpus(tmp_path / "one", hours, seed=7, config=config, progress=False)
    write_corpus(tmp_path / "two", hours, seed=7, config=config, progress=False, jobs=2)
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert len(one) == 17 and one.keys() == two.keys()
    assert all(one[name][0] == two[name][0] for name in one)
