"""Seyerlehner et al. (DAFx 2007) TV music/speech set: ``*.mp3`` beside ``*.label`` files.

No format description is published. The one public reader found (ina-foss/inaVAMOS,
``benchmarks/datasets.py``) reads ``NAME.wav.ref.label`` as MATLAB files holding ``fs``
(frames per second, 100) and ``data`` (one value per frame: 0 speech, 1 music). This reader
accepts that, and also a text variant: lines ``start end label`` in seconds separated by
whitespace, labels through the label map. A label file pairs with the audio of the same stem
in its folder once ``.label``, then ``.ref``, then ``.wav`` / ``.mp3`` are removed from its
name. Anything else (other MATLAB variables or values, a MATLAB v7.3 file) is an error naming
the file and the line or frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.io

from ..audio import audio_duration, find_audio
from .generic import pair_files
from .items import LabelledAudio, make_item
from .labels import (
    MUSIC,
    NO_MUSIC,
    DatasetError,
    LabelRow,
    dataset_error,
    merge_label_map,
    read_label_rows,
)

MATLAB_MAGIC = b"MATLAB"  # the text header of MATLAB 5 (and 7.3) MAT-files
FRAME_LABELS = {0: NO_MUSIC, 1: MUSIC}


def read_seyerlehner(
    path: str | Path, label_map: Mapping[str, str] | None = None
) -> list[LabelledAudio]:
    """Read the audio + ``.label`` pairs under folder ``path``, sorted by audio path."""
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; expected a folder of NAME.mp3 beside "
                           "NAME.label (or NAME.wav.ref.label)")
    label_files = sorted(p for p in folder.rglob("*.label") if p.is_file())
    pairs = pair_files(find_audio([folder]), label_files, label_stem,
                       "NAME.label or NAME.wav.ref.label beside it")
    names = merge_label_map(label_map)
    items = []
    for audio, labels in pairs:
        if _is_matlab(labels):
            rows, row_names = _matlab_rows(labels), {MUSIC: True, NO_MUSIC: False}
        else:
            rows, row_names = read_label_rows(labels, None), names
        items.append(make_item(audio, labels, rows, row_names, audio_duration(audio)))
    return items


def label_stem(label_file: Path) -> str:
    """The audio stem a label file belongs to: ``a b.wav.ref.label`` → ``a b``."""
    stem = label_file.name.removesuffix(".label").removesuffix(".ref")
    return stem.removesuffix(".wav").removesuffix(".mp3")


def _is_matlab(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MATLAB_MAGIC)) == MATLAB_MAGIC


def _matlab_rows(label_file: Path) -> list[LabelRow]:
    """One row per run of equal frame labels in a MATLAB label file (``where``: first frame)."""
    try:
        contents = scipy.io.loadmat(label_file)
    except (ValueError, NotImplementedError, TypeError, OSError) as error:
        raise dataset_error(label_file, "", f"unreadable MATLAB file ({error}); expected a "
                                            "MATLAB 5 file with variables fs and data") from None
    if "fs" not in contents or "data" not in contents:
        found = ", ".join(k for k in contents if not k.startswith("__"))
        raise dataset_error(label_file, "", f"MATLAB variables {found or 'none'}; expected fs "
                                            "and data")
    fs = np.ravel(contents["fs"]).astype(float)
    if fs.size != 1 or not np.isfinite(fs[0]) or fs[0] <= 0:
        raise dataset_error(label_file, "", f"fs={fs.tolist()}; expected one positive "
                                            "frame rate in Hz")
    data = np.ravel(contents["data"])
    bad = np.flatnonzero(~np.isin(data, list(FRAME_LABELS)))
    if bad.size:
        raise dataset_error(label_file, f"frame {bad[0]}", f"value {data[bad[0]].item()!r}; "
                                                           "expected 0 (speech) or 1 (music)")
    if not data.size:
        return []
    starts = np.flatnonzero(np.diff(data, prepend=np.nan))
    stops = np.append(starts[1:], data.size)
    return [LabelRow(f"frame {start}", start / fs[0], stop / fs[0], FRAME_LABELS[int(data[start])])
            for start, stop in zip(starts, stops, strict=True)]
