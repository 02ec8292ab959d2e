"""musicdet: synthesise a corpus, extract features, train, evaluate, detect, describe a model.

detect, evaluate and info use the default detector shipped in the package when no model file
is named (musicdet info describes it; make model makes it). Every command is a thin wrapper
over the Python API; its help is its docstring (plain text: no markup, argparse prints it as
it is). An error prints one line, musicdet: error: ...,
and exits with a status of `musicdet.errors.ExitStatus` (listed in --help).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .configtools import ConfigError, parse_yaml, with_overrides
from .errors import EPILOG, CommandError, ExitStatus, report

if TYPE_CHECKING:
    from .config import RunConfig

PROG = "musicdet"

Command = Callable[[argparse.Namespace], int]


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the embedded synthetic broadcast corpus: programmes (16 kHz wav) + music labels (tsv).

    Deterministic per seed; programme i depends only on (seed, i), so a larger corpus
    extends a smaller one. Re-running with the same arguments does nothing. --config takes a
    YAML of corpus settings (musicdet.synth.SynthConfig, e.g. music_sources: {gm-scores: 1});
    --list-sources shows the source providers installed here; corpus.json records those used.
    --sources ROLE=DIR (repeatable) draws a role (music, speech, noise, ...) from your own
    recordings instead of its providers; --sources DIR takes a MUSAN-style folder whose
    music/, speech/ and noise/ subfolders become those roles' pools.
    """
    from dataclasses import replace

    from .configtools import load_config
    from .synth import SynthConfig, sources, write_corpus
    from .synth.config import ROLES
    from .synth.sources.recordings import parse_pool_args

    if args.list_sources:
        print(sources.table())
        return 0
    if args.out is None:
        raise ConfigError("--out", "an output folder is required (unless --list-sources)")
    config = load_config(SynthConfig, args.config) if args.config else SynthConfig()
    if args.test:
        config = replace(config, test_corpus=True)
    if args.sources:
        pools = parse_pool_args(args.sources, list(ROLES))
        config = replace(config, pools={**(config.pools or {}), **pools},
                         **{f"{role}_sources": None for role in pools})
    paths = write_corpus(args.out, hours=args.hours, seed=args.seed, config=config,
                         progress=not args.quiet, jobs=args.jobs)
    print(f"{len(paths)} programmes in {args.out}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Extract raw features (log-Mel + chroma, one row per frame) to OUT/NAME.npy.

    The features section of a run config (--config, --set features.KEY=VALUE) sets the front
    end; the default is the paper's: 128 log-Mel + 12 chroma, 25 ms windows, 100 frames/s.
    """
    from .audio import find_audio
    from .features import write_features

    foreign = [item for item in args.set if not item.startswith("features.")]
    if foreign:
        raise ConfigError("--set", f"features takes features.KEY=VALUE overrides only, got "
                                   f"{foreign[0]!r}")
    config = with_overrides(_run_config(args.config, []).features,
                            [item.removeprefix("features.") for item in args.set], "features")
    failures = write_features(find_audio(args.audio), args.out, config, skip_bad=args.skip_bad,
                              progress=not args.quiet)
    return _report_failures(failures)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the BiGRU detector from a run config (the YAML musicdet-search export writes).

    Resumes from OUT/checkpoint.pt when it exists; writes OUT/model.pt (the best epoch by
    training.select_metric, validation AUC by default), OUT/history.json and OUT/config.yaml.
    With a validation: section in the config, epochs are validated on that set and the held-out
    split of the data is reported as train_val_*.
    """
    from .train import NonFiniteLossError, train

    overrides = list(args.set)
    if args.data:
        overrides += [f"data.path={args.data}"]
    if args.format:
        overrides += [f"data.format={args.format}"]
    if args.device:
        overrides += [f"training.device={args.device}"]
    config = _run_config(args.config, overrides)
    try:
        result = train(config, args.out, resume=not args.restart, progress=not args.quiet)
    except NonFiniteLossError as error:
        raise CommandError(f"training failed: {error}") from None
    best = result.best
    split = "" if best.train_val_auc is None else \
        f" (held-out split of data: AUC {best.train_val_auc:.4f}, EER {best.train_val_eer:.4f})"
    print(
        f"best epoch {best.epoch}: val AUC {best.val_auc:.4f}, EER {best.val_eer:.4f}{split}\n"
        f"model: {result.model_path}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a model file on labelled audio: AUC, EER, recall and F1 at a precision (0.90).

    Frame-level, no collar, pooled over all files and per file. Writes OUT/metrics.json,
    OUT/roc.png and OUT/scores.png; --bootstrap N adds 95 % intervals resampling whole files.
    Without MODEL, the default detector. --record NAME also stores the pooled figures, the
    data folder's name and a hash of its file list (no audio) in the model file under NAME;
    musicdet info lists them. The weights and everything else in the file stay as they were.
    """
    from .evaluate import evaluate_model, evaluation_record
    from .modelfile import record_evaluation

    options = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "option must look like key=value")
        options[key] = parse_yaml(raw, f"--option {key}")
    model = args.model or default_model()
    report = evaluate_model(
        model, args.data, args.out, format=args.format, options=options,
        cache_dir=args.cache_dir, bootstrap=args.bootstrap, seed=args.seed,
        target_precision=args.target_precision, device=args.device, progress=not args.quiet,
        window_frames=args.window_frames, hop_frames=args.hop_frames,
    )
    pooled = report["pooled"]
    recall, f1 = (f"{pooled[k]:.4f}" if pooled[k] is not None else "n/a" for k in ("recall", "f1"))
    print(f"{len(report['files'])} files: AUC {pooled['auc']:.4f}, EER {pooled['eer']:.4f}, "
          f"recall {recall}, F1 {f1} at P={args.target_precision:g}\n"
          f"metrics: {args.out / 'metrics.json'}")
    if args.record:
        record_evaluation(model, args.record, evaluation_record(report))
        print(f"recorded as {args.record!r} in {model}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect music in audio files of any length: OUT/NAME.segments.EXT (+ frame scores).

    Files are streamed in blocks; frame probabilities are median-filtered, thresholded (the
    model's own threshold, see musicdet info, unless --threshold; hysteresis with
    --low-threshold), no-music gaps shorter than --min-non-music are filled and music
    shorter than --min-music dropped. tsv/csv/json list music and no-music segments,
    audacity and rttm music only. The model: --model PATH, or a first input ending in .pt
    (musicdet detect MODEL.pt AUDIO...), else the default detector (musicdet info).

    Archive runs: folders are searched recursively and --list FILE adds one path per line;
    outputs mirror each file's path below its folder (OUT/sub/NAME.segments.EXT). --jobs N
    scores files in N worker processes. A run is resumable: files whose outputs are there
    are skipped (unless --overwrite; other model or smoothing settings redo every file). A
    file that cannot be read is reported with its reason and the others go on; the summary
    (files done, skipped, failed; hours of audio; x realtime) is printed and written to
    OUT/detect-summary.txt, and the exit status is 1 if any file failed.
    """
    from .batch import detect
    from .detect import Smoothing
    smoothing = Smoothing(
        median_seconds=args.median, threshold=args.threshold,
        low_threshold=args.low_threshold, min_music=args.min_music,
        min_non_music=args.min_non_music,
    )
    model, audio = _model_and_audio(args.model, args.inputs, args.list is not None)
    summary = detect(
        model, audio, args.out, list_file=args.list, smoothing=smoothing,
        segment_format=args.format, frame_scores=args.frame_scores,
        block_seconds=args.block_seconds, jobs=args.jobs, overwrite=args.overwrite,
        device=args.device, runtime=args.runtime, progress=not args.quiet,
        window_frames=args.window_frames, hop_frames=args.hop_frames,
    )
    print(summary.lines()[0])
    return _report_failures(summary.failures)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Write a model file (default: the default detector) as an ONNX model.

    One graph from raw features to logits, opset 17 unless --opset: input features (batch,
    time, 140) float32, the raw frames of musicdet features (log-Mel + chroma), output logits
    (batch, time); batch and time are dynamic. The model file's feature scaling and the
    per-window standardisation are inside the graph. Score a file as detect does: windows of
    the model's training.sequence_frames (300) every half window, blended with triangular
    weights (musicdet.sequences). Needs the onnx extra (pip install 'musicdet[onnx]').
    """
    from .modelfile import load_model
    from .onnx import OPSET, export_onnx

    model, opset = args.model or default_model(), args.opset or OPSET
    out = export_onnx(load_model(model), args.out, opset)
    print(f"{model} -> {out} (ONNX opset {opset}, {out.stat().st_size} bytes)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a model file (default: the default detector): what it was trained on, its
    threshold, its validation figures and every evaluation recorded in it.

    The threshold is the one detect uses unless --threshold is given, with the rule that
    chose it. The table's P is the precision recall and F1 are given at; F1 thr is the F1 of
    detect's decisions at the model's threshold.
    """
    from .modelfile import load_model

    model = args.model or default_model()
    detector = load_model(model)
    print("\n".join([f"model: {model}", *format_sections(detector.describe()), "figures:",
                     *(f"  {line}" for line in detector.figures_table())]))
    return 0


def default_model() -> Path:
    """The shipped default detector (`musicdet.shipped`), or an error saying how to make it."""
    from .shipped import default_model

    return default_model()


def _model_and_audio(model: Path | None, inputs: Sequence[str], listed: bool = False
                     ) -> tuple[Path, list[str]]:
    """detect's model and audio inputs: --model, else a first input ending in .pt, else the
    default detector. Without a ``listed`` file there must be an audio input."""
    if model is None and inputs and inputs[0].lower().endswith(MODEL_SUFFIX):
        model, inputs = Path(inputs[0]), inputs[1:]
        if not inputs and not listed:
            raise ConfigError("AUDIO", f"no audio inputs after the model file {model}")
    if not inputs and not listed:
        raise ConfigError("AUDIO", "no audio inputs; expected audio files, folders, globs "
                                   "or --list FILE")
    return model or default_model(), list(inputs)


def format_sections(sections: Mapping[str, Any], indent: int = 0) -> list[str]:
    """Lines ``key: value``, nested mappings indented by two spaces under their key."""
    lines = []
    for key, value in sections.items():
        if isinstance(value, Mapping) and value:
            lines += [f"{' ' * indent}{key}:", *format_sections(value, indent + 2)]
        else:
            lines.append(f"{' ' * indent}{key}: {_plain(value)}")
    return lines


def _plain(value: Any) -> str:
    if value is None or (isinstance(value, Mapping | list | tuple) and not value):
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(_plain, value))
    return str(value)


COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None]]] = {}


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hours", type=float, default=0.25, help="corpus length in hours (0.25)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (0)")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--config", type=Path, help="corpus settings YAML (SynthConfig keys)")
    p.add_argument("--test", action="store_true",
                   help="a test corpus: every programme draws on test-split material")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: the CPU count, %(default)s)")
    p.add_argument("--list-sources", action="store_true",
                   help="print the source providers (name, kind, available, version, licence)")
    p.add_argument("--sources", action="append", default=[], metavar="ROLE=DIR|DIR",
                   help="your own recordings for a role, e.g. --sources music=DIR, or a "
                        "MUSAN-style DIR with music/ speech/ noise/ (repeatable)")


