"""Labelled audio → examples (features, frame labels, mask), features read through the cache."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .config import DataConfig
from .configtools import ConfigError, to_dict
from .datasets import LabelledAudio, frame_labels, read_dataset
from .features import FeatureCache, FeatureConfig
from .sequences import Example
from .synth import SynthConfig, write_corpus
from .synth.corpus import MANIFEST


def synth_corpus_dir(data: DataConfig) -> Path:
    """Where the embedded corpus for ``data`` lives (``data.path`` or a folder under the cache,
    named by hours, seed and, for non-default corpus settings, a hash of them)."""
    if data.path is not None:
        return Path(data.path)
    name = f"synth-{data.synth_hours:g}h-seed{data.synth_seed}"
    if data.synth is not None:
        settings = json.dumps(to_dict(synth_config(data)), sort_keys=True)
        name += "-" + hashlib.sha256(settings.encode("utf-8")).hexdigest()[:10]
    return Path(data.cache_dir) / "corpus" / name


def synth_config(data: DataConfig) -> SynthConfig:
    """The corpus settings of ``data`` (``data.synth`` or the defaults) with its validation
    fraction."""
    return replace(data.synth or SynthConfig(), validation_fraction=data.validation_fraction)


def labelled_audio(data: DataConfig, progress: bool = True) -> list[LabelledAudio]:
    """The labelled files ``data`` names; the embedded corpus is synthesised on first use."""
    if data.format == "synth":
        root = synth_corpus_dir(data)
        write_corpus(root, hours=data.synth_hours, seed=data.synth_seed,
                     config=synth_config(data), progress=progress, jobs=os.cpu_count() or 1)
        return read_dataset("generic", root)
    options = {}
    if data.format == "openbmat":
        options = {"annotator": data.annotator, "folds": data.folds}
    return read_dataset(data.format, data.path, label_map=data.label_map or None, **options)


def corpus_manifest(data: DataConfig) -> dict[str, Any] | None:
    """The embedded corpus's corpus.json: seed, hours, providers and the programmes made from
    validation material (the files training holds out). None for other formats."""
    if data.format != "synth":
        return None
    return json.loads((synth_corpus_dir(data) / MANIFEST).read_text(encoding="utf-8"))


def load_examples(
    data: DataConfig, features: FeatureConfig, progress: bool = True,
    cache_dir: str | Path | None = None, mmap: bool = False,
) -> list[Example]:
    """Every labelled file of ``data`` as an `Example` with raw (unnormalised) features, from
    the feature cache at ``cache_dir`` (default ``data.cache_dir``); ``mmap``: features are
    read-only memory maps of the cache files (see `FeatureCache.load`)."""
    cache = FeatureCache(cache_dir or data.cache_dir)
    items = labelled_audio(data, progress)
    return [
        load_example(item, cache, features, mmap)
        for item in tqdm(items, desc="features", unit="file", disable=not progress)
    ]


def load_example(item: LabelledAudio, cache: FeatureCache, features: FeatureConfig,
                 mmap: bool = False) -> Example:
    """One labelled file's raw features (through ``cache``) with the labels and mask of those
    frames, on the features' own grid."""
    matrix = cache.load(item.audio, features, mmap)
    labels, mask = frame_labels(item, len(matrix), features.hop_seconds)
    return Example(item.audio.stem, matrix, labels, mask)


def validation_examples(
    data: DataConfig, features: FeatureConfig, progress: bool = True,
    cache_dir: str | Path | None = None, mmap: bool = False,
) -> list[Example]:
    """The files of a run's ``validation:`` section, raw features through the same cache
    (``cache_dir`` and ``mmap`` as in `load_examples`).

    For synth, the programmes of that corpus made from validation material (corpus.json's
    validation list); for the other formats every file. Raises `ConfigError` naming
    ``validation`` for a missing path or a set without labelled frames of both classes.
    """
    if data.format != "synth" and not Path(data.path or "").exists():
        raise ConfigError("validation.path", f"{data.path} does not exist; expected the "
                                             f"validation set's {data.format} dataset")
    examples = load_examples(data, features, progress, cache_dir, mmap)
    manifest = corpus_manifest(data)
    if manifest is not None:
        examples = [e for e in examples if e.name in set(manifest["validation"])]
    where = synth_corpus_dir(data) if data.format == "synth" else data.path
    for value, name in ((1.0, "music"), (0.0, "no-music")):
        if not any(np.any(e.labels[e.mask] == value) for e in examples):
            raise ConfigError("validation", f"no frames labelled {name} in {where}; the "
                                            "validation set needs both classes")
    return examples
