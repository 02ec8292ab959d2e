"""Dataset readers: labelled audio files → validated music / no-music segments → frame labels.

    items = read_dataset("generic", "corpus/", label_map={"jingle": "music"})
    labels, mask = frame_labels(items[0], n_frames, features.hop_seconds)  # float32 0/1, bool

Formats: "generic" (sidecar label files or a DCASE-style manifest, `generic`), "openbmat"
(options annotator, mapping, folds, splits_file; `openbmat`), "seyerlehner" (`seyerlehner`).
Every reader checks each file fully and raises `DatasetError` (a ValueError) with one line
naming the file, the line and what was expected.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..configtools import ConfigError
from .generic import read_generic
from .items import LabelledAudio, frame_labels, summarize
from .labels import DEFAULT_LABEL_MAP, MUSIC, NO_MUSIC, DatasetError, merge_label_map
from .openbmat import read_openbmat
from .seyerlehner import read_seyerlehner

__all__ = [
    "DEFAULT_LABEL_MAP",
    "FORMATS",
    "MUSIC",
    "NO_MUSIC",
    "DatasetError",
    "LabelledAudio",
    "frame_labels",
    "merge_label_map",
    "read_dataset",
    "summarize",
]

READERS: Mapping[str, Callable[..., list[LabelledAudio]]] = {
    "generic": read_generic,
    "openbmat": read_openbmat,
    "seyerlehner": read_seyerlehner,
}
FORMATS = tuple(READERS)


def read_dataset(
    format: str, path: str | Path, label_map: Mapping[str, str] | None = None, **options: Any
) -> list[LabelledAudio]:
    """Read the dataset at ``path`` in ``format``; ``label_map`` adds or overrides label names
    (name → "music" | "no-music"); ``options`` go to the format's reader."""
    if format not in READERS:
        raise ConfigError("format", f"expected one of {', '.join(FORMATS)}, got {format!r}")
    reader = READERS[format]
    accepted = [name for name, parameter in inspect.signature(reader).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    for name in options:
        if name not in accepted:
            raise ConfigError(name, f"unknown option for format {format!r}; expected one of "
                                    f"{', '.join(accepted) or 'none'}")
    return reader(path, label_map, **options)
