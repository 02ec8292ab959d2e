"""Guarantees for label files, as `musicdet train --data` users meet them: every bad label file
gives one line naming the file and line, exit status 2 and no model; BOM and Windows line
endings are read; paths in a manifest never move outputs out of --out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from guarantees import assert_one_error_line, run_cli, write_tone

SECONDS = 4.0
GOOD_LABELS = "onset\toffset\tlabel\n0\t2\tmusic\n2\t4\tno-music\n"
TINY_TRAINING = [
    "--set", "model.hidden_size=16", "--set", "training.epochs=1",
    "--set", "training.batch_size=4", "--set", "training.sequences_per_epoch=8",
    "--set", "training.sequence_frames=100", "--set", "data.validation_fraction=0.34",
]


def write_programme(path: Path, seed: int) -> Path:
    """2 s of a tone, then 2 s of noise: music, then no-music."""
    write_tone(path, SECONDS / 2)
    tone = soundfile.read(path, dtype="float32")[0]
    noise = 0.1 * np.random.default_rng(seed).standard_normal(len(tone)).astype(np.float32)
    soundfile.write(path, np.concatenate([tone, noise]), 16000)
    return path


def generic_folder(root: Path, first_labels: bytes) -> Path:
    """a.wav + a.tsv (``first_labels``) beside b and c with good labels."""
    for seed, name in enumerate("abc"):
        write_programme(root / f"{name}.wav", seed)
        (root / f"{name}.tsv").write_text(GOOD_LABELS)
    (root / "a.tsv").write_bytes(first_labels)
    return root


def train_cli(capsys, data: Path, out: Path, *extra: str):
    return run_cli(capsys, "train", "--data", data, "--format", "generic", "--out", out,
                   "--set", f"data.cache_dir={out.parent / 'cache'}", *TINY_TRAINING, *extra)


BAD_LABELS = {
    "offset-before-onset": (b"0\t2\tmusic\n3\t2.5\tno-music\n",
                            "a.tsv: line 2: offset 2.5 s < onset 3.0 s; expected onset"),
    "negative-time": (b"-0.5\t2\tmusic\n", "a.tsv: line 1: negative time (-0.5 s, 2.0 s)"),
    "past-end": (b"0\t4.5\tmusic\n", "a.tsv: line 1: offset 4.5 s is past the end of the audio"),
    "conflicting-overlap": (b"0\t2\tmusic\n1.5\t4\tspeech\n",
                            "a.tsv: line 2: no-music segment 1.5–4.0 s overlaps the music"),
    "unknown-label": (b"0\t2\tjingle\n", "a.tsv: line 1: unknown label 'jingle'; expected one of"),
    "empty-file": (b"", "a.tsv: no labelled segments; expected lines onset offset label"),
    "header-only": (b"onset\toffset\tlabel\n", "a.tsv: no labelled segments"),
    "comma-in-tsv": (b"onset,offset,label\n0,2,music\n",
                     "a.tsv: line 1: expected 3 tab-separated fields onset offset label, got 1"),
    "not-a-number": (b"0\ttwo\tmusic\n", "a.tsv: line 1: offset 'two' is not a number"),
    "not-utf8": ("0\t2\tmúsica\n".encode("latin-1"), "a.tsv: not UTF-8 text"),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_bad_label_file_is_one_line_exit_2_and_no_model(tmp_path, capsys, case):
    labels, message = BAD_LABELS[case]
    data = generic_folder(tmp_path / "data", labels)
    out = tmp_path / "run"
    assert_one_error_line(train_cli(capsys, data, out), data / message)
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()
    assert not (tmp_path / "cache").exists()  # refused before any feature was computed


def test_manifest_with_bom_crlf_and_parent_paths_trains_and_writes_only_in_out(tmp_path, capsys):
    """A DCASE manifest with a BOM, CRLF line endings and ``../`` file names: read as written;
    the run writes under --out and the cache folder only."""
    for seed, name in enumerate(("in/a.wav", "in/b.wav", "elsewhere/c.wav")):
        write_programme(tmp_path / name, seed)
    rows = [f"{name}\t{onset}\t{offset}\t{label}"
            for name in ("a.wav", "b.wav", "../elsewhere/c.wav")
            for onset, offset, label in ((0, 2, "music"), (2, 4, "no-music"))]
    manifest = tmp_path / "in" / "list.tsv"
    manifest.write_bytes("\ufeff".encode() + "\r\n".join(["filename\tonset\toffset\tevent_label",
                                                          *rows, ""]).encode())
    before = set(tmp_path.rglob("*"))
    outcome = train_cli(capsys, manifest, tmp_path / "run")
    assert outcome.status == 0, outcome
    created = set(tmp_path.rglob("*")) - before
    assert created and all(path.is_relative_to(tmp_path / "run")
                           or path.is_relative_to(tmp_path / "cache") for path in created)
    assert (tmp_path / "run" / "model.pt").is_file()


def test_manifest_naming_missing_audio_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "list.csv"
    manifest.write_text("filename,onset,offset,event_label\n../../nowhere/x.wav,0,1,music\n")
    outcome = train_cli(capsys, manifest, tmp_path / "run")
    assert_one_error_line(outcome, f"{manifest}: line 2: audio file '../../nowhere/x.wav' "
                                   "not found")