def _features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="+", help="audio files, folders or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder for NAME.npy")
    p.add_argument("--config", type=Path,
                   help="run config YAML whose features section applies (default: the paper's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a feature setting, e.g. --set features.hop_length=320 "
                        "(repeatable)")
    p.add_argument("--skip-bad", action="store_true", help="report unreadable files and go on")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="run config YAML (default: the paper's setup)")
    p.add_argument("--data", help="dataset root (sets data.path)")
    p.add_argument("--format", choices=["synth", "generic", "openbmat", "seyerlehner"],
                   help="dataset format (sets data.format)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=5 (repeatable)")
    p.add_argument("--device", choices=DEVICES, help="sets training.device")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, nargs="?", help=f"model file ({DEFAULT_HELP})")
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
    p.add_argument("--target-precision", type=float, default=0.90, metavar="P",
                   help="report recall and F1 at the threshold with the highest recall whose "
                        "precision is at least P (0.90)")
    p.add_argument("--record", metavar="NAME",
                   help="store the pooled figures in the model file under NAME (letters, "
                        "digits, . _ -; replaces a record of that name)")
    _grid_args(p)
    _device_arg(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="AUDIO",
                   help="audio files, folders (searched recursively) or globs; without "
                        "--model, a first one ending in .pt is the model file")
    p.add_argument("--list", type=Path, metavar="FILE",
                   help="also the audio files listed in FILE, one path per line (relative "
                        "to the current folder; blank lines and # comments ignored)")
    p.add_argument("--model", type=Path, metavar="PATH", help=f"model file ({DEFAULT_HELP})")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", choices=["tsv", "csv", "audacity", "rttm", "json"], default="tsv",
                   help="segment file format (tsv)")
    p.add_argument("--frame-scores", choices=["csv", "npy"],
                   help="also write NAME.frames.csv|npy (music probability per frame)")
    p.add_argument("--median", type=float, default=0.5, metavar="SECONDS",
                   help="median filter length over the probabilities (0.5; 0: off)")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="music where probability >= P (default: the model's own threshold; "
                        "musicdet info MODEL says which and why)")
    p.add_argument("--low-threshold", type=float, metavar="P",
                   help="hysteresis: music regions extend while probability >= P")
    p.add_argument("--min-music", type=float, default=1.0, metavar="SECONDS",
                   help="drop shorter music segments (1.0)")
    p.add_argument("--min-non-music", "--fill-gaps", type=float, default=1.0,
                   metavar="SECONDS", help="fill shorter no-music gaps between music (1.0)")
    p.add_argument("--block-seconds", type=float, default=30.0, metavar="SECONDS",
                   help="audio block length for streaming (30; longer blocks are a little "
                        "faster and hold more memory)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes, one model and one torch thread each (1: this "
                        "process, torch's own thread count)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo files whose outputs are already there")
    _grid_args(p)
    _device_arg(p)
    _runtime_arg(p)


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-frames", type=int, metavar="FRAMES",
                   help="scoring window length (default: the model's training sequence, "
                        "300 frames); windows overlap and are blended")
    p.add_argument("--hop-frames", type=int, metavar="FRAMES",
                   help="a window every FRAMES frames (default: half a window, the grid the "
                        "model was validated on). The BiGRU's work is window / hop per "
                        "frame: --window-frames 600 --hop-frames 450 is 1.5x less (README: "
                        "its speed and AUC)")


