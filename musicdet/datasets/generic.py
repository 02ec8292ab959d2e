"""Generic labels: a folder of audio with sidecar label files, or one event-list manifest.

Folder: every audio file ``NAME.wav`` (any format `musicdet.audio.find_audio` lists) has
exactly one label file of the same stem beside it, and every label file has its audio:

- ``NAME.txt``: Audacity labels, ``start<TAB>end<TAB>label``, no header;
- ``NAME.tsv`` / ``NAME.csv``: tab / comma separated, header ``onset offset label`` (what the
  synthetic corpus writes). A header is optional in all three and may name the columns
  ``onset|start``, ``offset|end|stop``, ``label|event_label|class`` in any order.

Manifest: one ``.csv``/``.tsv``/``.txt`` file in the sed_eval / DCASE event-list layout,
``filename onset offset event_label`` separated by tab, semicolon or comma (header optional),
filenames relative to the manifest's folder.

Times are seconds. Label names go through the label map (see `labels.DEFAULT_LABEL_MAP`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..audio import audio_duration, find_audio
from .items import LabelledAudio, make_item
from .labels import (
    MANIFEST_COLUMNS,
    DatasetError,
    LabelRow,
    dataset_error,
    merge_label_map,
    read_label_rows,
    sniff_delimiter,
)

SIDECAR_DELIMITERS = {".txt": "\t", ".tsv": "\t", ".csv": ","}


def read_generic(
    path: str | Path, label_map: Mapping[str, str] | None = None
) -> list[LabelledAudio]:
    """Read a folder of audio + sidecar label files, or a manifest file; sorted by audio path."""
    path = Path(path)
    names = merge_label_map(label_map)
    if path.is_dir():
        return _read_folder(path, names)
    if path.is_file() and path.suffix.lower() in SIDECAR_DELIMITERS:
        return _read_manifest(path, names)
    raise DatasetError(f"{path}: not a folder nor a manifest file; expected a folder of audio "
                       "with sidecar label files, or a .csv/.tsv/.txt event list")


def pair_files(
    audio_files: Sequence[Path], label_files: Sequence[Path], stem: Callable[[Path], str],
    expected: str, same_folder: bool = True,
) -> list[tuple[Path, Path]]:
    """Match audio files with label files by stem (``stem`` of a label file), sorted by audio.

    Every audio file needs exactly one label file and every label file its audio; with
    ``same_folder`` they must also share a folder. ``expected`` names the label file an audio
    file should have, for the error message.
    """
    audio_by_key = _index(audio_files, lambda p: p.stem, same_folder, "audio files")
    labels_by_key = _index(label_files, stem, same_folder, "label files")
    for key, label_file in labels_by_key.items():
        if key not in audio_by_key:
            raise DatasetError(f"{label_file}: no audio file with the stem {stem(label_file)!r}"
                               f"{' beside it' if same_folder else ''}; expected each label "
                               "file to have its audio")
    for key, audio in audio_by_key.items():
        if key not in labels_by_key:
            raise DatasetError(f"{audio}: no label file; expected {expected}")
    return sorted((audio, labels_by_key[key]) for key, audio in audio_by_key.items())


def _index(
    files: Sequence[Path], stem: Callable[[Path], str], same_folder: bool, what: str
) -> dict[tuple[Path | None, str], Path]:
    """Files by (folder or None, stem); two files with one key are an error."""
    index: dict[tuple[Path | None, str], Path] = {}
    for path in files:
        other = index.setdefault((path.parent if same_folder else None, stem(path)), path)
        if other is not path:
            raise DatasetError(f"{path}: {what} {str(other)!r} and {path.name!r} share the stem "
                               f"{stem(path)!r}; expected one per stem")
    return index


def _read_folder(folder: Path, label_map: Mapping[str, bool]) -> list[LabelledAudio]:
    label_files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SIDECAR_DELIMITERS
                         and p.is_file() and not p.name.startswith("."))
    pairs = pair_files(find_audio([folder]), label_files, lambda p: p.stem,
                       "NAME.tsv, NAME.csv or NAME.txt beside it, with the audio's stem")
    return [
        make_item(audio, labels, read_label_rows(labels, SIDECAR_DELIMITERS[labels.suffix.lower()]),
                  label_map, audio_duration(audio))
        for audio, labels in pairs
    ]


def _read_manifest(manifest: Path, label_map: Mapping[str, bool]) -> list[LabelledAudio]:
    rows = read_label_rows(manifest, sniff_delimiter(manifest, MANIFEST_COLUMNS),
                           MANIFEST_COLUMNS)
    if not rows:
        raise dataset_error(manifest, "", "no labelled segments; expected lines filename onset "
                                          "offset event_label")
    by_file: dict[str, list[LabelRow]] = {}
    for row in rows:
        by_file.setdefault(row.filename, []).append(row)
    items = []
    for filename, file_rows in by_file.items():
        audio = manifest.parent / filename
        if not audio.is_file():
            raise dataset_error(manifest, file_rows[0].where, f"audio file {filename!r} not found "
                                f"at {audio}; expected a path relative to the manifest's folder")
        items.append(make_item(audio, manifest, file_rows, label_map, audio_duration(audio)))
    return sorted(items, key=lambda item: item.audio)
