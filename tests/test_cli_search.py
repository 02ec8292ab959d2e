"""musicdet-search without Ray: export --trial N, best --top, --tracking-uri, statuses of a
missing or unfinished study (the library raises error types; only the CLI exits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial
from studyutil import write_spec

from musicdet.errors import ExitStatus, UnfinishedError
from search.cli import _spec, build_parser, main
from search.export import load_study
from search.spec import load_spec
from search.study import open_storage
from search.trainable import trial_dir

VALUES = {0: 0.7, 1: 0.9, 3: 0.8}  # trial 2 is pruned, trial 4 failed


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """A CE-only study spec (its trials have no sampled parameters) with its own storage."""
    return write_spec(tmp_path, str(tmp_path / "cache"), search={"losses": ["ce"]},
                      storage={"url": f"sqlite:///{tmp_path}/optuna.db"})


@pytest.fixture
def study_file(spec_file: Path) -> Path:
    """The spec's study with five finished trials: values VALUES, one PRUNED, one FAIL."""
    spec = load_spec(spec_file)
    study = optuna.create_study(study_name=spec.name, direction="maximize",
                                storage=open_storage(spec.storage_url, spec))
    for number in range(5):
        state = TrialState.COMPLETE if number in VALUES else \
            TrialState.PRUNED if number == 2 else TrialState.FAIL
        study.add_trial(create_trial(state=state, value=VALUES.get(number)))
    return spec_file


