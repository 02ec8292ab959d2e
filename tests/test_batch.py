"""Archive runs of detect: parallel workers, mirrored outputs, resuming, bad files, summary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_detect import save_tiny_model, write_wav

from musicdet.batch import RUN_FILE, SUMMARY_FILE, detect, output_stems, plan
from musicdet.cli import main
from musicdet.detect import Smoothing

GOOD = ("prog.wav", "sub/a.wav", "sub/deeper/b.flac")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


def good_files(root: Path, seconds: float | None = None) -> Path:
    """The `GOOD` files below ``root``, each ``seconds`` long (default 1.5, 2.5, 3.5 s)."""
    for seed, name in enumerate(GOOD):
        write_wav(root / name, 1.5 + seed if seconds is None else seconds, seed=seed)
    return root


def archive(root: Path) -> Path:
    """Three short good files in nested folders, one undecodable and one empty file."""
    good_files(root)
    (root / "sub" / "bad.wav").write_bytes(b"RIFF not really a wave file")
    (root / "empty.mp3").write_bytes(b"")
    return root


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file below ``out`` (run record and summary left out) by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in (RUN_FILE, SUMMARY_FILE)}


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*.segments.tsv")}


@pytest.mark.slow  # ≈ 25 s here: two spawned workers import torch
def test_archive_run_in_two_workers_resumes_and_reports_bad_files(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = archive(tmp_path / "in")
    out = tmp_path / "out"
    args = ["detect", str(model_file), str(folder), "--out", str(out), "--frame-scores", "npy",
            "--quiet"]
    assert main([*args, "--jobs", "2"]) == 1  # bad files fail the run, after the good ones
    captured = capsys.readouterr()
    assert captured.out.startswith("3 files done, 0 skipped (already done), 2 failed: ")
    summary = (out / SUMMARY_FILE).read_text().splitlines()
    failed = [line for line in summary if line.startswith("failed: ")]
    assert len(failed) == 2 and "bad.wav" in failed[1] and "empty.mp3" in failed[0]
    assert "is empty (0 bytes)" in failed[0]
    assert "bad.wav" in captured.err and "empty.mp3" in captured.err

    produced = outputs(out)
    assert sorted(produced) == sorted(
        f"{Path(name).with_suffix('')}.{kind}" for name in GOOD
        for kind in ("segments.tsv", "frames.npy"))
    for name in GOOD:  # each equals the single-file run of that file (same process, 1 job)
        single = tmp_path / "single" / name
        assert main(["detect", str(model_file), str(folder / name), "--out", str(single),
                     "--frame-scores", "npy", "--quiet"]) == 0
        stem = Path(name).with_suffix("")
        assert produced[f"{stem}.segments.tsv"] == (single / f"{stem.name}.segments.tsv"
                                                    ).read_bytes()
        np.testing.assert_allclose(np.load(out / f"{stem}.frames.npy"),
                                   np.load(single / f"{stem.name}.frames.npy"), atol=1e-6)

    capsys.readouterr()
    before = mtimes(out)
    assert main(args) == 1  # again: the good files are skipped, the bad ones fail again
    assert capsys.readouterr().out.startswith("0 files done, 3 skipped (already done), 2 failed")
    assert mtimes(out) == before

    assert main([*args, "--overwrite"]) == 1
    assert capsys.readouterr().out.startswith("3 files done, 0 skipped")
    assert all(mtimes(out)[name] > before[name] for name in before)


def test_an_interrupted_file_is_redone_and_its_temporary_removed(
    tmp_path: Path, model_file: Path
) -> None:
    folder = good_files(tmp_path / "in", 1.0)
    out = tmp_path / "out"
    assert detect(model_file, [folder], out, frame_scores="csv", progress=False).done == 3
    expected = outputs(out)
    # killed while writing sub/a's frame scores: its segments are there, the frames are not
    (out / "sub" / "a.frames.csv").unlink()
    stale = out / "sub" / ".a.frames.csv.x1y2z3.tmp"
    stale.write_text("time,music_prob\n0.0,0.5\n")
    summary = detect(model_file, [folder], out, frame_scores="csv", progress=False)
    assert (summary.done, summary.skipped, summary.failures) == (1, 2, [])
    assert not stale.exists()
    assert outputs(out) == expected


def test_other_settings_redo_files_also_after_an_interrupted_run(
    tmp_path: Path, model_file: Path
) -> None:
    folder = good_files(tmp_path / "in", 1.0)
    out = tmp_path / "out"
    assert detect(model_file, [folder], out, progress=False).done == 3
    listed = tmp_path / "files.txt"
    listed.write_text(f"# one file only, as if a run were stopped after it\n\n"
                      f"{folder / 'prog.wav'}\n")
    assert main(["detect", str(model_file), "--list", str(listed), "--out", str(out),
                 "--threshold", "0", "--quiet"]) == 0
    assert (out / "prog.segments.tsv").read_text().endswith("music\n")
    summary = detect(model_file, [folder], out, smoothing=None, progress=False)
    assert (summary.done, summary.skipped) == (3, 0)  # back to the model's threshold: all redone
    summary = detect(model_file, [folder], out, smoothing=Smoothing(threshold=0.0),
                     progress=False)
    assert (summary.done, summary.skipped) == (3, 0)
    summary = detect(model_file, [folder], out, smoothing=Smoothing(threshold=0.0),
                     progress=False)
    assert (summary.done, summary.skipped) == (0, 3)


def test_a_list_mirrors_paths_below_its_common_folder_and_reports_missing_files(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = good_files(tmp_path / "in", 1.0)
    listed = tmp_path / "files.txt"
    listed.write_text("".join(f"{folder / name}\n" for name in (*GOOD[1:], "sub/gone.wav")))
    out = tmp_path / "out"
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a relative path in the list is relative to the current folder
    try:
        listed.write_text(listed.read_text() + "in/prog.wav\n")
        assert main(["detect", str(model_file), "--list", str(listed), "--out", str(out),
                     "--quiet"]) == 1
    finally:
        os.chdir(cwd)
    assert sorted(outputs(out)) == ["prog.segments.tsv", "sub/a.segments.tsv",
                                    "sub/deeper/b.segments.tsv"]
    assert "gone.wav: no such file" in capsys.readouterr().err


def test_output_stems_stay_distinct_and_below_the_output_folder(tmp_path: Path) -> None:
    for name in ("a/x.wav", "b/x.wav", "b/x.mp3", "b/..wav", "b/c/y.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    tasks = plan([tmp_path / "a" / "x.wav", tmp_path / "b"])
    stems = {str(task.source.relative_to(tmp_path)): task.stem for task in tasks}
    assert stems == {"a/x.wav": ("a", "x.wav"), "b/x.wav": ("b", "x.wav"),
                     "b/x.mp3": ("x.mp3",), "b/c/y.wav": ("c", "y")}  # ..wav: hidden
    assert output_stems([(tmp_path / "b" / "..wav", Path("..wav"))]) == [(".",)]
    out = tmp_path / "out"
    for task in plan([tmp_path / "b" / "..wav", *(t.source for t in tasks)]):
        for path in task.outputs(out, "tsv", "npy"):
            assert out.resolve() in path.resolve().parents
