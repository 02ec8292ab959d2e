"""The replication (`search.replication`), test-set scoring (`search.testsets`) and the report
(`search.report`): derived studies, budgets, intervals and verdicts, and one tiny replication
run, scored and reported end to end (local Ray, real training, MLflow on SQLite)."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean, stdev

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from scipy import stats

from musicdet.configtools import ConfigError
from search.cli import main as search_main
from search.replication import (
    joint_study,
    learning_curve_studies,
    load_replication,
    table_budget,
    table_studies,
)
from search.report import (
    PAPER,
    Result,
    claim_rows,
    interval,
    loss_label,
    rank_agreement,
    verdict,
    welch,
)
from search.space import complete_params
from search.spec import load_spec
from search.testsets import parse_test_option, seed_summary

STUDIES = Path(__file__).resolve().parent.parent / "studies"
TINY_BASE = {"seed": 0, "model": {"hidden_size": 8, "num_layers": 1},
             "training": {"epochs": 2, "batch_size": 8, "sequences_per_epoch": 8}}


def write_tables(folder: Path) -> None:
    """Two tiny table studies in ``folder``: CE against aAUC, and one apAUC."""
    tables = {"t1": [{"type": "ce"}, {"type": "aauc", "delta": 10.0}],
              "t2": [{"type": "apauc", "alpha": 0.0, "beta": 0.5, "delta": 10.0}]}
    for name, grid in tables.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "base": {**TINY_BASE, "model": {"input_norm": "none"}},
            "search": {"sampler": "grid", "grid": grid}, "pruner": {"type": "none"},
            "storage": {"heartbeat_seconds": 1, "grace_seconds": 4}}))
    (folder / "j.yaml").write_text(yaml.safe_dump({
        "name": "j", "base": TINY_BASE,
        "search": {"sampler": "tpe", "n_trials": 40, "losses": ["ce", "aauc"]},
        "pruner": {"type": "asha", "grace_epochs": 1, "reduction_factor": 2},
        "storage": {"heartbeat_seconds": 1, "grace_seconds": 4}}))


def write_replication(folder: Path, cache_dir: str, **extra: object) -> Path:
    write_tables(folder)
    data = {
        "name": "rep",
        "tables": ["t1.yaml", "t2.yaml"],
        "scale": {"data": {"synth_hours": 0.02, "cache_dir": cache_dir}},
        "repeats": 2,
        "front_ends": {"project": {"model": {"input_norm": "window"}},
                       "paper": {"model": {"input_norm": "none"}}},
        "joint": {"study": "j.yaml", "front_end": "project", "chunk": 2},
        "learning_curve": {"front_end": "project", "hours": [0.03]},
        "test": {"synthetic": {"format": "synth", "synth_hours": 0.02, "synth_seed": 1,
                               "cache_dir": cache_dir, "synth": {"test_corpus": True}}},
        "resources": {"cpus": 1, "max_concurrent": 2},
        **extra,
    }
    path = folder / "replication.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_table_runs_on_every_front_end_at_the_replications_scale(tmp_path: Path) -> None:
    spec = load_replication(write_replication(tmp_path, str(tmp_path / "cache")))
    studies = {s.name: (front, s) for _, front, s in table_studies(spec)}
    assert set(studies) == {"t1-project", "t2-project", "t1-paper", "t2-paper"}
    for name, (front, study) in studies.items():
        assert study.base.model.input_norm == ("window" if front == "project" else "none")
        assert study.base.data.synth_hours == 0.02 and study.base.training.epochs == 2
        assert study.search.repeats == 2 and study.resources.max_concurrent == 2
        assert study.workdir == tmp_path / "runs" / name
    joint = joint_study(spec, n_trials=6)
    assert joint is not None and joint.name == "j-project" and joint.search.n_trials == 6
    assert joint.base.model.input_norm == "window" and joint.search.repeats == 2
    # the budget of the project front end: 3 configurations × 2 seeds × 2 epochs
    assert table_budget(spec, "project") == 12


def test_the_shipped_replication_runs_the_three_tables_on_both_front_ends() -> None:
    spec = load_replication(STUDIES / "replication.yaml")
    studies = [(front, s) for _, front, s in table_studies(spec)]
    assert sorted(front for front, _ in studies) == ["paper"] * 3 + ["project"] * 3
    assert sum(s.search.n_trials for _, s in studies) == 2 * 13
    epochs = studies[0][1].base.training.epochs
    assert table_budget(spec, "project") == 13 * spec.repeats * epochs
    assert {s.base.model.input_norm for front, s in studies if front == "paper"} == {"none"}


def test_bad_replication_specs_are_refused_in_one_line_naming_the_key(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    cases = {
        "repeats": ({"repeats": 1}, "repeats >= 2"),
        "joint.front_end": ({"joint": {"study": "j.yaml", "front_end": "studio"}},
                            "one of the front_ends"),
        "learning_curve.hours": ({"learning_curve": {"hours": []}}, "non-empty list"),
    }
    for key, (extra, rule) in cases.items():
        path = write_replication(tmp_path, cache, **extra)
        with pytest.raises(ConfigError) as error:
            load_replication(path)
        assert str(error.value).startswith(f"{path}: {key}") and rule in str(error.value)
        assert "\n" not in str(error.value)
    path = write_replication(tmp_path, cache, tables=["missing.yaml"])
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_replication(path)


def test_test_options_name_a_set_and_its_format_or_say_what_is_expected() -> None:
    name, data = parse_test_option("real=generic:/data/real")
    assert name == "real" and data.format == "generic" and data.path == "/data/real"
    for bad in ("real", "real=generic", "=generic:/x", "real=wav:/x"):
        with pytest.raises(ConfigError) as error:
            parse_test_option(bad)
        assert str(error.value).startswith("--test") and "\n" not in str(error.value)


def test_seed_summary_logs_the_mean_sd_and_each_seed() -> None:
    per_seed = {0: {"auc": 0.7, "eer": 0.3, "recall": 0.1, "f1": 0.2},
                1: {"auc": 0.8, "eer": 0.2, "recall": 0.3, "f1": 0.4}}
    out = seed_summary("real", per_seed)
    assert out["test_real_auc"] == pytest.approx(0.75)
    assert out["test_real_auc_sd"] == pytest.approx(stdev([0.7, 0.8]))
    assert out["test_real_f1_seed1"] == 0.4 and len(out) == 4 * 4


def test_every_row_of_the_papers_tables_is_named_as_the_paper_names_it() -> None:
    labels = []
    for number in (1, 2, 3):
        spec = load_spec(STUDIES / f"paper-table{number}.yaml")
        grid = yaml.safe_load((STUDIES / f"paper-table{number}.yaml").read_text())
        points = grid["search"]["grid"]
        for point in points:
            params = {k: v for k, v in point.items() if k != "type"}
            if len(spec.search.loss_types()) > 1:
                params["loss"] = point["type"]
            labels.append(loss_label(complete_params(spec.search, params)))
    assert labels == list(PAPER)


def test_intervals_are_student_t_over_seeds_and_welch_for_differences() -> None:
    values = [0.70, 0.74, 0.79]
    mean, half = interval(values)
    low, high = stats.t.interval(0.95, 2, loc=fmean(values), scale=stats.sem(values))
    assert mean - half == pytest.approx(low) and mean + half == pytest.approx(high)
    a, b = [0.81, 0.83, 0.86], [0.70, 0.74, 0.71]
    diff, lo, hi = welch(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(fmean(a) - fmean(b))
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert math.isnan(interval([0.5])[1])


def test_a_claim_holds_reverses_or_cannot_be_told_apart() -> None:
    assert verdict(0.01, 0.05) == "holds" and verdict(-0.05, -0.01) == "reverses"
    assert verdict(-0.01, 0.02) == "not distinguishable"

    def row(label_params: dict, aucs: list[float], val: list[float] | None = None) -> Result:
        result = Result("s", 0, label_params, "", val or aucs, seeds=[0, 1, 2])
        result.tests["real"] = {"auc": aucs}
        return result

    ce = row({"loss": "ce"}, [0.70, 0.71, 0.72])
    rows = [ce, row({"loss": "aauc", "delta": 10.0}, [0.80, 0.81, 0.82]),
            row({"loss": "apauc", "alpha": 0.25, "beta": 1.0}, [0.80, 0.81, 0.83]),
            row({"loss": "apauc", "alpha": 0.25, "beta": 0.5}, [0.69, 0.72, 0.70])]
    lines = {line.split("|")[1].strip(): line for line in claim_rows(rows, "real", "paper")}
    assert lines["aAUC beats cross entropy (Table 1)"].endswith("| holds |")
    # a claim of no gain fails where the AUC-family loss is clearly better ...
    assert lines["apAUC α=.25 β=1 is no better than cross entropy (Table 2)"].endswith(
        "| reverses |")
    # ... and holds where it is not
    assert lines["apAUC α=.25 β=.5 is no better than cross entropy (Table 2)"].endswith(
        "| holds |")
    assert "+10.0" in lines["aAUC beats cross entropy (Table 1)"]  # AUC points
    agreement = rank_agreement(rows, "real")
    assert agreement is not None and rank_agreement(rows[:1], "real") is None
    rho, same = agreement
    assert rho == pytest.approx(1.0) and same


@pytest.mark.slow
def test_a_tiny_replication_is_run_scored_and_reported_from_its_records(
        tmp_path: Path, cache_dir: str, local_ray: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_replication(tmp_path, cache_dir)
    assert search_main(["replicate", str(path), "--num-cpus", "2"]) == 0
    spec = load_replication(path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    for _, _, study in table_studies(spec):
        experiment = client.get_experiment_by_name(f"musicdet-{study.name}")
        runs = client.search_runs([experiment.experiment_id], "tags.`musicdet.role` = 'trial'")
        assert len(runs) == study.search.n_trials
        for run in runs:
            seeds = [run.data.metrics[f"test_synthetic_auc_seed{s}"] for s in (0, 1)]
            assert run.data.metrics["test_synthetic_auc"] == pytest.approx(fmean(seeds))
            scores = client.download_artifacts(run.info.run_id,
                                               "test-scores/synthetic-seed1.npz", str(tmp_path))
            with np.load(scores) as saved:
                assert saved["scores"].shape == saved["labels"].shape
    joint = joint_study(spec)
    assert joint is not None
    import optuna
    trials = optuna.load_study(study_name=joint.name, storage=joint.storage_url).trials
    assert sum(len(t.intermediate_values) for t in trials) * 2 >= table_budget(spec, "project")
    (curve,) = learning_curve_studies(spec)
    assert curve[0] == 0.03 and curve[1].search.grid[0].type == "ce"

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nrest\n")
    out = tmp_path / "docs" / "results.markdown"  # test_references reads a .md name as a citation
    assert search_main(["report", str(path), "--out", str(out), "--readme", str(readme)]) == 0
    text = out.read_text()
    assert "| cross entropy | 87.02 | 21.40 | 0.45 | 0.60 |" in text
    assert "## The joint search against the grids" in text and "## Learning curve" in text
    for figure in ("roc-synthetic.png", "learning-curve.png"):
        assert (out.parent / "figures" / figure).read_bytes()[:4] == b"\x89PNG"
    assert (out.parent / "joint-best.yaml").is_file()
    block = readme.read_text()
    assert block.startswith("intro\n<!-- results:begin -->\n| loss | paper (")
    assert "old" not in block
    assert block.endswith("<!-- results:end -->\nrest\n")


def test_score_and_replicate_refuse_bad_test_sets_before_touching_a_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tables(tmp_path)
    assert search_main(["score", str(tmp_path / "t1.yaml"), "--test", "real=generic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musicdet-search: error: --test") and "\n" not in err
    assert not (tmp_path / "runs").exists()
    replication = write_replication(tmp_path, str(tmp_path / "cache"))
    missing = tmp_path / "nowhere"
    assert search_main(["replicate", str(replication), "--test", f"real=generic:{missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"musicdet-search: error: test.real.path: {missing} does not exist; " \
                  "expected a generic dataset"
    assert not (tmp_path / "runs").exists()
