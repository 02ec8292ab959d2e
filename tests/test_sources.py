"""Tests of the source providers: availability, determinism, disjoint splits, labels that match
what is audible, the listing, and one-line failures for missing providers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from musicdet.cli import main
from musicdet.configtools import ConfigError
from musicdet.synth import SynthConfig, corpus, programme, sources, write_corpus
from musicdet.synth.config import ROLES
from musicdet.synth.dsp import SAMPLE_RATE, rms
from musicdet.synth.sources import gm, scores
from musicdet.synth.sources.recordings import Recordings

# Recorded material (sources.recordings) is levelled on its active frames and tested, on
# fixtures and the real packages, in test_recordings.py.
ALL = sorted(name for name, source in sources.registry().items()
             if not isinstance(source, Recordings))
GM = ("gm-scores", "gm-arrangements", "gm-solo", "gm-percussion")
SHORT = SynthConfig(programme_seconds=10.0, min_segment_seconds=2.0, max_segment_seconds=4.0,
                    max_transition_seconds=0.5, channel_effects=False)
FLUID = Path(gm.SYSTEM_SOUNDFONTS[0][0])


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path) -> None:
    sources.set_cache_dir(tmp_path / "cache")


def _no_tinysoundfont(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gm, "tinysoundfont_available", lambda: False)


def test_registry_has_every_kind_and_the_pip_providers_are_available() -> None:
    registry = sources.registry()
    assert {"music", "speech", "noise"} <= {s.info.kind for s in registry.values()}
    for name in ("additive", "espeak", "procedural-noise", *GM):
        assert registry[name].available(), name
    assert "TimGM6mb" in registry["gm-arrangements"].info.version or FLUID.is_file()


def test_gm_providers_are_unavailable_without_tinysoundfont(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tinysoundfont(monkeypatch)
    registry = sources.registry()
    assert [name for name in GM if registry[name].available()] == []
    assert registry["additive"].available()


@pytest.mark.parametrize("name", ALL)
def test_draw_is_deterministic_sized_and_levelled(name: str) -> None:
    source = sources.registry()[name]
    first = source.draw(np.random.default_rng(3), 2.0, "train")
    again = source.draw(np.random.default_rng(3), 2.0, "train")
    other = source.draw(np.random.default_rng(4), 2.0, "train")
    assert first.dtype == np.float32 and first.shape == (2 * SAMPLE_RATE,)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert 20 * np.log10(rms(first)) == pytest.approx(-20.0, abs=0.1)


@pytest.mark.parametrize("name", ["gm-arrangements", "gm-scores"])
def test_gm_music_sounds_throughout(name: str) -> None:
    """Band arrangements and scores are audible in every second (no silent stretches)."""
    for seed in range(3):
        audio = sources.registry()[name].draw(np.random.default_rng(seed), 4.0, "validation")
        seconds = audio[: 4 * SAMPLE_RATE].reshape(4, SAMPLE_RATE)
        assert min(20 * np.log10(rms(s) + 1e-12) for s in seconds) > -40.0, seed


def test_split_of_is_stable_and_shares_are_near_the_targets() -> None:
    assert [sources.split_of(f"item{i}") for i in range(3)] == [
        sources.split_of(f"item{i}") for i in range(3)]
    counts = {split: 0 for split in sources.SPLITS}
    for i in range(5000):
        counts[sources.split_of(f"work/{i}")] += 1
    assert counts["train"] / 5000 == pytest.approx(0.8, abs=0.02)
    assert counts["validation"] / 5000 == pytest.approx(0.1, abs=0.015)
    assert counts["test"] / 5000 == pytest.approx(0.1, abs=0.015)


@pytest.mark.parametrize("collection", sorted(scores.COLLECTIONS))
def test_score_splits_partition_every_collection(collection: str) -> None:
    parts = [set(scores.split_works(collection, split)) for split in sources.SPLITS]
    assert all(parts), [len(p) for p in parts]  # every split has works of every collection
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(scores.works(collection))


def test_a_score_draw_uses_only_its_splits_works(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    load = scores.load_parts
    monkeypatch.setattr(scores, "load_parts", lambda identity: used.append(identity) or
                        load(identity))
    source = sources.registry()["gm-scores"]
    for seed in range(6):
        source.draw(np.random.default_rng(seed), 1.0, "validation")
    validation = {w for c in scores.COLLECTIONS for w in scores.split_works(c, "validation")}
    assert used and set(used) <= validation


def test_scores_are_converted_once_and_cached(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    identity = scores.split_works("bach-chorales", "train")[0]
    parts = scores.load_parts(identity)
    assert len(parts) == 4 and all(isinstance(pitch, int) for _, _, pitch in parts[0])
    assert len(list((tmp_path / "cache" / "music21").glob("*.json"))) == 1
    scores._convert.cache_clear()
    monkeypatch.setattr(scores, "_convert", pytest.fail)
    assert scores.load_parts(identity) == json.loads(json.dumps(parts))


def test_best_soundfont_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    better = tmp_path / "FluidR3_GM.sf2"
    better.write_bytes(b"RIFF")
    monkeypatch.setattr(gm, "SYSTEM_SOUNDFONTS", ((str(better), "MIT (test)"),))
    gm.soundfont.cache_clear()
    try:
        assert gm.soundfont() == (better, "MIT (test)")
    finally:
        monkeypatch.undo()
        gm.soundfont.cache_clear()
    path, licence = gm.soundfont()
    assert path == FLUID if FLUID.is_file() else (path.name, licence.split()[0]) == (
        "TimGM6mb.sf2", "GPL-2.0")


@pytest.mark.skipif(not FLUID.is_file(), reason="Debian fluid-soundfont-gm is not installed")
def test_fluidr3_renders() -> None:
    audio = sources.registry()["gm-arrangements"].draw(np.random.default_rng(0), 2.0, "train")
    assert "FluidR3_GM" in sources.registry()["gm-arrangements"].info.version
    assert 20 * np.log10(rms(audio)) == pytest.approx(-20.0, abs=0.1)


def _music_silenced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every music and singing provider draws as usual (same random numbers) but returns
    silence."""
    for source in sources.registry().values():
        if source.info.kind in ("music", "singing"):
            draw = source.draw
            monkeypatch.setattr(source, "draw", lambda rng, s, split, draw=draw:
                                0.0 * draw(rng, s, split))


