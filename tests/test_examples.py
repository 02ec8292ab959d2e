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
