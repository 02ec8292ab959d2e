"""Guarantees for `musicdet detect` and `musicdet evaluate` on bad model files: one line naming
the file, exit status 2, no output written, a crafted pickle's payload never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from guarantees import assert_one_error_line, run_cli, write_tone
from test_guarantees_modelfile import DAMAGED, tiny_model_file
from test_guarantees_security import crafted_files


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt")


def labelled_folder(root: Path) -> Path:
    for name in ("a", "b"):
        write_tone(root / f"{name}.wav", 2.0)
        (root / f"{name}.tsv").write_text("onset\toffset\tlabel\n0\t1\tmusic\n1\t2\tno-music\n")
    return root


def commands(model: Path, tmp_path: Path) -> dict[str, list[str | Path]]:
    data = labelled_folder(tmp_path / "data")
    return {
        "detect": ["detect", model, data, "--out", tmp_path / "out"],
        "evaluate": ["evaluate", model, "--data", data, "--out", tmp_path / "out",
                     "--cache-dir", tmp_path / "cache"],
    }


@pytest.mark.parametrize("command", ["detect", "evaluate"])
@pytest.mark.parametrize("case", ["truncated-half", "empty", "zip", "newer-version", "no-config",
                                  "other-weights"])
def test_bad_model_file_is_one_line_exit_2_and_no_output(tmp_path, capsys, good, command, case):
    make, message = DAMAGED[case]
    model = tmp_path / "model.pt"
    make(model, good)
    outcome = run_cli(capsys, *commands(model, tmp_path)[command])
    assert_one_error_line(outcome, f"{model}: ", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["detect", "evaluate"])
@pytest.mark.parametrize("kind", ["zipped", "plain"])
def test_crafted_model_file_is_refused_and_never_runs(tmp_path, capsys, command, kind):
    marker = tmp_path / "ran"
    model = crafted_files(tmp_path / "crafted", marker)[kind]
    outcome = run_cli(capsys, *commands(model, tmp_path)[command])
    assert_one_error_line(outcome, f"{model}: ", "refused, as loading them could run code")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["detect", "evaluate"])
def test_missing_model_file_is_one_line(tmp_path, capsys, command):
    model = tmp_path / "absent.pt"
    assert_one_error_line(run_cli(capsys, *commands(model, tmp_path)[command]),
                          f"{model}: no such model file")
