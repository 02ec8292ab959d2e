"""Frame labels of training / evaluation examples follow the features' own frame grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from musicdet.config import DataConfig
from musicdet.datasets import read_dataset
from musicdet.examples import load_example, load_examples
from musicdet.features import FeatureCache, FeatureConfig

RATE = 16000


def labelled_file(folder: Path, seconds: float = 10.0, music_until: float = 5.0) -> Path:
    """``a.wav`` (quiet noise) labelled music over [0, music_until) s, no-music after."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).normal(0, 0.05, round(seconds * RATE)).astype(np.float32)
    soundfile.write(folder / "a.wav", noise, RATE)
    (folder / "a.tsv").write_text(
        f"onset\toffset\tlabel\n0\t{music_until}\tmusic\n{music_until}\t{seconds}\tno-music\n"
    )
    return folder


@pytest.mark.parametrize(("hop", "frames", "music"), [(160, 1001, 500), (320, 501, 250)])
def test_labels_are_on_the_features_grid(tmp_path: Path, hop: int, frames: int,
                                         music: int) -> None:
    """Frame t is centred at t · hop / 16000 s: music over 0–5 s covers 5 s / hop frames."""
    [item] = read_dataset("generic", labelled_file(tmp_path / "data"))
    features = FeatureConfig(hop_length=hop)
    example = load_example(item, FeatureCache(tmp_path / "cache"), features)
    assert example.features.shape == (frames, 140)
    assert example.mask.all() and len(example.labels) == frames
    assert int(example.labels.sum()) == music
    assert example.labels[:music].all() and not example.labels[music:].any()


def test_load_examples_labels_on_the_configured_hop(tmp_path: Path) -> None:
    data = DataConfig(format="generic", path=str(labelled_file(tmp_path / "data")),
                      cache_dir=str(tmp_path / "cache"))
    [example] = load_examples(data, FeatureConfig(hop_length=320), progress=False)
    assert (len(example.labels), int(example.labels.sum())) == (501, 250)


def test_corpus_settings_in_the_run_config_make_their_own_corpus(tmp_path: Path) -> None:
    import json

    from musicdet.examples import labelled_audio, synth_corpus_dir
    from musicdet.synth import SynthConfig

    settings = SynthConfig(programme_seconds=4.0, min_segment_seconds=1.0,
                           max_segment_seconds=2.0, max_transition_seconds=0.5,
                           noise_sources={"procedural-noise": 1.0})
    custom = DataConfig(synth_hours=8 / 3600, synth=settings, validation_fraction=0.5,
                        cache_dir=str(tmp_path))
    default = DataConfig(synth_hours=8 / 3600, cache_dir=str(tmp_path))
    assert synth_corpus_dir(custom) != synth_corpus_dir(default)
    assert len(labelled_audio(custom, progress=False)) == 2
    manifest = json.loads((synth_corpus_dir(custom) / "corpus.json").read_text())
    assert manifest["config"]["programme_seconds"] == 4.0
    assert manifest["config"]["validation_fraction"] == 0.5  # the data section's, not synth's
    assert manifest["validation"] == ["prog-0000"]
