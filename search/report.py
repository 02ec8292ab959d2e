"""The replication report (docs/results.md) from the records a replication leaves: the
studies' Optuna trials and their MLflow runs with the test-set scores (`search.testsets`).

Every number is read from the records, every sentence of the discussion follows from them.
Intervals: over the seeds of a configuration, mean ± the half-width of a two-sided 95 %
Student-t interval; a difference of two configurations: Welch's 95 % interval. A claim
*holds* when the interval of its difference lies on its side of 0, *reverses* when it lies on
the other, and is *not distinguishable* otherwise.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
from optuna.trial import TrialState
from scipy import stats

from musicdet.config import RunConfig
from musicdet.errors import UnfinishedError
from musicdet.fsutil import atomic_path, write_text
from musicdet.metrics import roc_points

from .export import trial_config
from .replication import (
    ReplicationSpec,
    best_auc_family,
    existing_study,
    joint_study,
    learning_curve_studies,
    table_budget,
    table_studies,
)
from .significance import compare_top
from .space import LOSS, complete_params
from .spec import StudySpec
from .study import trial_origin
from .testsets import SCORES_FOLDER, TEST_METRICS
from .tracking import StudyTracker, study_settings

LEVEL = 0.95
# The paper's test-set results (Seyerlehner TV, trained on 27 h of OpenBMAT): AUC %, EER %,
# recall and F1 at precision 0.90 (Gimeno et al. 2020, Tables 1-3).
PAPER: dict[str, tuple[float, float, float, float]] = {
    "cross entropy": (87.02, 21.40, .45, .60),
    "aAUC": (90.76, 17.31, .65, .75),
    "apAUC α=0 β=.25": (87.21, 20.85, .54, .68),
    "apAUC α=0 β=.5": (90.34, 17.53, .64, .75),
    "apAUC α=0 β=.75": (91.88, 16.03, .71, .79),
    "apAUC α=.25 β=.5": (86.95, 21.18, .40, .55),
    "apAUC α=.25 β=.75": (88.79, 19.56, .55, .64),
    "apAUC α=.25 β=1": (86.83, 21.69, .42, .57),
    "aAUCsum γ=.75 λ=1": (91.78, 16.78, .70, .79),
    "aAUCsum γ=.75 λ=.1": (91.31, 16.59, .68, .77),
    "aAUCsum γ=.75 λ=.01": (91.45, 16.20, .69, .78),
    "aAUCsum γ=.75 λ=.001": (92.02, 15.78, .72, .80),
    "aAUCsum γ=.75 λ=.0001": (91.31, 16.78, .70, .79),
}
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
FIGURES = "figures"


def _num(value: float) -> str:
    """0.25 → '.25', 1.0 → '1', 0.0001 → '.0001' (the paper's style)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text[1:] if text.startswith("0.") else text


def loss_label(params: dict[str, Any]) -> str:
    """The paper's name of a loss configuration, e.g. 'apAUC α=0 β=.75'."""
    kind = params[LOSS]
    if kind == "ce":
        return "cross entropy"
    if kind == "aauc":
        return "aAUC"
    if kind == "apauc":
        return f"apAUC α={_num(params['alpha'])} β={_num(params['beta'])}"
    return f"aAUCsum γ={_num(params['gamma'])} λ={_num(params['lam'])}"


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % Student-t half-width of ``values`` (half-width NaN for one value)."""
    if len(values) < 2:
        return fmean(values), math.nan
    half = stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return fmean(values), float(half)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """mean(a) − mean(b) and its Welch 95 % interval (low, high)."""
    diff = fmean(a) - fmean(b)
    va, vb = stdev(a) ** 2 / len(a), stdev(b) ** 2 / len(b)
    if va + vb == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, dof)) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def verdict(low: float, high: float, sign: int = 1) -> str:
    """'holds' when the interval lies on ``sign``'s side of 0, 'reverses' on the other."""
    if sign * low > 0 and sign * high > 0:
        return "holds"
    if sign * low < 0 and sign * high < 0:
        return "reverses"
    return "not distinguishable"


@dataclass
class Result:
    """One configuration of one study: its loss, per-seed validation AUC and test metrics."""

    study: str
    trial: int
    params: dict[str, Any]
    run_id: str
    val: list[float]
    tests: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # set → metric → seeds
    seeds: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return loss_label(self.params)

    def values(self, test: str, metric: str = "auc") -> list[float]:
        return self.tests.get(test, {}).get(metric, [])


def seed_values(metrics: dict[str, float], key: str) -> dict[int, float]:
    """``key``'s per-seed values in a run's metrics (``<key>_seedS``), by seed."""
    pattern = re.compile(rf"{re.escape(key)}_seed(\d+)$")
    found = {int(m.group(1)): v for k, v in metrics.items() if (m := pattern.match(k))}
    return found or ({0: metrics[key]} if key in metrics else {})


def study_results(spec: StudySpec) -> list[Result]:
    """The COMPLETE trials of ``spec`` with what their runs hold (test sets they were scored
    on: ``test_<name>_auc``)."""
    study = optuna.load_study(study_name=spec.name, storage=spec.storage_url)
    tracker = StudyTracker(study_settings(spec), spec.name, create=False)
    runs = tracker.trial_runs_by_origin()
    names = sorted({m.group(1) for r in runs.values() for k in r.data.metrics
                    if (m := re.fullmatch(r"test_(\w+?)_auc", k))})
    results = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        run = runs.get(trial_origin(trial))
        if run is None:
            continue
        metrics = run.data.metrics
        val = seed_values(metrics, "best_val_auc")
        result = Result(spec.name, trial.number, complete_params(spec.search, trial.params),
                        run.info.run_id, list(val.values()), seeds=list(val))
        for name in names:
            if f"test_{name}_auc" in metrics:
                result.tests[name] = {m: list(seed_values(metrics, f"test_{name}_{m}").values())
                                      for m in TEST_METRICS}
        results.append(result)
    return results


def test_names(results: Sequence[Result], spec: ReplicationSpec) -> list[str]:
    """The test sets scored, those of the spec first."""
    found = {name for r in results for name in r.tests}
    return [n for n in spec.test if n in found] + sorted(found - set(spec.test))


def _cell(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "–"
    mean, half = interval([v * scale for v in values])
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if not math.isnan(half) else \
        f"{mean:.{digits}f}"


def results_table(rows: Sequence[Result], test: str) -> str:
    """The paper's table layout: the paper's test-set figures beside ours on ``test``."""
    lines = ["| loss | paper AUC % | EER % | Rec | F1 | ours: val AUC % | AUC % | EER % | Rec "
             "| F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = PAPER.get(row.label)
        theirs = [f"{paper[0]:.2f}", f"{paper[1]:.2f}", f"{paper[2]:.2f}", f"{paper[3]:.2f}"] \
            if paper else ["–"] * 4
        ours = [_cell(row.val, 100, 1), _cell(row.values(test, "auc"), 100, 1),
                _cell(row.values(test, "eer"), 100, 1), _cell(row.values(test, "recall")),
                _cell(row.values(test, "f1"))]
        lines.append(f"| {row.label} | " + " | ".join(theirs + ours) + " |")
    return "\n".join(lines)


def overview_table(tables: dict[str, list[Result]], tests: Sequence[str]) -> str:
    """AUC % of every row: the paper's, ours on each test set and front end."""
    fronts = list(tables)
    columns = " | ".join(f"{t} ({f})" for f in fronts for t in tests)
    head = f"| loss | paper (Seyerlehner TV) | {columns} |"
    lines = [head, "|---|---|" + "---|" * (len(fronts) * len(tests))]
    labels = [r.label for r in next(iter(tables.values()))]
    for label in labels:
        paper = PAPER.get(label)
        cells = []
        for front in fronts:
            row = next((r for r in tables[front] if r.label == label), None)
            cells += [_cell(row.values(t), 100, 1) if row else "–" for t in tests]
        lines.append(f"| {label} | {paper[0]:.2f} | " if paper else f"| {label} | – | ")
        lines[-1] += " | ".join(cells) + " |"
    return "\n".join(lines)


@dataclass
class Claim:
    text: str
    better: str  # the configuration the paper finds better ...
    worse: str  # ... than this one
    sign: int = 1  # -1: the paper finds ``better`` no better (a claim of no gain)


CLAIMS = [
    Claim("aAUC beats cross entropy (Table 1)", "aAUC", "cross entropy"),
    Claim("apAUC α=0 improves from β=.25 to β=.5 (Table 2)", "apAUC α=0 β=.5",
          "apAUC α=0 β=.25"),
    Claim("apAUC α=0 improves from β=.5 to β=.75 (Table 2)", "apAUC α=0 β=.75",
          "apAUC α=0 β=.5"),
    Claim("apAUC α=0 β=.75 beats aAUC (Table 2)", "apAUC α=0 β=.75", "aAUC"),
    Claim("aAUCsum γ=.75 λ=.001 beats cross entropy (Table 3)", "aAUCsum γ=.75 λ=.001",
          "cross entropy"),
    Claim("aAUCsum γ=.75 λ=.001 beats aAUC (Table 3)", "aAUCsum γ=.75 λ=.001", "aAUC"),
    Claim("aAUCsum γ=.75 λ=.001 beats apAUC α=0 β=.75 (Table 3)", "aAUCsum γ=.75 λ=.001",
          "apAUC α=0 β=.75"),
] + [Claim(f"apAUC α=.25 β={b} is no better than cross entropy (Table 2)",
           f"apAUC α=.25 β={b}", "cross entropy", -1) for b in (".5", ".75", "1")]


def claim_rows(rows: Sequence[Result], test: str, front: str) -> list[str]:
    """One table line per claim: ΔAUC with its interval and the verdict."""
    by_label = {r.label: r for r in rows}
    lines = []
    for claim in CLAIMS:
        a, b = by_label.get(claim.better), by_label.get(claim.worse)
        if a is None or b is None or not a.values(test) or not b.values(test):
            continue
        diff, low, high = welch(a.values(test), b.values(test))
        # a claim of no gain ("no better") fails only where the first is clearly better
        said = verdict(low, high) if claim.sign > 0 else "reverses" if low > 0 else "holds"
        lines.append(f"| {claim.text} | {front} | {test} | {100 * diff:+.1f} "
                     f"[{100 * low:+.1f}, {100 * high:+.1f}] | {said} |")
    return lines


def rank_agreement(rows: Sequence[Result], test: str) -> tuple[float, bool] | None:
    """Spearman ρ between the rows' mean validation AUC and mean test AUC, and whether both
    rank the same row first (None with fewer than two rows scored on ``test``)."""
    scored = [r for r in rows if r.values(test)]
    if len(scored) < 2:
        return None
    val = [fmean(r.val) for r in scored]
    tst = [fmean(r.values(test)) for r in scored]
    rho = float(stats.spearmanr(val, tst).statistic)
    return rho, int(np.argmax(val)) == int(np.argmax(tst))


def mean_roc(tracker: StudyTracker, result: Result, test: str,
             grid: np.ndarray) -> np.ndarray:
    """TPR at ``grid`` (FPR) averaged over the seeds' ROC curves (vertical averaging)."""
    curves = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in result.seeds:
            path = tracker.client.download_artifacts(
                result.run_id, f"{SCORES_FOLDER}/{test}-seed{seed}.npz", tmp)
            with np.load(path) as saved:
                fpr, tpr, _ = roc_points(saved["labels"], saved["scores"], saved["mask"])
            curves.append(np.interp(grid, fpr, tpr))
    return np.mean(curves, axis=0)


def roc_figure(specs: dict[str, StudySpec], chosen: dict[str, dict[str, Result]], test: str,
               path: Path) -> Path:
    """The paper's Figure 3 on ``test``: ROC of CE, aAUC, the best apAUC and aAUCsum, one
    panel per front end (seed-averaged curves)."""
    grid = np.linspace(0.0, 1.0, 201)
    fig, axes = plt.subplots(1, len(chosen), figsize=(5 * len(chosen), 4.6), squeeze=False)
    for ax, (front, picks) in zip(axes[0], chosen.items(), strict=True):
        for result in (r for r in picks.values() if r.values(test)):
            tracker = StudyTracker(study_settings(specs[result.study]), result.study,
                                   create=False)
            auc = fmean(result.values(test))
            ax.plot(grid, mean_roc(tracker, result, test, grid),
                    label=f"{result.label} (AUC {100 * auc:.1f} %)")
        ax.plot([0, 1], [0, 1], color="0.8", linestyle=":")
        ax.set(xlabel="false positive rate", ylabel="true positive rate",
               title=f"{test}, {front} front end", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def figure_picks(rows: Sequence[Result]) -> dict[str, Result]:
    """CE, aAUC and the best (by mean validation AUC) apAUC and aAUCsum."""
    picks = {}
    for role, kind in (("ce", "ce"), ("aauc", "aauc"), ("apauc", "apauc"),
                       ("aaucsum", "aaucsum")):
        found = [r for r in rows if r.params[LOSS] == kind]
        if found:
            picks[role] = max(found, key=lambda r: fmean(r.val))
    return picks


@dataclass
class JointSummary:
    """The joint study against the grids of its front end."""

    trials: int
    complete: int
    pruned: int
    seed_epochs: int  # trained
    full_seed_epochs: int  # the same trials, had none been pruned
    budget: int  # the tables' seed-epochs on the front end
    best: Result | None
    reached_at: int | None  # seed-epochs trained when a trial first matched the best grid val
    significance: str
    exported: Path | None


def joint_summary(spec: ReplicationSpec, grid_best: Result | None, docs: Path
                  ) -> JointSummary | None:
    """What the joint study did with its budget (None if it has not run)."""
    study_spec = joint_study(spec)
    if study_spec is None or not _exists(study_spec):
        return None
    study = optuna.load_study(study_name=study_spec.name, storage=study_spec.storage_url)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    k, epochs = study_spec.search.repeats, study_spec.base.training.epochs
    used, reached = 0, None
    for trial in sorted(trials, key=lambda t: t.number):
        used += len(trial.intermediate_values) * k
        if reached is None and grid_best is not None and trial.value is not None and \
                trial.state == TrialState.COMPLETE and trial.value >= fmean(grid_best.val):
            reached = used
    results = study_results(study_spec)
    best = max(results, key=lambda r: fmean(r.val)) if results else None
    significance = compare_top(study_spec, study)
    exported = None
    if best is not None:
        exported = docs / "joint-best.yaml"
        portable_config(study_spec, study.trials[best.trial]).save(exported)
    trained = [t for t in trials if t.intermediate_values]
    return JointSummary(
        len(trials), sum(t.state == TrialState.COMPLETE for t in trials),
        sum(t.state == TrialState.PRUNED for t in trials), used,
        len(trained) * epochs * k, table_budget(spec, spec.joint.front_end), best, reached,
        significance.texts().get("significance.txt", "") if significance else "", exported)


def portable_config(spec: StudySpec, trial: optuna.trial.FrozenTrial) -> RunConfig:
    """`musicdet-search export`'s run config of ``trial`` with the spec's own (relative) data
    paths, not this machine's."""
    config = trial_config(spec, trial)
    return replace(config, data=replace(config.data, cache_dir=spec.base.data.cache_dir,
                                        path=spec.base.data.path))


def _exists(spec: StudySpec) -> bool:
    return existing_study(spec) is not None


def learning_curve(spec: ReplicationSpec, tables: list[Result]
                   ) -> dict[str, dict[float, Result]]:
    """Loss label → corpus hours → result: CE and the best AUC-family configuration at every
    size (the tables' own size from the tables)."""
    part = spec.learning_curve
    if part is None:
        return {}
    studies = [s for _, fe, s in table_studies(spec) if fe == part.front_end]
    best = best_auc_family(studies)
    labels = ["cross entropy", loss_label({LOSS: best.pop("type"), **best})]
    hours = studies[0].base.data.synth_hours
    curve: dict[str, dict[float, Result]] = {label: {} for label in labels}
    for row in tables:
        if row.label in labels:
            curve[row.label][hours] = row
    for size, study in learning_curve_studies(spec):
        if _exists(study):
            for row in study_results(study):
                if row.label in curve:
                    curve[row.label][size] = row
    return curve


def learning_curve_figure(curve: dict[str, dict[float, Result]], tests: Sequence[str],
                          path: Path) -> Path:
    """Test AUC against corpus hours (log axis), mean and 95 % interval over seeds."""
    fig, axes = plt.subplots(1, len(tests), figsize=(5 * len(tests), 4), squeeze=False)
    for ax, test in zip(axes[0], tests, strict=True):
        for label, points in curve.items():
            hours = sorted(h for h, r in points.items() if r.values(test))
            means, halves = zip(*(interval(points[h].values(test)) for h in hours), strict=True) \
                if hours else ((), ())
            ax.errorbar(hours, [100 * m for m in means], yerr=[100 * h for h in halves],
                        marker="o", capsize=3, label=label)
        ax.set(xscale="log", xlabel="training corpus (hours)", ylabel="test AUC %",
               title=test)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


@dataclass
class Report:
    """Everything the document shows, read from the records."""

    spec: ReplicationSpec
    specs: dict[str, StudySpec]  # study name → spec
    tables: dict[str, list[Result]]  # front end → the 13 rows in table order
    tests: list[str]
    hours: dict[str, float]  # study name → wall hours (first trial start to last end)
    sizes: dict[str, tuple[int, float, float]]  # test → files, hours, music fraction
    joint: JointSummary | None
    curve: dict[str, dict[float, Result]]


def collect(spec: ReplicationSpec, docs: Path) -> Report:
    """Read every study of ``spec`` that exists."""
    specs: dict[str, StudySpec] = {}
    tables: dict[str, list[Result]] = {}
    for _, front, study in table_studies(spec):
        rows = study_results(study) if _exists(study) else []
        if rows:
            specs[study.name] = study
            tables.setdefault(front, []).extend(rows)
    for rows in tables.values():
        rows.sort(key=paper_order)
    everything = [r for rows in tables.values() for r in rows]
    tests = test_names(everything, spec)
    front = spec.joint.front_end if spec.joint else next(iter(tables), "")
    grid_best = max(tables.get(front, []), key=lambda r: fmean(r.val), default=None)
    joint = joint_summary(spec, grid_best, docs)
    extra = [s for s in (joint_study(spec),) if s is not None and _exists(s)]
    curve = learning_curve(spec, tables.get(spec.learning_curve.front_end, [])) \
        if spec.learning_curve and tables else {}
    extra += [s for _, s in learning_curve_studies(spec) if _exists(s)] if curve else []
    specs |= {s.name: s for s in extra}
    hours = {name: _wall_hours(s) for name, s in specs.items()}
    sizes = {t: _test_size(specs, everything, t) for t in tests}
    return Report(spec, specs, tables, tests, hours, sizes, joint, curve)


def paper_order(row: Result) -> int:
    """The row's place in the paper's tables (rows it does not have go last)."""
    rows = list(PAPER)
    return rows.index(row.label) if row.label in rows else len(rows)


def _wall_hours(spec: StudySpec) -> float:
    study = optuna.load_study(study_name=spec.name, storage=spec.storage_url)
    times = [(t.datetime_start, t.datetime_complete) for t in study.get_trials(deepcopy=False)
             if t.datetime_start and t.datetime_complete]
    if not times:
        return 0.0
    return (max(e for _, e in times) - min(s for s, _ in times)).total_seconds() / 3600


def _test_size(specs: dict[str, StudySpec], rows: list[Result], test: str
               ) -> tuple[int, float, float]:
    """Files, hours and music fraction of test set ``test`` (from one of its score files)."""
    row = next(r for r in rows if r.values(test))
    tracker = StudyTracker(study_settings(specs[row.study]), row.study, create=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.client.download_artifacts(
            row.run_id, f"{SCORES_FOLDER}/{test}-seed{row.seeds[0]}.npz", tmp)
        with np.load(path) as saved:
            mask, labels = saved["mask"], saved["labels"]
            files = len(saved["names"])
    hop = specs[row.study].base.features.hop_seconds
    return files, len(labels) * hop / 3600, float(labels[mask].mean())


def render(report: Report, docs: Path) -> str:
    """docs/results.md; figures are written under ``docs``/figures."""
    spec, tests = report.spec, report.tests
    first = next(iter(report.specs.values()))
    base = first.base
    lines = [
        "# Replicating Gimeno et al. (2020) on this platform",
        "",
        f"Generated by `musicdet-search report {spec.source}` ({_today()}) from the Optuna "
        "and MLflow records of the studies below; do not edit by hand. The paper's figures "
        "are its Seyerlehner TV test-set results (trained on 27 h of OpenBMAT); ours come "
        "from the platform on this machine.",
        "",
        "## Set-up",
        "",
        f"- Training data: the embedded synthetic broadcast corpus, {base.data.synth_hours:g} h "
        f"(seed {base.data.synth_seed}), {100 * base.data.validation_fraction:g} % of its "
        "programmes held out for validation (selection and the kept epoch).",
        f"- Model and schedule: 2 × BiGRU-{base.model.hidden_size}, {base.training.epochs} "
        f"epochs × {base.training.sequences_per_epoch} sequences of "
        f"{base.training.sequence_frames} frames, minibatch {base.training.batch_size}, Adam "
        f"{base.training.lr_start:g} → {base.training.lr_end:g}; {spec.repeats} seeds per "
        "configuration (initial weights, sequences drawn).",
        "- Front ends: " + "; ".join(
            f"**{name}** (`{_flat(over)}`)" for name, over in spec.front_ends.items()) + ".",
        "- Test sets, scored after training, never used for selection: " + "; ".join(
            f"**{t}** ({n} files, {h:.2f} h, {100 * m:.0f} % music)"
            for t, (n, h, m) in report.sizes.items()) + ".",
        "- Intervals: mean ± half-width of the 95 % Student-t interval over the seeds; "
        "differences: Welch's 95 % interval. Recall and F1 at precision 0.90 (0 where no "
        "threshold reaches it).",
        "- Wall time on this machine (2 CPU cores, no GPU): " + ", ".join(
            f"{name} {60 * h:.0f} min" for name, h in report.hours.items())
        + f"; {sum(report.hours.values()):.1f} h in all.",
        "",
        "## AUC at a glance",
        "",
        overview_table(report.tables, tests),
        "",
    ]
    lines += findings(report)
    for front, rows in report.tables.items():
        for test in tests:
            lines += [f"## Tables 1–3, {front} front end, {test} test set", "",
                      results_table(rows, test), ""]
    lines += claims_section(report)
    lines += roc_section(report, docs)
    lines += joint_section(report)
    lines += curve_section(report, docs)
    return "\n".join(lines) + "\n"


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _flat(data: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for key, value in data.items():
        if isinstance(value, dict):
            parts.append(_flat(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}: {value}")
    return ", ".join(parts)


def findings(report: Report) -> list[str]:
    """Per front end and test set: the best configuration against cross entropy, and the
    configuration synthetic validation would pick."""
    lines = ["## Findings", ""]
    for front, rows in report.tables.items():
        ce = next((r for r in rows if r.params[LOSS] == "ce"), None)
        picked = max(rows, key=lambda r: fmean(r.val))
        for test in report.tests:
            scored = [r for r in rows if r.values(test)]
            if not scored or ce is None or not ce.values(test):
                continue
            best = max(scored, key=lambda r: fmean(r.values(test)))
            diff, low, high = welch(best.values(test), ce.values(test))
            line = (f"- **{front} front end, {test}:** best {best.label} "
                    f"({_cell(best.values(test), 100, 1)} %), cross entropy "
                    f"{_cell(ce.values(test), 100, 1)} %")
            line += "." if best is ce else (f": ΔAUC {100 * diff:+.1f} [{100 * low:+.1f}, "
                                            f"{100 * high:+.1f}], {_against(low, high)}.")
            if picked.values(test):
                line += (f" Synthetic validation would pick {picked.label} "
                         f"({_cell(picked.values(test), 100, 1)} % here).")
            lines.append(line)
    training = next(iter(report.specs.values())).base.training
    steps = training.epochs * (training.sequences_per_epoch or 0) // training.batch_size
    for test in report.tests:
        means = [fmean(r.values(test)) for rows in report.tables.values() for r in rows
                 if r.values(test)]
        lines.append(f"- **Scale:** {steps} optimiser steps per model; mean AUC on {test} "
                     f"{100 * min(means):.1f}–{100 * max(means):.1f} % across all rows and "
                     "front ends (the paper: 86.8–92.0 %).")
    return lines + [""]


def _against(low: float, high: float) -> str:
    return {"holds": "better than cross entropy", "reverses": "worse than cross entropy",
            "not distinguishable": "not distinguishable from it"}[verdict(low, high)]


def claims_section(report: Report) -> list[str]:
    """The paper's claims on every front end and test set, and whether synthetic validation
    ranks the configurations as the test sets do."""
    lines = ["## The paper's claims", "",
             "ΔAUC in AUC points (the first configuration minus the second), 95 % interval.", "",
             "| claim | front end | test set | ΔAUC | verdict |", "|---|---|---|---|---|"]
    tally: dict[tuple[str, str], dict[str, int]] = {}
    for front, rows in report.tables.items():
        for test in report.tests:
            found = claim_rows(rows, test, front)
            lines += found
            counts = tally.setdefault((front, test), {})
            for line in found:
                said = line.rsplit("|", 2)[1].strip()
                counts[said] = counts.get(said, 0) + 1
    lines += ["", "Verdicts: " + "; ".join(
        f"{front} front end on {test}: " + ", ".join(f"{n} {said}" for said, n in c.items())
        for (front, test), c in tally.items() if c) + ".", ""]
    lines += ["### Does synthetic validation predict the test sets?", "",
              "Spearman ρ between the configurations' mean validation AUC and their mean test "
              "AUC, and whether both put the same configuration first.", "",
              "| front end | test set | ρ | same best |", "|---|---|---|---|"]
    for front, rows in report.tables.items():
        for test in report.tests:
            agreement = rank_agreement(rows, test)
            if agreement is None:
                continue
            rho, same = agreement
            lines.append(f"| {front} | {test} | {rho:+.2f} | {'yes' if same else 'no'} |")
    return lines + [""]


def roc_section(report: Report, docs: Path) -> list[str]:
    lines = ["## ROC curves (the paper's Figure 3)", "",
             "Cross entropy, aAUC and the apAUC and aAUCsum configurations with the best mean "
             "validation AUC; each curve averages the seeds' ROC curves at fixed false "
             "positive rates.", ""]
    chosen = {front: figure_picks(rows) for front, rows in report.tables.items()}
    for test in report.tests:
        path = roc_figure(report.specs, chosen, test, docs / FIGURES / f"roc-{test}.png")
        lines += [f"![ROC on {test}]({FIGURES}/{path.name})", ""]
    return lines


def joint_section(report: Report) -> list[str]:
    joint = report.joint
    if joint is None:
        return []
    front = report.spec.joint.front_end
    grid_best = max(report.tables.get(front, []), key=lambda r: fmean(r.val), default=None)
    saved = 1 - joint.seed_epochs / joint.full_seed_epochs if joint.full_seed_epochs else 0.0
    lines = ["## The joint search against the grids", "",
             f"TPE over the loss type and α, β, γ, λ, δ with ASHA, {front} front end, "
             f"{report.spec.repeats} seeds per trial, run until it has trained as many "
             f"seed-epochs as the three grids on that front end ({joint.budget}); "
             + ("it has." if joint.seed_epochs >= joint.budget else
                f"so far {joint.seed_epochs} ({100 * joint.seed_epochs / joint.budget:.0f} %)."),
             "",
             f"- Trials: {joint.trials} ({joint.complete} complete, {joint.pruned} pruned); "
             f"{joint.seed_epochs} seed-epochs trained, {joint.full_seed_epochs} had none been "
             f"pruned: ASHA saved {100 * saved:.0f} %."]
    if joint.best is not None and grid_best is not None:
        lines.append(f"- Best joint trial: {joint.best.study} trial {joint.best.trial}, "
                     f"{joint.best.label} (δ={_num(joint.best.params.get('delta', 10.0))}), "
                     f"validation AUC {_cell(joint.best.val, 100, 1)} %; best grid point: "
                     f"{grid_best.label}, {_cell(grid_best.val, 100, 1)} %.")
        share = 100 * (joint.reached_at or 0) / joint.budget
        reached = f"after {joint.reached_at} seed-epochs ({share:.0f} % of the grids' " \
            "budget)" if joint.reached_at else f"not within the {joint.seed_epochs} seed-epochs " \
            "it trained"
        lines.append(f"- A joint trial first matched the best grid point's validation AUC "
                     f"{reached}.")
        for test in report.tests:
            if joint.best.values(test) and grid_best.values(test):
                diff, low, high = welch(joint.best.values(test), grid_best.values(test))
                lines.append(
                    f"- On {test}: joint {_cell(joint.best.values(test), 100, 1)} % vs grid "
                    f"{_cell(grid_best.values(test), 100, 1)} %, ΔAUC {100 * diff:+.1f} "
                    f"[{100 * low:+.1f}, {100 * high:+.1f}]: at least as good "
                    f"{'— yes' if high >= 0 else '— no'}"
                    f"{' (not distinguishable)' if low < 0 < high else ''}.")
    if joint.exported is not None:
        lines.append(f"- Exported: [{joint.exported.name}]({joint.exported.name}) "
                     "(`musicdet train --config` trains it).")
    if joint.significance:
        lines += ["", "`musicdet-search best` on the joint study (paired bootstrap over "
                      "validation files, seed 0's models):", "", "```",
                  joint.significance.strip(), "```"]
    return lines + [""]


def curve_section(report: Report, docs: Path) -> list[str]:
    if not report.curve:
        return []
    path = learning_curve_figure(report.curve, report.tests, docs / FIGURES / "learning-curve.png")
    labels = list(report.curve)
    hours = sorted({h for points in report.curve.values() for h in points})
    lines = ["## Learning curve", "",
             f"Cross entropy against the best AUC-family configuration of the tables by mean "
             f"validation AUC ({labels[1]}) at "
             f"{', '.join(f'{h:g}' for h in hours)} h of training corpus, same schedule.", "",
             "| test set | hours | " + " | ".join(labels) + " | ΔAUC [95 %] |",
             "|---|---|" + "---|" * len(labels) + "---|"]
    ce = "cross entropy"
    other = next((label for label in labels if label != ce), None)
    for test in report.tests:
        for h in hours:
            cells = [_cell(report.curve[label][h].values(test), 100, 1)
                     if h in report.curve[label] else "–" for label in labels]
            delta = "–"
            if other and h in report.curve[ce] and h in report.curve[other]:
                a, b = report.curve[other][h].values(test), report.curve[ce][h].values(test)
                if a and b:
                    diff, low, high = welch(a, b)
                    delta = f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] " \
                            f"({verdict(low, high)})"
            lines.append(f"| {test} | {h:g} | " + " | ".join(cells) + f" | {delta} |")
    return lines + ["", f"![learning curve]({FIGURES}/{path.name})", ""]


def readme_block(report: Report) -> str:
    """The README's summary: the AUC table and the first real test set's ROC figure."""
    real = next((t for t in report.tests if t != "synthetic"), report.tests[0])
    return "\n".join([
        README_BEGIN,
        overview_table(report.tables, report.tests),
        "",
        f"![ROC on {real}](docs/{FIGURES}/roc-{real}.png)",
        README_END,
    ])


def write_report(spec: ReplicationSpec, out: Path, readme: Path | None = None) -> Path:
    """Write ``out`` (and its figures beside it); refresh the block between the results
    markers in ``readme`` if given."""
    docs = out.parent
    report = collect(spec, docs)
    if not report.tables or not report.tests:
        raise_unscored(spec)
    write_text(out, render(report, docs))
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if README_BEGIN in text and README_END in text:
            head, rest = text.split(README_BEGIN, 1)
            write_text(readme, head + readme_block(report) + rest.split(README_END, 1)[1])
    return out


def raise_unscored(spec: ReplicationSpec) -> None:
    raise UnfinishedError(f"replication {spec.name!r}: no table study has test-set scores yet; "
                          f"run musicdet-search replicate first")