def _interior_db(audio: np.ndarray, segment: programme.PlannedSegment) -> float:
    """Level away from the transitions (300 ms in, or a quarter of a short stinger's length:
    its transitions are hard cuts)."""
    margin_ms = min(300, (segment.offset_ms - segment.onset_ms) // 4)
    start, end = (segment.onset_ms + margin_ms) * 16, (segment.offset_ms - margin_ms) * 16
    return 20 * np.log10(rms(audio[start:end]) + 1e-12)


# 36: a stinger between talk segments; 28: a cappella singing and a song
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 28, 36])
def test_labels_match_where_the_music_sources_sound(seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Music-only segments (singing included) fall silent when the music and singing sources
    do; no-music ones do not."""
    config = replace(SHORT, hard_case_rate=0.5)
    plan = programme.plan_segments(np.random.default_rng(seed), config,
                                   programme.palette(config))
    audio, _ = programme.generate_programme(seed, config)
    _music_silenced(monkeypatch)
    silenced, _ = programme.generate_programme(seed, config)
    for segment in plan:
        if segment.kind in ("music", "jingle", "stinger", "solo_music", "percussion_music",
                            "song", "a_cappella"):
            assert _interior_db(audio, segment) > -50.0, segment
            assert _interior_db(silenced, segment) < -80.0, segment
        elif segment.label == "no-music" and segment.kind != "room":
            assert _interior_db(silenced, segment) > -50.0, segment


def test_sung_like_sounds_are_no_longer_a_no_music_case() -> None:
    assert set(programme.HARD_KINDS["no-music"]) == {"tonal", "speech_over_tonal"}
    assert {"solo_music", "percussion_music"} <= set(programme.HARD_KINDS["music"])


def test_default_palette_uses_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = sources.registry()
    recorded = {name: weight for name, weight in ROLES["music"].default.items()
                if isinstance(registry[name], Recordings) and registry[name].available()}
    assert set(programme.palette(SynthConfig()).roles["music"]) == {
        "gm-scores", "gm-arrangements", "additive", *recorded}
    _no_tinysoundfont(monkeypatch)
    chosen = programme.palette(SynthConfig())
    assert tuple(dict(chosen.roles[role]) for role in ("music", "solo", "percussion")) == (
        {"additive": 0.15, **recorded}, {"additive-sparse": 0.2}, {"additive-percussion": 0.2})


def test_a_missing_provider_fails_in_one_line(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _no_tinysoundfont(monkeypatch)
    config = SynthConfig(music_sources={"gm-scores": 1.0})
    with pytest.raises(ConfigError, match="music_sources: source 'gm-scores' is not available"):
        write_corpus(tmp_path / "c", 0.001, seed=0, config=config, progress=False)
    assert not (tmp_path / "c").exists()
    (tmp_path / "corpus.yaml").write_text("music_sources: {gm-scores: 1}\n")
    assert main(["synth", "--hours", "0.001", "--out", str(tmp_path / "c"), "--config",
                 str(tmp_path / "corpus.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gm-scores' is not available" in err


def test_unknown_provider_in_a_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"solo_sources\.nope: `a music source"):
        SynthConfig(solo_sources={"nope": 1.0})


def test_list_sources_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--list-sources"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "kind", "available", "version", "licence"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert set(rows) == set(sources.registry())
    assert rows["gm-scores"] == ["music", "yes"] and rows["espeak"] == ["speech", "yes"]
    assert "GPL-2.0" in next(line for line in lines if line.startswith("gm-solo")) or \
        FLUID.is_file()


def test_corpus_records_providers_and_validation_programmes(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    config = replace(SHORT, programme_seconds=2.0, min_segment_seconds=1.0,
                     validation_fraction=0.5)
    write_corpus(tmp_path / "c", 6 * 2.0 / 3600, seed=5, config=config, progress=False)
    manifest = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert {s["name"] for s in manifest["sources"]} >= {"gm-scores", "espeak", "additive"}
    assert all(s["version"] and s["licence"] for s in manifest["sources"])
    expected = [f"prog-{i:04d}" for i in range(6)
                if corpus.programme_split(i, config) == "validation"]
    assert manifest["validation"] == expected == ["prog-0000", "prog-0002", "prog-0004"]
    _no_tinysoundfont(monkeypatch)  # other providers: another corpus identity, regenerated
    assert corpus._identity(5, config) != corpus._read_identity(tmp_path / "c")


def test_a_test_corpus_draws_on_test_material_only() -> None:
    config = SynthConfig(test_corpus=True)
    assert {corpus.programme_split(i, config) for i in range(50)} == {"test"}
    splits = [corpus.programme_split(i, SynthConfig()) for i in range(50)]
    assert [i for i, s in enumerate(splits) if s == "validation"] == [0, 10, 20, 30, 40]
