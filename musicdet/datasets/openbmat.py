"""OpenBMAT (Meléndez-Catalán et al., TISMIR 2019): 1647 one-minute TV excerpts, 3 annotators.

Layout read (the audio and annotation folders as used by inaVAMOS's benchmark reader,
ina-foss/inaVAMOS ``benchmarks/datasets.py``; the rest is an assumption, checked strictly)::

    ROOT/audio/STEM.wav
    ROOT/annotations/tsv/MD_mapping/ANNOTATOR/STEM.tsv   music detection: music, no-music
    ROOT/annotations/tsv/LE_mapping/ANNOTATOR/STEM.tsv   loudness: fg-music, bg-music, no-music
    ROOT/splits.csv  (or ROOT/annotations/splits.csv)    header file_name,split; folds 0-9

Annotation rows are ``start<TAB>end<TAB>label`` in seconds (header optional). Annotators are
the folders under the mapping folder in sorted order; the default is the first, as in the
paper (Gimeno et al. 2020). Assumptions: STEM in ``splits.csv`` may carry the ``.wav`` or
``.tsv`` suffix; every annotated file is listed there. Anything else is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..audio import audio_duration, find_audio
from ..configtools import ConfigError
from .generic import pair_files
from .items import LabelledAudio, make_item
from .labels import DatasetError, dataset_error, merge_label_map, read_label_rows, read_text_lines

MAPPINGS = ("MD", "LE")  # music detection, loudness estimation
FOLDS = range(10)
SPLITS_CANDIDATES = ("splits.csv", "annotations/splits.csv")


def read_openbmat(
    path: str | Path,
    label_map: Mapping[str, str] | None = None,
    *,
    annotator: int | str = 1,
    mapping: str = "MD",
    folds: Sequence[int] | None = None,
    splits_file: str | Path | None = None,
) -> list[LabelledAudio]:
    """Read OpenBMAT under ``path``, sorted by audio path.

    ``annotator``: 1-based position among the annotator folders, or a folder name.
    ``mapping``: "MD" (music / no-music) or "LE" (fg-music / bg-music / no-music).
    ``folds``: keep only files of these folds of ``splits.csv`` (None: every file).
    ``splits_file``: the splits CSV, when not at ROOT/splits.csv or ROOT/annotations/.
    """
    root = Path(path)
    if mapping not in MAPPINGS:
        raise ConfigError("mapping", f"expected one of {', '.join(MAPPINGS)}, got {mapping!r}")
    annotator_dir = _annotator_dir(_folder(root / "annotations" / "tsv" / f"{mapping}_mapping"),
                                   annotator)
    pairs = pair_files(find_audio([_folder(root / "audio")]), sorted(annotator_dir.glob("*.tsv")),
                       lambda p: p.stem, f"an annotation STEM.tsv in {annotator_dir}",
                       same_folder=False)
    if folds is not None:
        annotated = [labels for _, labels in pairs]
        kept = set(_fold_files(_splits_path(root, splits_file), annotated, folds))
        pairs = [(audio, labels) for audio, labels in pairs if labels.stem in kept]
    names = merge_label_map(label_map)
    return [make_item(audio, labels, read_label_rows(labels, "\t"), names, audio_duration(audio))
            for audio, labels in pairs]


def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found; expected the OpenBMAT layout "
                           "ROOT/audio and ROOT/annotations/tsv/{MD,LE}_mapping/ANNOTATOR")
    return path


def _annotator_dir(mapping_dir: Path, annotator: int | str) -> Path:
    annotators = sorted(p for p in mapping_dir.iterdir() if p.is_dir())
    names = ", ".join(p.name for p in annotators) or "none"
    if isinstance(annotator, int) and not isinstance(annotator, bool):
        if 1 <= annotator <= len(annotators):
            return annotators[annotator - 1]
    else:
        for folder in annotators:
            if folder.name == annotator:
                return folder
    raise ConfigError("annotator", f"expected a position 1..{len(annotators)} or a name among "
                                   f"the annotator folders of {mapping_dir} ({names}), "
                                   f"got {annotator!r}")


def _splits_path(root: Path, splits_file: str | Path | None) -> Path:
    candidates = [Path(splits_file)] if splits_file else [root / c for c in SPLITS_CANDIDATES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(map(str, candidates))
    raise DatasetError(f"{tried}: splits file not found; expected a CSV file_name,split to "
                       "select folds (or give its path as splits_file)")


def _fold_files(splits: Path, label_files: Sequence[Path], folds: Sequence[int]) -> list[str]:
    """Stems of ``label_files`` whose fold in ``splits`` is among ``folds``."""
    for fold in folds:
        if fold not in FOLDS:
            raise ConfigError("folds", f"expected folds among 0..9, got {list(folds)!r}")
    fold_of = _read_splits(splits)
    for labels in label_files:
        if labels.stem not in fold_of:
            raise dataset_error(splits, "", f"no fold for {labels.stem!r} ({labels}); expected "
                                            "every annotated file to be listed")
    return [labels.stem for labels in label_files if fold_of[labels.stem] in folds]


def _read_splits(splits: Path) -> dict[str, int]:
    """STEM → fold from a CSV with header ``file_name,split``."""
    lines = [(n, line) for n, line in enumerate(read_text_lines(splits), 1) if line.strip()]
    if not lines or [f.strip().lower() for f in lines[0][1].split(",")] != ["file_name", "split"]:
        raise dataset_error(splits, "line 1", f"expected the header file_name,split, got "
                                              f"{lines[0][1] if lines else ''!r}")
    fold_of: dict[str, int] = {}
    for number, line in lines[1:]:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) not in FOLDS:
            raise dataset_error(splits, f"line {number}", "expected file_name,split with split "
                                                          f"0..9, got {line!r}")
        stem = fields[0].removesuffix(".wav").removesuffix(".tsv")
        if stem in fold_of:
            raise dataset_error(splits, f"line {number}", f"{stem!r} listed twice; expected one "
                                                          "fold per file")
        fold_of[stem] = int(fields[1])
    return fold_of
