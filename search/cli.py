"""musicdet-search: run, watch, rank and export loss-configuration studies.

Every command takes the study's spec file (studies/*.yaml): it names the study, its Optuna
storage and its MLflow settings; --storage and --tracking-uri override the last two.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from musicdet import __version__
from musicdet.configtools import ConfigError
from musicdet.errors import EPILOG, CommandError, ExitStatus, report

from .export import export_best, format_table, load_study, pareto_table, top_trials
from .figures import PARETO_PNG, pareto_figure
from .replication import ReplicationSpec, load_replication, replicate, with_test
from .report import write_report
from .runner import run_study
from .significance import compare_top
from .spec import StudySpec, check_database_url, load_spec
from .study import DUPLICATE_OF, lost_database, pareto_front, study_counts, tally
from .testsets import check_test_sets, parse_test_option, score_study
from .tracking import MlflowSettings, StudyTracker, study_settings

PROG = "musicdet-search"
UI_HOST = "127.0.0.1"  # the UI has no authentication: loopback only


def cmd_run(args: argparse.Namespace) -> int:
    """Run a study (or continue it with --resume, or join it from a second driver)."""
    spec = _spec(args)
    result = run_study(spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus)
    best = f"best value {result.best_value:.4f} (trial {result.best_trial})" \
        if result.best_value is not None else "no completed trial"
    if result.front:
        best = f"Pareto front: trials {', '.join(map(str, result.front))} (musicdet-search best)"
    print(f"study {result.name}: {result.finished}/{result.n_trials} trials finished in "
          f"{result.seconds:.0f} s; {best}")
    return ExitStatus.OK if result.finished >= result.n_trials else ExitStatus.UNFINISHED


def cmd_status(args: argparse.Namespace) -> int:
    """Trials by state, best so far and an ETA."""
    spec = _spec(args)
    study = load_study(spec)
    trials = study.get_trials(deepcopy=False)
    counts = study_counts(study)
    print(f"study {spec.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if spec.search.multi_objective:
        front = [t.number for t in pareto_front(study)]
        if front:
            print(f"Pareto front: {len(front)} trials ({', '.join(map(str, front))}); "
                  "musicdet-search best lists them")
    elif rows := top_trials(spec, study, 1):
        print(f"best: trial {rows[0].number} {spec.search.primary.metric} "
              f"{rows[0].value:.4f} {rows[0].loss}")
    done = [t.duration.total_seconds() for t in trials if t.duration and t.datetime_complete
            and DUPLICATE_OF not in t.user_attrs]  # a duplicate takes no training time
    left = int(spec.search.n_trials or 0) - tally(trials).finished
    if done and left > 0:
        eta = left * sum(done) / len(done) / spec.resources.max_concurrent
        print(f"{left} trials to go, about {eta / 60:.1f} min at {spec.resources.max_concurrent} "
              "at once")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """Table of the top trials, then the best against the next ones (--compare N); a
    multi-objective study: its Pareto front and its plot instead of the table.

    ΔAUC = AUC(best) − AUC(other) on their validation frames, with a paired bootstrap 95 %
    interval over the validation files (the same resample for both), and whether the two
    are distinguishable at 95 % (in a multi-objective study "best" is by the first objective).
    """
    spec = _spec(args)
    study = load_study(spec)
    if spec.search.multi_objective:
        print(pareto_table(spec, study))
        path = pareto_figure(study, pareto_front(study), spec.workdir / "summary" / PARETO_PNG)
        if path is not None:
            print(f"plot: {path}")
        print(f"export one: musicdet-search export {args.spec} --trial N --out FILE")
    else:
        print(format_table(top_trials(spec, study, args.top), [spec.search.primary.metric]))
    significance = compare_top(spec, study, args.compare) if args.compare >= 2 else None
    if significance is not None:
        print(f"\n{significance.format()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the best trial's run config, or trial N's (for musicdet train --config)."""
    spec = _spec(args)
    number, path = export_best(spec, args.out, register=args.register, trial=args.trial,
                               model_file=args.model)
    if args.trial is not None and number != args.trial:
        print(f"trial {args.trial} is a duplicate of trial {number} (same configuration)")
    print(f"trial {number} → {path}")
    if args.register:
        print(f"registered as {study_settings(spec).registered_model}@champion")
    print(f"train it: musicdet train --config {path}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI for the study's backend on 127.0.0.1; print the study's URL."""
    spec = _spec(args)
    tracker = StudyTracker(study_settings(spec), spec.name, create=False)
    objective = spec.search.primary
    tracker.publish_trials_view(objective.metric, objective.direction == "maximize")
    port = args.port or _free_port()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    server = _start_mlflow_server(tracker.settings.tracking_uri, port)
    try:
        base = f"http://{UI_HOST}:{port}"
        if not _wait_until_serving(server, base, args.start_timeout):
            return report(PROG, f"the MLflow server on port {port} did not start (exit status "
                                f"{server.poll()}); is the port in use?", ExitStatus.FAILED)
        print(f"MLflow UI for study {spec.name}: {tracker.ui_url(base)}", flush=True)
        return server.wait()
    except KeyboardInterrupt:  # Ctrl-C is how a person stops the UI
        return 0
    finally:
        _stop(server)


def _start_mlflow_server(backend_uri: str, port: int) -> subprocess.Popen[bytes]:
    """`mlflow server` on loopback, one worker, no job runner, in a process group of its own."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_BACKEND_STORE_URI": backend_uri}  # not argv: `ps` shows argv to every user
    return subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", UI_HOST, "--port", str(port),
         "--workers", "1"],
        env=env, start_new_session=True)


def _wait_until_serving(server: subprocess.Popen[bytes], base: str, seconds: float) -> bool:
    """Poll ``base``/health until it answers 200 (True) or the server exits / time runs out."""
    deadline = time.monotonic() + seconds
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def _stop(server: subprocess.Popen[bytes], seconds: float = 15.0) -> None:
    """Terminate the server's whole process group (uvicorn included) and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while _group_alive(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def _group_alive(server: subprocess.Popen[bytes]) -> bool:
    server.poll()  # reap the leader: a zombie still counts as a member of its group
    try:
        os.killpg(server.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((UI_HOST, 0))
        return int(sock.getsockname()[1])


def _spec(args: argparse.Namespace) -> StudySpec:
    """The spec file with the command line's overrides applied."""
    spec = load_spec(args.spec)
    if getattr(args, "storage", None):
        check_database_url(args.storage, "--storage")
        spec = replace(spec, storage=replace(spec.storage, url=args.storage))
    if getattr(args, "tracking_uri", None):
        try:
            MlflowSettings(tracking_uri=args.tracking_uri)  # its rules, before anything starts
        except ConfigError as error:
            raise ConfigError("--tracking-uri", error.message) from None
        spec = replace(spec, mlflow=replace(spec.mlflow, tracking_uri=args.tracking_uri))
    if getattr(args, "trials", None):
        if spec.search.grid is not None:
            raise ConfigError("--trials", "a grid study runs each grid entry once")
        spec = replace(spec, search=replace(spec.search, n_trials=args.trials))
    return spec


def cmd_score(args: argparse.Namespace) -> int:
    """Score every completed trial's models (each seed) on held-out test sets.

    Metrics test_NAME_auc, _eer, _recall, _f1 (mean, _sd, _seedS) go to each trial's MLflow
    run, frame scores to its test-scores/ artifacts; trials already scored are skipped."""
    spec = _spec(args)
    tests = dict(parse_test_option(text) for text in args.test)
    check_test_sets(tests)
    scored = score_study(spec, tests, out=sys.stdout)
    print(f"study {spec.name}: {scored} trial × test-set scorings")
    return 0


def cmd_replicate(args: argparse.Namespace) -> int:
    """Run a replication: the tables on each front end, the joint study, the learning curve.

    The spec (studies/replication.yaml) names them: every table on every front end, the joint
    study up to the tables' budget, the learning curve; each study is scored on the test sets.

    Every study resumes where it stopped, so an interrupted replication continues when run
    again; then musicdet-search report writes docs/results.md."""
    spec = _replication(args)
    check_test_sets(spec.test)
    replicate(spec, num_cpus=args.num_cpus, out=sys.stdout,
              after_study=lambda study: score_study(study, spec.test, out=sys.stdout))
    print(f"replication {spec.name} done; report: musicdet-search report {args.spec}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the replication report: docs/results.md, its figures, the README's results.

    Everything comes from the studies' Optuna and MLflow records; the README's block between
    its results markers is replaced."""
    spec = load_replication(args.spec)
    path = write_report(spec, Path(args.out), Path(args.readme) if args.readme else None)
    print(f"report → {path}")
    return 0


def _replication(args: argparse.Namespace) -> ReplicationSpec:
    spec = load_replication(args.spec)
    for text in args.test:
        spec = with_test(spec, *parse_test_option(text))
    return spec


def _test_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", action="append", default=[], metavar="NAME=FORMAT:PATH",
                   help="a labelled test set, e.g. real=generic:data/real (repeatable)")


def _score_args(p: argparse.ArgumentParser) -> None:
    _storage_arg(p)
    _tracking_arg(p)
    _test_arg(p)


def _replicate_args(p: argparse.ArgumentParser) -> None:
    _test_arg(p)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="docs/results.md", help="report file (%(default)s)")
    p.add_argument("--readme", default="README.md",
                   help="README whose results block to refresh (%(default)s; '' for none)")


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage URL (overrides storage.url)")


def _tracking_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow tracking URI (overrides mlflow.tracking_uri "
                                          "of the spec and mlflow.yaml)")


def _run_args(p: argparse.ArgumentParser) -> None:
    _storage_arg(p)
    _tracking_arg(p)
    p.add_argument("--resume", action="store_true",
                   help="continue an existing study (or join it from another driver)")
    p.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance")
    p.add_argument("--trials", type=int, help="override search.n_trials")


def _export_args(p: argparse.ArgumentParser) -> None:
    _storage_arg(p)
    _tracking_arg(p)
    p.add_argument("--out", required=True, help="YAML file to write")
    p.add_argument("--trial", type=int, metavar="N",
                   help="export trial number N (COMPLETE; not PRUNED) instead of the best; "
                        "needed for a multi-objective study (e.g. a point of its Pareto front)")
    p.add_argument("--register", action="store_true",
                   help="register the exported trial's model in MLflow with alias champion "
                        "(a pyfunc model: mlflow models serve -m models:/NAME@champion)")
    p.add_argument("--model", type=Path, metavar="PATH",
                   help="with --register: register this model file instead, e.g. the one "
                        "musicdet train --config made from the exported YAML")


def _best_args(p: argparse.ArgumentParser) -> None:
    _storage_arg(p)
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="how many of the best COMPLETE trials to list (10); a multi-objective "
                        "study lists its whole Pareto front")
    p.add_argument("--compare", type=int, default=5, metavar="N",
                   help="compare the best with the next N-1 trials: ΔAUC and a paired "
                        "bootstrap 95 %% interval over validation files (5; 0: no comparison)")


def _ui_args(p: argparse.ArgumentParser) -> None:
    _tracking_arg(p)
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (0: any free one)")
    p.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds to wait for the server to answer")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int],
                          Callable[[argparse.ArgumentParser], None]]] = {
    "run": (cmd_run, _run_args),
    "status": (cmd_status, _storage_arg),
    "best": (cmd_best, _best_args),
    "export": (cmd_export, _export_args),
    "ui": (cmd_ui, _ui_args),
    "score": (cmd_score, _score_args),
    "replicate": (cmd_replicate, _replicate_args),
    "report": (cmd_report, _report_args),
}
REPLICATION_COMMANDS = ("replicate", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (func, add_args) in COMMANDS.items():
        doc = inspect.cleandoc(func.__doc__ or "")
        sub = commands.add_parser(name, help=doc.splitlines()[0], description=doc,
                                  epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("spec", help="replication spec YAML (studies/replication.yaml)"
                         if name in REPLICATION_COMMANDS else "study spec YAML (studies/*.yaml)")
        add_args(sub)
        sub.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as error:
        return report(PROG, error, error.status)
    except ConfigError as error:
        return report(PROG, error, ExitStatus.BAD_INPUT)
    except Exception as error:
        reason = lost_database(error)
        if reason is None:
            raise
        return report(PROG, f"lost the connection to the study's database ({reason}); check "
                            "the database, then continue with --resume", ExitStatus.LOST_DATABASE)
    except KeyboardInterrupt:
        return report(PROG, "interrupted; continue with --resume", ExitStatus.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
