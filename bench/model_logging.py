"""Benchmark the per-trial cost of logging a trial's model as an MLflow pyfunc LoggedModel.

    python bench/model_logging.py [--trials 6]

Logs the default detector (the paper's size) once per trial run into a scratch MLflow
(SQLite + local artifacts), as `StudyTracker.finish_trial` does, and prints the first
logging time (imports, first save) and the mean of the others, and the logged size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import fmean

from mlflow import MlflowClient

from musicdet.shipped import default_model
from search.pyfunc import log_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="musicdet-logging-") as tmp:
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        artifacts = Path(tmp) / "artifacts"
        experiment = client.create_experiment("bench", artifact_location=artifacts.as_uri())
        seconds = []
        for _ in range(args.trials):
            run = client.create_run(experiment)
            started = time.perf_counter()
            log_detector(client, experiment, default_model(), run.info.run_id)
            seconds.append(time.perf_counter() - started)
        size = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file())
        print(f"model logging per trial: first {seconds[0]:.2f} s, then mean "
              f"{fmean(seconds[1:]):.2f} s (min {min(seconds[1:]):.2f}, max "
              f"{max(seconds[1:]):.2f}) over {len(seconds) - 1}; "
              f"{size / len(seconds) / 1e6:.1f} MB per logged model")


if __name__ == "__main__":
    main()
