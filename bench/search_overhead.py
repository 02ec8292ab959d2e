"""Per-trial platform overhead: a study's trials vs bare `train()` runs of the same configs.

Runs a study of N_TRIALS trials (one at a time, 1 CPU, no pruning) in a scratch folder, then
trains the configs of its COMPLETE trials directly with 1 torch thread, and prints the ratio
of the mean trial wall time (Optuna start → complete) to the mean bare training time. Failed
or requeued trials (no duration) and duplicates (they copy an earlier result, untrained) are
counted and left out of the comparison.

``--repeats K`` runs the study with ``search.repeats: K`` on a local Ray of K CPUs (one per
seed, so the seeds can all run at once) and compares each trial with one bare seed's
training (the ideal when its seeds run concurrently); it also prints how much of a trial's
seed time its seeds overlapped (1.0: all at once), from their worker.json.

    python bench/search_overhead.py [--repeats K]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import fmean

import optuna
import torch
import yaml
from optuna.trial import TrialState

from musicdet.train import prepare_data, train
from search.export import load_study
from search.runner import connect_ray, run_study
from search.space import complete_params, loss_config
from search.spec import load_spec
from search.study import DUPLICATE_OF
from search.trainable import seed_folders, trial_dir, worker_info

N_TRIALS = 4
BASE = {"data": {"synth_hours": 0.05}, "model": {"hidden_size": 32},
        "training": {"epochs": 3, "sequences_per_epoch": 64, "batch_size": 16}}
STUDY = {
    "name": "overhead",
    "search": {"n_trials": N_TRIALS, "sampler": "random", "losses": ["ce", "aaucsum"]},
    "pruner": {"type": "none"}, "resources": {"cpus": 1, "max_concurrent": 1},
}


def timed_trials(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The COMPLETE trials that trained, the only ones with a start-to-complete wall time of
    training (a duplicate copies an earlier trial's result in no time)."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.duration is not None
            and DUPLICATE_OF not in t.user_attrs]


def summary(study_seconds: float, n_trials: int, trial_seconds: list[float],
            bare_seconds: list[float]) -> str:
    """The bench's report: study wall time, then mean trial vs mean bare training (seconds)."""
    left_out = n_trials - len(trial_seconds)
    lines = [f"study wall {study_seconds:.1f} s for {n_trials} trials (incl. Ray start, data, "
             f"MLflow); {left_out} left out (not COMPLETE, or duplicates)"]
    if not trial_seconds:
        return "\n".join([*lines, "no COMPLETE trial: nothing to compare"])
    mean_trial, mean_bare = fmean(trial_seconds), fmean(bare_seconds)
    return "\n".join([*lines, (
        f"mean trial {mean_trial:.2f} s, mean bare train() {mean_bare:.2f} s over "
        f"{len(trial_seconds)} configs, ratio {mean_trial / mean_bare:.3f} "
        f"(overhead {mean_trial - mean_bare:.2f} s/trial)")])


def seed_spans(folder: Path) -> tuple[float, float]:
    """A repeated trial's seeds, from their worker.json: the time all of them were running
    over the longest seed's time (1.0: all at once, ~0 one after another), and the time from
    the first seed's start to the last one's end (s)."""
    spans = [worker_info(f) for f in seed_folders(folder)]
    together = min(s["ended"] for s in spans) - max(s["started"] for s in spans)
    longest = max(s["ended"] - s["started"] for s in spans)
    return max(0.0, together) / longest, \
        max(s["ended"] for s in spans) - min(s["started"] for s in spans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1, help="search.repeats (default 1)")
    repeats = parser.parse_args().repeats
    cache = str(Path("runs/cache").resolve())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "study.yaml"
        search = {**STUDY["search"], "repeats": repeats}
        base = {**BASE, "data": {**BASE["data"], "cache_dir": cache}}
        path.write_text(yaml.safe_dump({**STUDY, "base": base, "search": search,
                                        "storage": {"workdir": f"{folder}/runs"},
                                        "mlflow": {"tracking_uri": f"sqlite:///{folder}/m.db",
                                                   "artifact_location": f"{folder}/art"}}))
        spec = load_spec(path)
        started = time.perf_counter()
        if repeats > 1:
            connect_ray(None, repeats)
        run_study(spec, out=None)
        study_seconds = time.perf_counter() - started
        all_trials = load_study(spec).trials
        trials = timed_trials(all_trials)
        trial_seconds = [t.duration.total_seconds() for t in trials]  # type: ignore[union-attr]
        torch.set_num_threads(1)
        data = prepare_data(spec.base_config(), progress=False)
        bare = []
        for i, trial in enumerate(trials):
            config = spec.base_config(loss_config(complete_params(spec.search, trial.params)))
            began = time.perf_counter()
            train(config, Path(folder) / f"bare{i}", data=data, progress=False)
            bare.append(time.perf_counter() - began)
        spans = [seed_spans(trial_dir(spec.workdir, t.number)) for t in trials if repeats > 1]
    print(summary(study_seconds, len(all_trials), trial_seconds, bare))
    if spans:
        outside = [wall - seeds for wall, (_, seeds) in zip(trial_seconds, spans, strict=True)]
        print(f"{repeats} seeds per trial on {repeats} CPUs, compared with one bare seed; "
              f"seeds overlapped {fmean(o for o, _ in spans):.2f} of the longest seed's time "
              f"(per trial: {', '.join(f'{o:.2f}' for o, _ in spans)}); trial wall outside "
              f"its seeds' span: {', '.join(f'{o:.1f}' for o in outside)} s")


if __name__ == "__main__":
    main()