def _runtime_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="what runs the model: torch, onnx (onnxruntime on the CPU, the same "
                        "scores within 1e-4, faster; needs the onnx extra), or auto "
                        "(default: onnx on the CPU where the extra is installed, else torch)")


def _export_onnx_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, nargs="?", help=f"model file ({DEFAULT_HELP})")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, help="ONNX opset (default: musicdet.onnx.OPSET, 17)")


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, nargs="?", help=f"model file ({DEFAULT_HELP})")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where the model runs (cpu; auto: a GPU if there is one)")


DEVICES = ["auto", "cpu", "cuda"]
MODEL_SUFFIX = ".pt"
DEFAULT_HELP = "model.pt from musicdet train; default: the default detector in the package"

COMMANDS.update(
    synth=(cmd_synth, _synth_args),
    features=(cmd_features, _features_args),
    train=(cmd_train, _train_args),
    evaluate=(cmd_evaluate, _evaluate_args),
    detect=(cmd_detect, _detect_args),
    info=(cmd_info, _info_args),
)
COMMANDS["export-onnx"] = (cmd_export_onnx, _export_onnx_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (command, add_arguments) in COMMANDS.items():
        doc = inspect.cleandoc(command.__doc__ or "")
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc, epilog=EPILOG,
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
    except CommandError as error:
        return report(PROG, error, error.status)
    except (ValueError, OSError) as error:  # ConfigError, AudioError, ModelFileError, ...
        return report(PROG, error, ExitStatus.BAD_INPUT)
    except KeyboardInterrupt:
        return report(PROG, "interrupted", ExitStatus.INTERRUPTED)


def _run_config(path: Path | None, overrides: Sequence[str]) -> RunConfig:
    """The run config at ``path`` (default: the paper's setup) with ``overrides`` applied."""
    from .config import RunConfig, apply_overrides, load_run_config

    return apply_overrides(load_run_config(path) if path else RunConfig(), list(overrides))


def _report_failures(failures: Sequence[tuple[Path, str]]) -> int:
    for _, message in failures:
        print(f"{PROG}: skipped {message}", file=sys.stderr)
    if failures:
        return report(PROG, f"{len(failures)} file(s) failed", ExitStatus.FAILED)
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
