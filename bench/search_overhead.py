"""Per-trial platform overhead: a study's trials vs bare `train()` runs of the same configs.

Runs a 4-trial study (one trial at a time, 1 CPU, no pruning) in a scratch folder, then
trains the same 4 configs directly with 1 torch thread, and prints the ratio of the mean
trial wall time (Optuna start → complete) to the mean bare training time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import yaml

from musicdet.train import prepare_data, train
from search.export import load_study
from search.runner import run_study
from search.space import complete_params, loss_config
from search.spec import load_spec

STUDY = {
    "name": "overhead", "data": {"synth_hours": 0.05},
    "model": {"hidden_size": 32}, "training": {"epochs": 3, "sequences_per_epoch": 64,
                                               "batch_size": 16},
    "search": {"n_trials": 4, "sampler": "random", "losses": ["ce", "aaucsum"]},
    "pruner": {"type": "none"}, "resources": {"cpus": 1, "max_concurrent": 1},
}


def main() -> None:
    cache = str(Path("runs/cache").resolve())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "study.yaml"
        path.write_text(yaml.safe_dump({**STUDY, "data": {**STUDY["data"], "cache_dir": cache},
                                        "storage": {"workdir": f"{folder}/runs"},
                                        "mlflow": {"tracking_uri": f"sqlite:///{folder}/m.db",
                                                   "artifact_location": f"{folder}/art"}}))
        spec = load_spec(path)
        started = time.perf_counter()
        run_study(spec, out=None)
        study_seconds = time.perf_counter() - started
        trials = load_study(spec).trials
        trial_seconds = [t.duration.total_seconds() for t in trials]
        torch.set_num_threads(1)
        data = prepare_data(spec.base_config(), progress=False)
        bare = []
        for i, trial in enumerate(trials):
            config = spec.base_config(loss_config(complete_params(spec.search, trial.params)))
            began = time.perf_counter()
            train(config, Path(folder) / f"bare{i}", data=data, progress=False)
            bare.append(time.perf_counter() - began)
    mean_trial, mean_bare = sum(trial_seconds) / 4, sum(bare) / 4
    print(f"study wall {study_seconds:.1f} s for 4 trials (incl. Ray start, data, MLflow)")
    print(f"mean trial {mean_trial:.2f} s, mean bare train() {mean_bare:.2f} s, "
          f"ratio {mean_trial / mean_bare:.3f} (overhead {mean_trial - mean_bare:.2f} s/trial)")


if __name__ == "__main__":
    main()
