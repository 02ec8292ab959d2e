"""`musicdet-search ui`: a real MLflow server on 127.0.0.1 over a study's backend, the URL
it prints, and the shared view that URL opens (the browser check is .ci/ui_check.py)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from studyutil import DRIVER_ENV, free_port, rest, write_spec

from search.spec import load_spec
from search.tracking import ROLE, TRIALS_VIEW, StudyTracker, study_settings, trials_view_state

UI = [sys.executable, "-c", "from search.cli import main; raise SystemExit(main())", "ui"]


def test_view_puts_the_objective_first_and_orders_trials_by_it() -> None:
    state = trials_view_state("val_eer", maximize=False)
    assert [c["metricKey"] for c in state["compareRunCharts"]][:2] == ["val_eer", "val_auc"]
    assert {c["type"] for c in state["compareRunCharts"]} == {"LINE"}
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`best_val_eer`", True)
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": ROLE}]
    assert state["useGroupedValuesInCharts"] is False


def tracked_study(spec_path: Path) -> tuple[str, list[str]]:
    """A study's MLflow records (parent run, two trials with val_auc per epoch), no training."""
    spec = load_spec(spec_path)
    tracker = StudyTracker(study_settings(spec), spec.name)
    parent = tracker.create_parent(spec.to_dict())
    trials = []
    for number, loss in enumerate(("ce", "aauc")):
        run_id = tracker.trial_run(parent, number, number, f"ray-{number}", {"loss": loss})
        for epoch in (1, 2):
            tracker.log_epoch(run_id, {"val_auc": 0.5 + 0.1 * epoch + number / 100}, epoch)
        tracker.finish_trial(run_id, "FINISHED", {"val_auc": 0.7 + number / 100}, [])
        trials.append(run_id)
    return tracker.experiment_id, trials


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def wait_for_url(ui: subprocess.Popen[str], log: Path, seconds: float = 120.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and ui.poll() is None:
        found = re.search(r"MLflow UI for study tiny: (\S+)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.3)
    raise AssertionError(f"no URL printed (exit {ui.poll()}): {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_ui_serves_the_study_on_loopback_and_prints_its_trials_view(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, str(tmp_path / "cache"))
    experiment_id, trials = tracked_study(spec)
    port, log = free_port(), tmp_path / "ui.log"
    with open(log, "w") as output:
        ui = subprocess.Popen([*UI, str(spec), "--port", str(port)], cwd=tmp_path,
                              env=DRIVER_ENV, stdout=output, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        url = wait_for_url(ui, log)
        base = f"http://127.0.0.1:{port}"
        assert url.startswith(f"{base}/#/experiments/{experiment_id}/runs?")
        for parameter in ("workflowType=machine_learning", "compareRunsMode=CHART",
                          f"viewStateShareKey={TRIALS_VIEW}"):
            assert parameter in url
        assert listening_addresses(port) == {"127.0.0.1"}
        with urllib.request.urlopen(f"{base}/", timeout=30) as page:
            assert b"<div id=\"root\"" in page.read()

        tags = {t["key"]: t["value"] for t in rest(
            base, f"experiments/get?experiment_id={experiment_id}")["experiment"]["tags"]}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        assert json.loads(tags[f"mlflow.sharedViewState.{TRIALS_VIEW}"]) == trials_view_state()
        listed = rest(base, "runs/search", {"experiment_ids": [experiment_id],
                                            "filter": f"tags.`{ROLE}` = 'trial'"})["runs"]
        assert sorted(r["info"]["run_id"] for r in listed) == sorted(trials)
        history = rest(base, f"metrics/get-history?run_id={trials[1]}&metric_key=val_auc")
        assert [(m["step"], round(m["value"], 2)) for m in history["metrics"]] == \
            [(1, 0.61), (2, 0.71)]
    finally:
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 128 + signal.SIGTERM
    assert listening_addresses(port) == set()  # its server went with it
