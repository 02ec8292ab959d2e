"""A study's figures (PNG) for its MLflow parent run and `musicdet-search best`: Optuna's
optimisation history, parameter importances (PED-ANOVA) and parallel coordinates, and for a
study of two objectives its Pareto front.

A multi-objective study's history, parallel coordinates and importances show its first
objective (the one that picks each trial's kept epoch).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from musicdet.fsutil import atomic_path

PARETO_FIGURE = "pareto_front"
PARETO_PNG = f"{PARETO_FIGURE}.png"
LEGEND = {"Trial": "dominated trials", "Best Trial": "Pareto front"}  # Optuna's labels, ours


def study_figures(study: optuna.Study, folder: Path,
                  front: Sequence[FrozenTrial] = ()) -> list[Path]:
    """Optimisation history, parameter importances, parallel coordinates and (two objectives)
    the Pareto front with ``front`` labelled (`search.study.pareto_front`), saved in
    ``folder``; a figure Optuna cannot draw is skipped (logged)."""
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    first: dict[str, Any] = {}
    lowest: dict[str, Any] = {}  # PED-ANOVA ranks a target's low values as the good ones
    if len(study.directions) > 1:
        name = study.metric_names[0] if study.metric_names else "objective 0"
        first = {"target": lambda t: t.values[0], "target_name": name}
        sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
        lowest = {"target": lambda t: sign * t.values[0], "target_name": name}
    figures: dict[str, Callable[[], Any]] = {
        "optimisation_history": lambda: plots.plot_optimization_history(study, **first),
        "parallel_coordinates": lambda: plots.plot_parallel_coordinate(study, **first)}
    if len(complete) >= 2 and any(t.params for t in complete):
        figures["param_importances"] = lambda: plots.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), **lowest)
    if len(study.directions) == 2:
        figures[PARETO_FIGURE] = lambda: pareto_axes(study, front)
    return [path for name, draw in figures.items()
            if (path := _save(draw, folder / f"{name}.png")) is not None]


def pareto_figure(study: optuna.Study, front: Sequence[FrozenTrial], path: Path) -> Path | None:
    """Save `pareto_axes` as a PNG at ``path``; None if the study has not two objectives or
    no COMPLETE trial."""
    if len(study.directions) != 2 or not front:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(lambda: pareto_axes(study, front), path)


def pareto_axes(study: optuna.Study, front: Sequence[FrozenTrial]) -> Any:
    """Optuna's Pareto-front scatter of a two-objective study (every COMPLETE trial, the
    non-dominated ones in their own colour), each trial of ``front`` labelled with its
    number."""
    from optuna.visualization import matplotlib as plots

    names = [_axis_name(study, i) for i in range(2)]
    axes = plots.plot_pareto_front(study, target_names=names)
    for trial in front:
        axes.annotate(str(trial.number), trial.values, textcoords="offset points",
                      xytext=(4, 4), fontsize="small")
    handles, labels = axes.get_legend_handles_labels()
    axes.legend(handles, [LEGEND.get(label, label) for label in labels], fontsize="small")
    axes.set_title(f"Pareto front of {study.study_name} (labels: trial numbers)")
    return axes


def _axis_name(study: optuna.Study, index: int) -> str:
    """``metric (higher is better)``: the objective's name (as the study stores it) and sense."""
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    better = "higher" if study.directions[index] == StudyDirection.MAXIMIZE else "lower"
    return f"{names[index]} ({better} is better)"


def _save(draw: Callable[[], Any], path: Path) -> Path | None:
    """Draw one figure and save it as PNG at ``path`` (atomically); None if Optuna refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", ".*importances of params to achieve low")
            axes = draw()
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        optuna.logging.get_logger("musicdet").warning("figure %s skipped: %s", path.stem, error)
        return None
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(figure)
    return path