def exported(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_export_writes_the_best_trial_or_trial_n(study_file: Path, tmp_path: Path, capsys):
    assert main(["export", str(study_file), "--out", str(tmp_path / "best.yaml")]) == 0
    assert capsys.readouterr().out.startswith(f"trial 1 → {tmp_path / 'best.yaml'}\n")
    assert main(["export", str(study_file), "--out", str(tmp_path / "t3.yaml"),
                 "--trial", "3"]) == 0
    assert capsys.readouterr().out.startswith(f"trial 3 → {tmp_path / 't3.yaml'}\n")
    assert exported(tmp_path / "t3.yaml")["loss"]["type"] == "ce"
    assert exported(tmp_path / "t3.yaml") == exported(tmp_path / "best.yaml")  # both CE


@pytest.mark.parametrize(("trial", "message"), [
    ("9", "study 'tiny' has no trial 9 (it has 5, numbered from 0)"),
    ("2", "trial 2 of study 'tiny' is PRUNED (the pruner stopped it early: its config would "
          "not reproduce its value); expected a COMPLETE trial"),
    ("4", "trial 4 of study 'tiny' is FAIL; expected a COMPLETE trial"),
])
def test_export_of_a_trial_that_is_not_complete_is_one_line(
        study_file: Path, tmp_path: Path, capsys, trial: str, message: str) -> None:
    out = tmp_path / "t.yaml"
    assert main(["export", str(study_file), "--out", str(out), "--trial", trial]) == 2
    assert capsys.readouterr().err == f"musicdet-search: error: {message}\n"
    assert not out.exists()


def test_best_lists_the_top_n(study_file: Path, capsys) -> None:
    assert main(["best", str(study_file), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:3]] == [["1", "0.9000"], ["3", "0.8000"]]
    assert lines[3:] == ["", f"no comparison with trial 1: no validation.npz in "
                             f"{trial_dir(load_spec(study_file).workdir, 1)}"]
    assert "how many of the best COMPLETE trials to list (10)" in _help("best")


def save_validation(folder: Path, labels: np.ndarray, scores: np.ndarray, files: int) -> None:
    """A validation.npz as train writes it: ``files`` files of equal length."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "validation.npz", labels=labels, scores=scores,
             mask=np.ones(len(labels), bool), groups=np.arange(len(labels)) * files // len(labels),
             files=np.array([f"prog-{i:04d}" for i in range(files)]))


def test_best_compares_the_top_trials_with_a_paired_bootstrap(study_file: Path, capsys) -> None:
    """Trials 1 and 3 scored the frames alike, trial 0 worse: 1 vs 3 not distinguishable,
    1 better than 0; --compare 0 prints the table only."""
    workdir = load_spec(study_file).workdir
    rng = np.random.default_rng(0)
    labels = (rng.random(6000) < 0.5).astype(np.float32)
    scores = labels + rng.normal(0, 1, 6000)
    for number in (1, 3):
        save_validation(trial_dir(workdir, number), labels, scores, 20)
    save_validation(trial_dir(workdir, 0), labels, scores + rng.normal(0, 3, 6000), 20)
    assert main(["best", str(study_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[5] == "AUC of trial 1 minus the others', paired bootstrap over 20 validation " \
                       "files (1000 resamples):"
    assert lines[7].split() == ["3", "0.0000", "[", "0.0000,", "0.0000]"]
    assert lines[9] == "trials 1 and 3 are not distinguishable at 95 % (ΔAUC 0.000 [0.000, 0.000])"
    assert lines[10].startswith("trial 1 is better than 0 at 95 % (ΔAUC 0.")
    assert main(["best", str(study_file), "--compare", "0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_best_says_when_trials_scored_different_frames(study_file: Path, capsys) -> None:
    """Other labels: not compared; an unreadable file: named; the rest of the table stays."""
    workdir = load_spec(study_file).workdir
    labels = np.tile([0.0, 1.0], 500)
    save_validation(trial_dir(workdir, 1), labels, labels, 10)
    save_validation(trial_dir(workdir, 3), labels[::-1].copy(), labels, 10)
    (trial_dir(workdir, 0) / "validation.npz").parent.mkdir(parents=True)
    (trial_dir(workdir, 0) / "validation.npz").write_bytes(b"not a zip")
    assert main(["best", str(study_file), "--compare", "3"]) == 0
    different, unreadable = capsys.readouterr().out.splitlines()[-2:]
    assert different == ("trials 1 and 3 not compared: they were validated on different "
                         "frames (different validation sets?)")
    assert unreadable.startswith(f"trials 1 and 0 not compared: "
                                 f"{trial_dir(workdir, 0) / 'validation.npz'} is not readable (")


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()  # type: ignore[union-attr]


def test_a_study_without_completed_trials_is_status_3(spec_file: Path, tmp_path, capsys):
    spec = load_spec(spec_file)
    study = optuna.create_study(study_name=spec.name, direction="maximize",
                                storage=open_storage(spec.storage_url, spec))
    study.add_trial(create_trial(state=TrialState.FAIL))
    assert main(["export", str(spec_file), "--out", str(tmp_path / "b.yaml")]) == 3
    assert capsys.readouterr().err == \
        "musicdet-search: error: study 'tiny' has no completed trial yet\n"


def test_a_missing_study_is_an_error_type_in_the_library_and_status_3_in_the_cli(
        spec_file: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(UnfinishedError, match="no study 'tiny' in sqlite:///"):
        load_study(load_spec(spec_file))
    assert main(["best", str(spec_file)]) == ExitStatus.UNFINISHED
    err = capsys.readouterr().err
    assert err.startswith("musicdet-search: error: no study 'tiny' in ") and \
        err.endswith("; run `musicdet-search run` on its spec first\n")


@pytest.mark.parametrize("command", [["run"], ["export", "--out", "x.yaml"], ["ui"]])
def test_tracking_uri_overrides_the_spec(spec_file: Path, command: list[str]) -> None:
    uri = "postgresql://user@dbhost/mlflow"
    args = build_parser().parse_args([command[0], str(spec_file), *command[1:],
                                      "--tracking-uri", uri])
    assert _spec(args).mlflow.tracking_uri == uri


def test_a_bad_tracking_uri_is_one_line_naming_the_option(spec_file: Path, capsys) -> None:
    assert main(["export", str(spec_file), "--out", "x.yaml",
                 "--tracking-uri", "mysql://user@host/mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("musicdet-search: error: --tracking-uri: ")
    assert "mysql://user@host/mlflow" in err


def test_ui_has_no_storage_option(spec_file: Path, capsys) -> None:
    """The UI serves MLflow only; an Optuna storage would change nothing it shows."""
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["ui", str(spec_file), "--storage", "sqlite:///x.db"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --storage" in capsys.readouterr().err


def test_a_study_with_a_bad_validation_set_stops_in_one_line_before_it_exists(
        tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, str(tmp_path / "cache"),
                      validation={"format": "generic", "path": "nowhere"})
    assert main(["run", str(spec)]) == ExitStatus.BAD_INPUT
    assert capsys.readouterr().err == (
        f"musicdet-search: error: validation.path: {tmp_path / 'nowhere'} does not exist; "
        "expected the validation set's generic dataset\n")
    assert not (tmp_path / "runs").exists()
