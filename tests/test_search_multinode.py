"""A real two-node Ray cluster on this machine: `ray start --head` plus a second node joined
with `ray start --address …`, a study submitted with `musicdet-search run --address`, trials
landing on both nodes, and only this cluster's processes stopped after (never `ray stop`,
which would stop every Ray instance on the machine).

Every node stays on loopback, at 127.0.0.2 and 127.0.0.3: Ray replaces a given 127.0.0.1 or
localhost (node address or --address) by the machine's interface address, which is not
reachable here; other 127.x.y.z addresses are kept. Each trial's node address then also says
which node ran it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyutil import (
    DRIVER_ENV,
    bench,
    free_port,
    start_driver,
    study_trials,
    wait_for,
    write_spec,
)

from search.trainable import trial_dir, worker_info

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"  # loopback, but not what Ray calls localhost
# An explicit --address never turns token authentication on by itself (Ray ≥ 2.59).
CLUSTER_ENV = {**DRIVER_ENV, "RAY_AUTH_MODE": "token"}


def _stat(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [state, ppid, …] ([] if gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    parents = {int(p.name): int(f[1]) for p in Path("/proc").glob("[0-9]*")
               if (f := _stat(p.name))}
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def stop_processes(pids: list[int], seconds: float = 20.0) -> None:
    """SIGTERM ``pids``, then SIGKILL whichever still runs after ``seconds``."""
    def running() -> list[int]:
        return [pid for pid in pids if _stat(pid)[:1] not in ([], ["Z"])]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in running():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + seconds
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)


def start_node(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``ray start ARGS --block``; returns once the node runs (its output says so)."""
    with log.open("wb") as out:
        node = subprocess.Popen([RAY, "start", *args, "--num-cpus", "1", "--block",
                                 "--disable-usage-stats", "--dashboard-agent-listen-port",
                                 str(free_port())], stdout=out, stderr=subprocess.STDOUT,
                                env=CLUSTER_ENV, start_new_session=True)
    try:
        wait_for(lambda: node.poll() is not None or "Ray runtime started" in log.read_text(),
                 180, f"ray start ({log})")
        assert node.poll() is None, log.read_text()
    except BaseException:
        stop_node(node)
        raise
    return node


def stop_node(node: subprocess.Popen[bytes]) -> None:
    """Stop the processes of one node only: `ray start --block` and all below it."""
    stop_processes([*descendants(node.pid), node.pid])
    node.wait(timeout=30)


@contextmanager
def two_node_cluster(folder: Path, *options: str) -> Iterator[str]:
    """A head and a second node, each with its own temp dir and ``options`` (``ray start``'s);
    yields the head's address."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        nodes.append(start_node(
            folder / "head.log", "--head", "--node-ip-address", HEAD_IP, "--port", str(port),
            "--include-dashboard", "false", "--dashboard-port", str(free_port()),
            "--temp-dir", str(temp / "head"), *options))
        nodes.append(start_node(
            folder / "worker.log", "--address", f"{HEAD_IP}:{port}", "--node-ip-address",
            WORKER_IP, "--temp-dir", str(temp / "worker"), *options))
        yield f"{HEAD_IP}:{port}"
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)


def test_study_submitted_to_a_two_node_cluster_runs_trials_on_both_nodes(
        tmp_path, cache_dir) -> None:
    path = write_spec(tmp_path, cache_dir, name="cluster", search={"n_trials": 3},
                      resources={"cpus": 1, "max_concurrent": 2})
    with two_node_cluster(tmp_path) as address:
        driver = start_driver(path, "--address", address, cwd=tmp_path, env=CLUSTER_ENV)
        out, err = driver.communicate(timeout=400)
        assert driver.returncode == 0, err
        assert "3/3 trials finished" in out
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/runs/cluster/optuna.db")
    trials = study_trials(storage, "cluster")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    workers = [worker_info(trial_dir(tmp_path / "runs/cluster", t.number)) for t in trials]
    assert {w["node_ip"] for w in workers} == {HEAD_IP, WORKER_IP}
    assert len({t.user_attrs["ray_node_id"] for t in trials}) == 2


OBJECT_STORE_BYTES = 80_000_000  # per node; Ray's minimum is 75 MiB (78.6 MB)


def test_features_larger_than_the_object_store_reach_both_nodes_from_the_shared_cache(
        tmp_path) -> None:
    """30 min of audio (≈ 100 MB of features) on nodes whose object stores hold 80 MB each:
    ``auto`` chooses the shared cache (the features exceed half the smallest store)."""
    bench("feature_transport").write_corpus(tmp_path / "corpus", 30 * 60)
    path = write_spec(tmp_path, str(tmp_path / "cache"), name="large", search={"n_trials": 2},
                      data={"format": "generic", "path": str(tmp_path / "corpus")},
                      training={"epochs": 1, "batch_size": 8, "sequences_per_epoch": 16},
                      resources={"cpus": 1, "max_concurrent": 2})
    with two_node_cluster(tmp_path, "--object-store-memory", str(OBJECT_STORE_BYTES)) as address:
        driver = start_driver(path, "--address", address, cwd=tmp_path, env=CLUSTER_ENV)
        out, err = driver.communicate(timeout=900)
        assert driver.returncode == 0, err
    assert "2/2 trials finished" in out
    features = next(line for line in out.splitlines() if line.startswith("features: "))
    assert float(features.split()[3]) * 1e6 > OBJECT_STORE_BYTES, features
    assert f"memory-mapped from {tmp_path}/runs/large/features (storage.features.transport: " \
           "auto → shared_cache (limit 40 MB))" in features
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/runs/large/optuna.db")
    trials = study_trials(storage, "large")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    workers = [worker_info(trial_dir(tmp_path / "runs/large", t.number)) for t in trials]
    assert {w["node_ip"] for w in workers} == {HEAD_IP, WORKER_IP}
