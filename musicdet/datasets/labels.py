"""Label names and label files: the label map, and rows of ``onset offset label`` read from text.

Every reader turns its files into `LabelRow`s with this module, so one set of rules holds
everywhere: UTF-8 with or without BOM, any line ending, blank lines skipped, an optional
header row (recognised by its column names), times in seconds, and one-line errors that
name the file and the line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..configtools import ConfigError

MUSIC = "music"
NO_MUSIC = "no-music"

DEFAULT_LABEL_MAP: Mapping[str, str] = MappingProxyType(
    {
        "music": MUSIC,
        "fg-music": MUSIC,
        "bg-music": MUSIC,
        "m": MUSIC,
        "no-music": NO_MUSIC,
        "speech": NO_MUSIC,
        "noise": NO_MUSIC,
        "s": NO_MUSIC,
        "silence": NO_MUSIC,
    }
)

# Accepted header names of each column (compared in lower case).
COLUMN_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "filename": ("filename", "file", "file_name"),
        "onset": ("onset", "start"),
        "offset": ("offset", "end", "stop"),
        "label": ("label", "event_label", "class"),
    }
)
LABEL_COLUMNS = ("onset", "offset", "label")
MANIFEST_COLUMNS = ("filename", "onset", "offset", "label")

_DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", None: "whitespace"}


class DatasetError(ValueError):
    """A dataset file breaks a rule; ``str()`` is one line ``FILE: [line N: ]problem; expected``."""


def dataset_error(path: str | Path, where: str, message: str) -> DatasetError:
    """`DatasetError` for ``path`` at ``where`` ("line 3", "frame 12", or "" for the whole file)."""
    return DatasetError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


@dataclass(frozen=True)
class LabelRow:
    """One annotated segment as written in a file: times in seconds, the raw label name."""

    where: str  # "line 3": used in error messages
    onset: float
    offset: float
    label: str
    filename: str = ""  # manifest rows only


def merge_label_map(label_map: Mapping[str, str] | None = None) -> dict[str, bool]:
    """`DEFAULT_LABEL_MAP` updated with ``label_map`` (name → "music" | "no-music") → is_music.

    Names are matched without case and surrounding blanks; user entries override defaults.
    """
    merged = {name: target == MUSIC for name, target in DEFAULT_LABEL_MAP.items()}
    for name, target in (label_map or {}).items():
        if target not in (MUSIC, NO_MUSIC):
            raise ConfigError(f"label_map.{name}", f"expected {MUSIC!r} or {NO_MUSIC!r}, "
                                                   f"got {target!r}")
        merged[normalise_label(name)] = target == MUSIC
    return merged


def normalise_label(name: str) -> str:
    """The form in which label names are compared: stripped, lower case."""
    return name.strip().lower()


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (BOM and CR/CRLF line endings removed)."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise dataset_error(path, "", f"not UTF-8 text ({error.reason} at byte {error.start}); "
                                      "expected a UTF-8 label file") from None
    except OSError as error:
        raise dataset_error(path, "", f"cannot read: {error.strerror or error}") from None


def read_label_rows(
    path: Path, delimiter: str | None, columns: Sequence[str] = LABEL_COLUMNS
) -> list[LabelRow]:
    """Rows of a delimited label file; ``delimiter`` None splits on any whitespace.

    Without a header the fields are ``columns`` in that order; a header row naming them (see
    `COLUMN_NAMES`) may reorder them and add columns, which are ignored. Blank lines and the
    frequency lines of Audacity spectral labels (starting with a backslash) are skipped.
    """
    numbered = [(n, line) for n, line in enumerate(read_text_lines(path), 1)
                if line.strip() and not line.startswith("\\")]  # Audacity: "\\ f0 f1" lines
    split = [(n, _split(line, delimiter)) for n, line in numbered]
    if split and _is_header(split[0][1]):
        positions = _header_positions(path, *split[0], columns, delimiter)
        width, split = len(split[0][1]), split[1:]
    else:
        positions = {name: i for i, name in enumerate(columns)}
        width = len(columns)
    return [_row(path, n, fields, positions, width, delimiter) for n, fields in split]


def sniff_delimiter(path: Path, columns: Sequence[str]) -> str:
    """The first of tab, semicolon, comma that splits the first line into ``len(columns)`` or
    more fields."""
    lines = [line for line in read_text_lines(path) if line.strip()]
    if not lines:
        raise dataset_error(path, "", f"empty; expected lines {' '.join(columns)}")
    for delimiter in ("\t", ";", ","):
        if len(_split(lines[0], delimiter)) >= len(columns):
            return delimiter
    raise dataset_error(path, "line 1", f"expected {len(columns)} fields {' '.join(columns)} "
                                        f"separated by tab, semicolon or comma, got {lines[0]!r}")


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    return [field.strip() for field in next(csv.reader([line], delimiter=delimiter,
                                                       quoting=quoting))]


def _is_header(fields: Sequence[str]) -> bool:
    """A header names the onset column and holds no number."""
    names = {normalise_label(field) for field in fields}
    return bool(names & set(COLUMN_NAMES["onset"])) and not any(map(_is_number, fields))


def _header_positions(
    path: Path, number: int, header: Sequence[str], columns: Sequence[str], delimiter: str | None
) -> dict[str, int]:
    names = [normalise_label(field) for field in header]
    positions = {}
    for column in columns:
        found = [i for i, name in enumerate(names) if name in COLUMN_NAMES[column]]
        if len(found) != 1:
            problem = "lacks" if not found else "repeats"
            raise dataset_error(path, f"line {number}", f"header {problem} column {column!r} "
                                f"({'/'.join(COLUMN_NAMES[column])}); expected "
                                f"{_DELIMITER_NAMES[delimiter]}-separated columns "
                                f"{', '.join(columns)}, got {header!r}")
        positions[column] = found[0]
    return positions


def _row(
    path: Path,
    number: int,
    fields: Sequence[str],
    positions: Mapping[str, int],
    width: int,
    delimiter: str | None,
) -> LabelRow:
    where = f"line {number}"
    if len(fields) != width:
        names = " ".join(positions) if width == len(positions) else "as in the header"
        raise dataset_error(path, where, f"expected {width} {_DELIMITER_NAMES[delimiter]}-"
                                         f"separated fields {names}, got {len(fields)}: "
                                         f"{fields!r}")
    return LabelRow(
        where=where,
        onset=_seconds(path, where, "onset", fields[positions["onset"]]),
        offset=_seconds(path, where, "offset", fields[positions["offset"]]),
        label=fields[positions["label"]],
        filename=fields[positions["filename"]] if "filename" in positions else "",
    )


def _seconds(path: Path, where: str, column: str, text: str) -> float:
    if not _is_number(text):
        raise dataset_error(path, where, f"{column} {text!r} is not a number; expected a finite "
                                         "time in seconds")
    return float(text)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
