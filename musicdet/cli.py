"""`musicdet`: synthesise a corpus, extract features, train, evaluate and detect.

Every command is a thin wrapper over the Python API; its help is its docstring. Errors in
inputs print one line (``musicdet: error: …``) and exit with status 2; work that failed on
some files exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .audio import AudioError
from .configtools import ConfigError, parse_yaml

Command = Callable[[argparse.Namespace], int]


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the embedded synthetic broadcast corpus: programmes (16 kHz wav) + music labels (tsv).

    Deterministic per seed; programme i depends only on (seed, i), so a larger corpus
    extends a smaller one. Re-running with the same arguments does nothing.
    """
    from .synth import write_corpus

    paths = write_corpus(args.out, hours=args.hours, seed=args.seed, progress=not args.quiet)
    print(f"{len(paths)} programmes in {args.out}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Extract raw 140-dim features (128 log-Mel + 12 chroma, 100 frames/s) to DIR/NAME.npy."""
    from .audio import find_audio
    from .features import FeatureConfig, write_features

    failures = write_features(
        find_audio(args.audio), args.out, FeatureConfig(), skip_bad=args.skip_bad,
        progress=not args.quiet,
    )
    return _report_failures(failures)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the BiGRU detector from a run config (the YAML `musicdet-search export` writes).

    Resumes from OUT/checkpoint.pt when it exists; writes OUT/model.pt (the best epoch by
    validation AUC), OUT/history.json and OUT/config.yaml.
    """
    from .config import RunConfig, apply_overrides, load_run_config
    from .train import NonFiniteLossError, train

    config = load_run_config(args.config) if args.config else RunConfig()
    overrides = list(args.set)
    if args.data:
        overrides += [f"data.path={args.data}"]
    if args.format:
        overrides += [f"data.format={args.format}"]
    if args.device:
        overrides += [f"training.device={args.device}"]
    config = apply_overrides(config, overrides)
    try:
        result = train(config, args.out, resume=not args.restart, progress=not args.quiet)
    except NonFiniteLossError as error:
        print(f"musicdet: training failed: {error}", file=sys.stderr)
        return 1
    best = result.best
    print(
        f"best epoch {best.epoch}: val AUC {best.val_auc:.4f}, EER {best.val_eer:.4f}\n"
        f"model: {result.model_path}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a model file on labelled audio: AUC, EER, recall and F1 at precision 0.90.

    Frame-level, no collar, pooled over all files and per file. Writes OUT/metrics.json,
    OUT/roc.png and OUT/scores.png; --bootstrap N adds 95 % intervals resampling whole files.
    """
    from .evaluate import evaluate_model

    options = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "option must look like key=value")
        options[key] = parse_yaml(raw, f"--option {key}")
    report = evaluate_model(
        args.model, args.data, args.out, format=args.format, options=options,
        cache_dir=args.cache_dir, bootstrap=args.bootstrap, seed=args.seed,
        progress=not args.quiet,
    )
    pooled = report["pooled"]
    recall, f1 = (f"{pooled[k]:.4f}" if pooled[k] is not None else "n/a" for k in ("recall", "f1"))
    print(f"{len(report['files'])} files: AUC {pooled['auc']:.4f}, EER {pooled['eer']:.4f}, "
          f"recall {recall}, F1 {f1} at P=0.90\nmetrics: {args.out / 'metrics.json'}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect music in audio files of any length: OUT/NAME.segments.EXT (+ frame scores).

    Files are streamed in blocks; frame probabilities are median-filtered, thresholded (the
    model's validation threshold unless --threshold; hysteresis with --low-threshold),
    no-music gaps shorter than --min-non-music are filled and music shorter than
    --min-music dropped. tsv/csv/json list music and no-music segments, audacity and rttm
    music only.
    """
    from .detect import Smoothing, detect

    smoothing = Smoothing(
        median_seconds=args.median, threshold=args.threshold,
        low_threshold=args.low_threshold, min_music=args.min_music,
        min_non_music=args.min_non_music,
    )
    failures = detect(
        args.model, args.audio, args.out, smoothing=smoothing, segment_format=args.format,
        frame_scores=args.frame_scores, block_seconds=args.block_seconds,
        skip_bad=args.skip_bad, progress=not args.quiet,
    )
    return _report_failures(failures)


COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None]]] = {}


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hours", type=float, default=0.25, help="corpus length in hours (0.25)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="+", help="audio files, folders or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder for NAME.npy")
    p.add_argument("--skip-bad", action="store_true", help="report unreadable files and go on")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="run config YAML (default: the paper's setup)")
    p.add_argument("--data", help="dataset root (sets data.path)")
    p.add_argument("--format", choices=["synth", "generic", "openbmat", "seyerlehner"],
                   help="dataset format (sets data.format)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=5 (repeatable)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets training.device")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="model file (model.pt from musicdet train)")
    p.add_argument("--data", type=Path, required=True, help="labelled dataset root")
    p.add_argument("--format", choices=["generic", "openbmat", "seyerlehner", "synth"],
                   default="generic", help="dataset format (generic)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset reader option, e.g. --option folds=[0,1] (repeatable)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"),
                   help="feature cache folder (runs/cache)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap replicates for confidence intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="model file (model.pt from musicdet train)")
    p.add_argument("audio", nargs="+", help="audio files, folders or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", choices=["tsv", "csv", "audacity", "rttm", "json"], default="tsv",
                   help="segment file format (tsv)")
    p.add_argument("--frame-scores", choices=["csv", "npy"],
                   help="also write NAME.frames.csv|npy (music probability per 10 ms frame)")
    p.add_argument("--median", type=float, default=0.5, metavar="SECONDS",
                   help="median filter length over the probabilities (0.5; 0: off)")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="music where probability >= P (default: the model's validation "
                        "threshold at precision 0.90)")
    p.add_argument("--low-threshold", type=float, metavar="P",
                   help="hysteresis: music regions extend while probability >= P")
    p.add_argument("--min-music", type=float, default=1.0, metavar="SECONDS",
                   help="drop shorter music segments (1.0)")
    p.add_argument("--min-non-music", "--fill-gaps", type=float, default=1.0,
                   metavar="SECONDS", help="fill shorter no-music gaps between music (1.0)")
    p.add_argument("--block-seconds", type=float, default=60.0, metavar="SECONDS",
                   help="audio block length for streaming (60)")
    p.add_argument("--skip-bad", action="store_true", help="report unreadable files and go on")


COMMANDS.update(
    synth=(cmd_synth, _synth_args),
    features=(cmd_features, _features_args),
    train=(cmd_train, _train_args),
    evaluate=(cmd_evaluate, _evaluate_args),
    detect=(cmd_detect, _detect_args),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musicdet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (command, add_arguments) in COMMANDS.items():
        doc = command.__doc__ or ""
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        add_arguments(p)
        p.set_defaults(func=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, AudioError, ValueError, OSError) as error:
        print(f"musicdet: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musicdet: interrupted", file=sys.stderr)
        return 130


def _report_failures(failures: Sequence[tuple[Path, str]]) -> int:
    for _, message in failures:
        print(f"musicdet: skipped {message}", file=sys.stderr)
    if failures:
        print(f"musicdet: {len(failures)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
