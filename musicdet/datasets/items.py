"""Labelled audio files: validated music / no-music segments and their frame labels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import MUSIC, NO_MUSIC, LabelRow, dataset_error, normalise_label

END_TOLERANCE = 0.01  # seconds a segment may end past its audio (label times round to 10 ms)


@dataclass(frozen=True)
class LabelledAudio:
    """One audio file and its labelled segments.

    ``segments``: sorted, non-overlapping ``(onset s, offset s, is_music)``, offsets at most
    ``duration``; time not covered by any segment is unlabelled (masked out in training).
    """

    audio: Path
    segments: list[tuple[float, float, bool]]
    duration: float  # seconds

    @property
    def labelled_seconds(self) -> float:
        return sum(offset - onset for onset, offset, _ in self.segments)

    @property
    def music_seconds(self) -> float:
        return sum(offset - onset for onset, offset, is_music in self.segments if is_music)


def make_item(
    audio: Path, label_file: Path, rows: Sequence[LabelRow], label_map: Mapping[str, bool],
    duration: float,
) -> LabelledAudio:
    """Validate ``rows`` read from ``label_file`` against the audio's ``duration`` (seconds).

    Rejects an empty file, negative times, offset < onset, segments ending more than
    `END_TOLERANCE` past the audio, unknown labels, and overlapping segments with different
    labels; merges overlapping or touching segments with the same label.
    """
    if not rows:
        raise dataset_error(label_file, "", "no labelled segments; expected lines onset offset "
                                            "label")
    checked = sorted((_check(row, label_file, label_map, duration) for row in rows),
                     key=lambda segment: segment[:2])
    return LabelledAudio(audio, _merge(checked, label_file), duration)


def frame_labels(
    item: LabelledAudio, n_frames: int, hop_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (float32 0/1) and mask (bool) of ``n_frames`` frames centred at t·hop_seconds.

    ``hop_seconds`` is that of the features labelled (`FeatureConfig.hop_seconds`).

    A frame takes the label of the segment covering its centre (onset ≤ centre < offset; a
    segment that reaches the end of the audio also covers a centre on the end). Frames no
    segment covers are masked out: ``int((~mask).sum())`` counts them.
    """
    frames_in_audio = math.floor(item.duration / hop_seconds + 1e-6) + 1
    if not 0 <= n_frames <= frames_in_audio + 1:
        raise ValueError(f"{item.audio}: n_frames={n_frames} frames of {hop_seconds} s do not fit "
                         f"the audio's {item.duration:.3f} s; expected 0 ≤ n_frames ≤ "
                         f"{frames_in_audio + 1}")
    labels = np.zeros(n_frames, dtype=np.float32)
    mask = np.zeros(n_frames, dtype=bool)
    for onset, offset, is_music in item.segments:
        first = _first_frame_from(onset, hop_seconds)
        stop = n_frames if offset >= item.duration else _first_frame_from(offset, hop_seconds)
        labels[first:stop] = float(is_music)
        mask[first:stop] = True
    return labels, mask


def summarize(items: Iterable[LabelledAudio]) -> dict[str, float]:
    """Totals for a report: files, seconds, labelled / music / unlabelled seconds."""
    items = list(items)
    seconds = sum(item.duration for item in items)
    labelled = sum(item.labelled_seconds for item in items)
    return {
        "files": len(items),
        "seconds": seconds,
        "labelled_seconds": labelled,
        "music_seconds": sum(item.music_seconds for item in items),
        "unlabelled_seconds": seconds - labelled,
    }


def _first_frame_from(time: float, hop_seconds: float) -> int:
    """Index of the first frame whose centre is at or after ``time`` (to 1e-6 frame)."""
    return max(0, math.ceil(round(time / hop_seconds, 6)))


def _check(
    row: LabelRow, label_file: Path, label_map: Mapping[str, bool], duration: float
) -> tuple[float, float, bool, str]:
    def fail(message: str) -> Exception:
        return dataset_error(label_file, row.where, message)

    if row.onset < 0 or row.offset < 0:
        raise fail(f"negative time ({row.onset} s, {row.offset} s); expected seconds ≥ 0")
    if row.offset < row.onset:
        raise fail(f"offset {row.offset} s < onset {row.onset} s; expected onset ≤ offset")
    if row.offset > duration + END_TOLERANCE:
        raise fail(f"offset {row.offset} s is past the end of the audio ({duration:.3f} s) by "
                   f"more than {END_TOLERANCE * 1000:.0f} ms")
    name = normalise_label(row.label)
    if name not in label_map:
        known = ", ".join(sorted(label_map))
        raise fail(f"unknown label {row.label!r}; expected one of {known}, or map it with "
                   f"label_map {{{row.label!r}: {MUSIC!r} | {NO_MUSIC!r}}}")
    return row.onset, min(row.offset, duration), label_map[name], row.where


def _merge(
    segments: Sequence[tuple[float, float, bool, str]], label_file: Path
) -> list[tuple[float, float, bool]]:
    merged: list[tuple[float, float, bool]] = []
    last_where = ""
    for onset, offset, is_music, where in segments:
        if offset == onset:
            continue  # covers no frame centre
        if merged and onset <= merged[-1][1] and is_music == merged[-1][2]:
            merged[-1] = (merged[-1][0], max(offset, merged[-1][1]), is_music)
        elif merged and onset < merged[-1][1]:
            raise dataset_error(label_file, where, f"{_name(is_music)} segment {onset}–{offset} s "
                                f"overlaps the {_name(merged[-1][2])} segment ending at "
                                f"{merged[-1][1]} s ({last_where}); expected segments with "
                                "different labels not to overlap")
        else:
            merged.append((onset, offset, is_music))
        last_where = where
    return merged


def _name(is_music: bool) -> str:
    return MUSIC if is_music else NO_MUSIC
