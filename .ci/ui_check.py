"""End-to-end check of `musicdet-search ui` in a real browser (needs Debian's chromium).

Runs a tiny study (studies/smoke.yaml shrunk) in a temporary folder, starts
`musicdet-search ui` on a free port, checks through MLflow's REST API that the study's
trials and their val_auc histories exist, renders the printed URL in headless Chromium
(a fresh profile, as a person's first visit), checks the rendered page lists every trial
and writes a screenshot (.ci/mlflow-ui.png). Exits non-zero on any failure.

    python .ci/ui_check.py [--out .ci/mlflow-ui.png]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from musicdet.fsutil import atomic_path, write_text

ROOT = Path(__file__).resolve().parent.parent
SEARCH = [sys.executable, "-m", "search.cli"]
TINY = {"name": "ui-check", "data": {"synth_hours": 0.02}, "model": {"hidden_size": 16},
        "training": {"epochs": 3}, "search": {"n_trials": 4}}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=15000", "--hide-scrollbars"]


class CheckFailed(RuntimeError):
    """What the UI check found wrong (one line)."""


def tiny_spec(folder: Path) -> Path:
    """studies/smoke.yaml with a smaller corpus, model and trial count, in ``folder``."""
    spec = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
    for key, value in TINY.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "ui-check.yaml"
    write_text(path, yaml.safe_dump(spec))
    return path


def run_study(spec: Path) -> None:
    done = subprocess.run([*SEARCH, "run", str(spec)], cwd=spec.parent, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise CheckFailed(f"the study failed ({done.returncode}): {done.stderr[-2000:]}")


@contextlib.contextmanager
def ui_server(spec: Path) -> Iterator[str]:
    """`musicdet-search ui SPEC --port 0`; yields the URL it prints, stops it after."""
    log = spec.parent / "ui.log"
    with open(log, "w") as output:  # a file, not a pipe: nobody drains the server's log
        ui = subprocess.Popen([*SEARCH, "ui", str(spec), "--port", "0"], cwd=spec.parent,
                              stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield wait_for_url(ui, log)
    finally:
        ui.send_signal(signal.SIGTERM)  # it stops its MLflow server's process group
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


def wait_for_url(ui: subprocess.Popen[bytes], log: Path, seconds: float = 180.0) -> str:
    """The URL `musicdet-search ui` prints once its server answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = re.search(r"MLflow UI for study \S+: (http://\S+)", log.read_text())
        if found:
            return found.group(1)
        if ui.poll() is not None:
            break
        time.sleep(0.5)
    raise CheckFailed(f"`musicdet-search ui` printed no URL (exit {ui.poll()}): "
                      f"{log.read_text()[-1500:]}")


def api(base: str, endpoint: str, body: dict | None = None) -> dict:
    """GET (or POST ``body`` to) MLflow's REST API at ``base``/api/2.0/mlflow/``endpoint``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def check_backend(url: str, n_trials: int) -> list[str]:
    """The URL's experiment holds ``n_trials`` trial runs, each with a val_auc history."""
    parts = re.match(r"(http://127\.0\.0\.1:\d+)/#/experiments/(\d+)/runs\?", url)
    if not parts or "workflowType=machine_learning" not in url:
        raise CheckFailed(f"not a loopback model-training runs URL: {url}")
    base, experiment_id = parts.groups()
    experiment = api(base, f"experiments/get?experiment_id={experiment_id}")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    if tags.get("mlflow.experimentKind") != "custom_model_development":
        raise CheckFailed(f"experiment {experiment_id} is not marked as model training: {tags}")
    runs = api(base, "runs/search", {"experiment_ids": [experiment_id],
                                     "filter": "tags.`musicdet.role` = 'trial'"}).get("runs", [])
    if len(runs) != n_trials:
        raise CheckFailed(f"expected {n_trials} trial runs, the REST API lists {len(runs)}")
    names = []
    for run in runs:
        run_id = run["info"]["run_id"]
        history = api(base, f"metrics/get-history?run_id={run_id}&metric_key=val_auc")
        if not history.get("metrics"):
            raise CheckFailed(f"trial run {run_id} has no val_auc history")
        names.append(run["info"]["run_name"])
    return names


def chromium(binary: str, url: str, *args: str) -> str:
    """Render ``url`` in a fresh headless profile; stdout of chromium (e.g. --dump-dom)."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               *args, url], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise CheckFailed(f"chromium failed ({done.returncode}): {done.stderr[-1000:]}")
    return done.stdout


def check_page(binary: str, url: str, run_names: list[str], out: Path, size: str) -> None:
    """The rendered page lists every trial and shows the model-metric charts; screenshot."""
    dom = chromium(binary, url, f"--window-size={size}", "--dump-dom")
    missing = [name for name in run_names if f">{name}<" not in dom]
    if missing:
        raise CheckFailed(f"the page does not list the trials {missing}")
    charts = re.search(r">Model metrics<.*?>\((\d+)\)<", dom, re.S)
    if not charts or int(charts.group(1)) == 0:
        raise CheckFailed("the page shows no model-metric charts")
    with tempfile.TemporaryDirectory() as folder:
        shot = Path(folder) / "page.png"
        chromium(binary, url, f"--window-size={size}", f"--screenshot={shot}")
        if not shot.exists():
            raise CheckFailed("chromium wrote no screenshot")
        with atomic_path(out) as tmp:
            shutil.copyfile(shot, tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".ci" / "mlflow-ui.png")
    parser.add_argument("--window-size", default="1600,1000", help="WIDTH,HEIGHT in pixels")
    args = parser.parse_args()
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        print("ui_check: chromium not found; install it (apt-get install -y chromium)",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="musicdet-ui-") as folder:
            spec = tiny_spec(Path(folder))
            run_study(spec)
            with ui_server(spec) as url:
                names = check_backend(url, TINY["search"]["n_trials"])
                check_page(binary, url, names, args.out, args.window_size)
    except CheckFailed as error:
        print(f"ui_check: FAILED: {error}", file=sys.stderr)
        return 1
    print(f"ui_check: OK in {time.perf_counter() - started:.0f} s: {len(names)} trials listed "
          f"with val_auc curves at {url}; screenshot {args.out} "
          f"({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
