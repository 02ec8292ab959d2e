"""Detection over many files (archive runs): parallel workers, resumable, one summary.

``detect(model, inputs, out_dir)`` runs `detect_file` on every audio file of ``inputs``
(files, folders searched recursively, globs) and of a ``list_file`` (one path per line) and
writes each file's outputs under ``out_dir`` at the file's path relative to its input:
``in/a/b.wav`` of the input folder ``in`` → ``OUT/a/b.segments.tsv`` (+ ``b.frames.csv|npy``);
a file named on its own, in a glob or a list gives its name (a list: its path below the
listed files' common folder). Where two files would share outputs (``x.wav`` beside
``x.mp3``) their names keep their endings (``x.wav.segments.tsv``).

Resumable: outputs are written atomically, so a file whose outputs all exist is complete and
skipped (unless ``overwrite``), and an interrupted one is redone. ``OUT/detect-run.json``
records the model and the settings; a run with other ones redoes every file. A file that
cannot be read never stops the run: it is counted, named with its reason in the summary
(``OUT/detect-summary.txt``) and the others go on. ``jobs`` > 1 scores files in that many
spawned worker processes, each loading the model once and running torch on one thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import AudioError, audio_duration, find_audio
from .configtools import ConfigError, require
from .detect import (
    BLOCK_SECONDS,
    FRAME_FORMATS,
    SEGMENT_FORMATS,
    SEGMENT_SUFFIXES,
    FrameFormat,
    Scorer,
    SegmentFormat,
    Smoothing,
    detect_file,
    frame_score_writer,
    resolve_runtime,
    scorer_for,
    write_segments,
)
from .devices import choose_device
from .fsutil import write_text
from .modelfile import Detector, load_model
from .sequences import ScoringGrid

RUN_FILE = "detect-run.json"
SUMMARY_FILE = "detect-summary.txt"
_GLOB_CHARACTERS = "*?["

Stem = tuple[str, ...]  # output folders below OUT, then the output name's stem


@dataclass(frozen=True)
class Task:
    """One input file and where its outputs go: OUT/folders…/name.segments.EXT."""

    source: Path
    stem: Stem

    def outputs(self, out: Path, segment_format: str, frame_scores: str | None) -> list[Path]:
        """The output files of this task under ``out``."""
        folder, name = out.joinpath(*self.stem[:-1]), self.stem[-1]
        paths = [folder / f"{name}.segments.{SEGMENT_SUFFIXES[segment_format]}"]
        return paths + ([folder / f"{name}.frames.{frame_scores}"] if frame_scores else [])


@dataclass
class Summary:
    """What a run did: files done / skipped / failed (with reasons), seconds of audio and of
    wall-clock time."""

    done: int = 0
    skipped: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        """The summary line, then one ``failed: <reason>`` line per failed file."""
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        head = (f"{self.done} files done, {self.skipped} skipped (already done), "
                f"{len(self.failures)} failed: {self.audio_seconds / 3600:.3f} h of audio in "
                f"{self.wall_seconds:.1f} s, {speed:.0f}x realtime")
        return [head, *(f"failed: {message}" for _, message in self.failures)]


# --------------------------------------------------------------------------- planning


def read_list(path: str | Path) -> list[Path]:
    """The paths of a list file, one per line (blank lines and ``#`` comments left out);
    relative ones are relative to the current folder."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("--list", f"{path}: cannot read it ({error}); expected a text "
                                    "file of audio paths, one per line") from None
    paths = [Path(line.strip()) for line in lines if line.strip() and
             not line.lstrip().startswith("#")]
    require(bool(paths), "--list", f"{path} lists at least one path", "an empty list")
    return paths


def plan(inputs: Sequence[str | Path], listed: Sequence[Path] = ()) -> list[Task]:
    """Tasks for the audio files of ``inputs`` and the ``listed`` paths, sorted by source.

    Listed paths are taken as they are: one that does not exist fails as that file, in the
    summary, and does not stop the run.
    """
    pairs: dict[Path, Path] = {}  # absolute source → its path relative to its input's root
    for item in inputs:
        root = _root(Path(item))
        for file in map(_absolute, find_audio([item])):
            pairs.setdefault(file, file.relative_to(root))
    if listed:
        root = Path(os.path.commonpath([_absolute(path).parent for path in listed]))
        for path in map(_absolute, listed):
            pairs.setdefault(path, path.relative_to(root))
    sources = sorted(pairs)
    return [Task(source, stem) for source, stem in
            zip(sources, output_stems([(s, pairs[s]) for s in sources]), strict=True)]


def output_stems(pairs: Sequence[tuple[Path, Path]]) -> list[Stem]:
    """Distinct output stems for ``(absolute source, relative path)`` pairs: the relative
    path without its ending; where those clash, with it; where those still clash, the path
    below the clashing files' common folder."""
    stems = [(*rel.parent.parts, rel.stem) for _, rel in pairs]
    for index in _clashes(stems):
        stems[index] = pairs[index][1].parts
    clashing = _clashes(stems)
    if clashing:
        root = os.path.commonpath([pairs[index][0].parent for index in clashing])
        for index in clashing:
            stems[index] = Path(os.path.relpath(pairs[index][0], root)).parts
    if _clashes(stems):
        raise ValueError("inputs: two files would share outputs; expected distinct names")
    return stems


def _clashes(stems: Sequence[Stem]) -> list[int]:
    counts = Counter(stems)
    return [index for index, stem in enumerate(stems) if counts[stem] > 1]


def _root(item: Path) -> Path:
    """The folder an input's files are mirrored from: a folder itself, a glob's parts before
    the first one holding a glob character, a file's folder."""
    if item.is_dir():
        return _absolute(item)
    if any(char in str(item) for char in _GLOB_CHARACTERS) and not item.exists():
        fixed = list(itertools.takewhile(
            lambda part: not any(char in part for char in _GLOB_CHARACTERS), item.parts))
        return _absolute(Path(*fixed)) if fixed else Path.cwd()
    return _absolute(item).parent


def _absolute(path: Path) -> Path:
    """``path`` made absolute and normalised, symbolic links kept (so files stay below
    their input's folder)."""
    return Path(os.path.abspath(path))


# --------------------------------------------------------------------------- resuming


def run_settings(model: str | Path | Detector, detector: Detector, smoothing: Smoothing,
                 runtime: str, grid: ScoringGrid) -> dict:
    """What the outputs' contents depend on: the model (a digest of its file or weights and
    threshold), the smoothing, the runtime and the scoring windows."""
    digest = hashlib.sha256()
    if isinstance(model, Detector):
        for tensor in detector.model.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        digest.update(repr(detector.threshold).encode())
    else:
        digest.update(Path(model).read_bytes())
    return {"model": digest.hexdigest(), "smoothing": asdict(smoothing), "runtime": runtime,
            "grid": asdict(grid)}


def pending(tasks: Sequence[Task], out: Path, settings: dict, overwrite: bool,
            segment_format: str, frame_scores: str | None) -> list[Task]:
    """The tasks whose outputs are not all there yet, or all tasks with ``overwrite``.

    Outputs count only if written since ``OUT/detect-run.json`` recorded these settings (its
    modification time); with ``overwrite`` or other settings it is rewritten, which makes
    every earlier output out of date, also in a run interrupted before redoing them all.
    """
    record = out / RUN_FILE
    try:
        same = json.loads(record.read_text(encoding="utf-8")) == settings
    except (OSError, ValueError):
        same = False
    if overwrite or not same:
        write_text(record, json.dumps(settings, indent=1) + "\n")
        return list(tasks)
    since = record.stat().st_mtime_ns
    return [task for task in tasks
            if not all(_written_since(path, since)
                       for path in task.outputs(out, segment_format, frame_scores))]


def _written_since(path: Path, since_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False


def remove_stale_temporaries(paths: Sequence[Path]) -> None:
    """Delete temporary files an interrupted atomic write of ``paths`` left behind."""
    for path in paths:
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- running


@dataclass
class Worker:
    """Detects one task at a time with a loaded model; the outcome is the file's seconds of
    audio, or the reason it could not be read."""

    detector: Detector
    scorer: Scorer  # what scores: ``detector`` itself, or its onnxruntime twin
    out: Path
    smoothing: Smoothing
    segment_format: SegmentFormat
    frame_scores: FrameFormat | None
    block_seconds: float
    grid: ScoringGrid | None = None  # where the scoring windows lie; None: the model's

    def __call__(self, task: Task, on_audio: Callable[[float], object] | None = None
                 ) -> float | str:
        outputs = self.task_outputs(task)
        remove_stale_temporaries(outputs)
        # frame scores are written as they come, so a long file's memory stays flat
        frames = (contextlib.nullcontext(_discard) if self.frame_scores is None else
                  frame_score_writer(outputs[1], self.frame_scores,
                                     self.detector.config.features.hop_seconds))
        try:
            with frames as write:
                result = detect_file(self.scorer, task.source, self.smoothing,
                                     self.block_seconds, on_audio, write, self.grid)
        except AudioError as error:
            return str(error)
        write_segments(outputs[0], result.segments, self.segment_format, task.stem[-1])
        return result.duration

    def task_outputs(self, task: Task) -> list[Path]:
        return task.outputs(self.out, self.segment_format, self.frame_scores)


def _discard(probabilities: np.ndarray) -> None:
    """Frame probabilities nobody asked for."""


_WORKER: Worker | None = None  # a worker process's own Worker


def _start_worker(model: str | Path | Detector, device: str, runtime: str,
                  options: dict) -> None:
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = _make_worker(model, device, runtime, options)


def _work(task: Task) -> float | str:
    assert _WORKER is not None, "the worker process was not started by _start_worker"
    return _WORKER(task)


def _make_worker(model: str | Path | Detector, device: str, runtime: str,
                 options: dict) -> Worker:
    detector = model if isinstance(model, Detector) else load_model(model)
    detector.model.to(choose_device(device))
    return Worker(detector, scorer_for(detector, runtime), **options)


def detect(
    model: str | Path | Detector,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    list_file: str | Path | None = None,
    smoothing: Smoothing | None = None,
    segment_format: SegmentFormat = "tsv",
    frame_scores: FrameFormat | None = None,
    block_seconds: float = BLOCK_SECONDS,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "cpu",
    runtime: str = "auto",
    window_frames: int | None = None,
    hop_frames: int | None = None,
) -> Summary:
    """Detect music in every audio file of ``inputs`` and ``list_file`` into ``out_dir``.

    See the module's docstring for the output layout, resuming and failures. The model runs
    on ``device`` (auto | cpu | cuda, see `choose_device`) and is run by ``runtime`` (torch;
    onnx: onnxruntime on the CPU; auto: onnx where it can, see `resolve_runtime`), its
    windows ``window_frames`` long (default: the model's training sequence) every
    ``hop_frames`` (default: half a window; see `ScoringGrid`). Returns the run's `Summary`,
    whose lines are also written to ``OUT/detect-summary.txt``.
    """
    require(segment_format in SEGMENT_FORMATS, "format", f"one of {SEGMENT_FORMATS}",
            segment_format)
    require(frame_scores is None or frame_scores in FRAME_FORMATS, "frame_scores",
            f"one of {FRAME_FORMATS}", frame_scores)
    require(isinstance(jobs, int) and jobs >= 1, "jobs", "jobs >= 1", jobs)
    started = time.perf_counter()
    smoothing = smoothing or Smoothing()
    options = {"out": Path(out_dir), "smoothing": smoothing, "segment_format": segment_format,
               "frame_scores": frame_scores, "block_seconds": block_seconds}
    worker = _make_worker(model, device, runtime, options)  # checks them before any output
    runtime = resolve_runtime(worker.detector, runtime)  # what the workers and records use
    options["grid"] = worker.grid = worker.detector.grid(window_frames, hop_frames)
    tasks = plan(inputs, read_list(list_file) if list_file is not None else ())
    settings = run_settings(model, worker.detector, smoothing, runtime, worker.grid)
    todo = pending(tasks, worker.out, settings, overwrite, segment_format, frame_scores)
    summary = Summary(skipped=len(tasks) - len(todo))
    hours = sum(_duration_or_zero(task.source) for task in todo) / 3600
    with tqdm(total=round(hours, 4), unit="h", desc="detect", disable=not progress,
              bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} h [{elapsed}<{remaining}]") as bar:
        def count(task: Task, outcome: float | str) -> None:
            if isinstance(outcome, str):
                summary.failures.append((task.source, outcome))
            else:
                summary.done += 1
                summary.audio_seconds += outcome

        if jobs == 1:
            for task in todo:
                count(task, worker(task, lambda seconds: bar.update(seconds / 3600)))
        else:
            _run_parallel(todo, jobs, model, device, runtime, options, count,
                          lambda seconds: bar.update(seconds / 3600))
    summary.failures.sort()
    summary.wall_seconds = time.perf_counter() - started
    write_text(worker.out / SUMMARY_FILE, "".join(line + "\n" for line in summary.lines()))
    return summary


def _run_parallel(tasks: Sequence[Task], jobs: int, model: str | Path | Detector, device: str,
                  runtime: str, options: dict, count: Callable[[Task, float | str], None],
                  on_audio: Callable[[float], object]) -> None:
    """Run ``tasks`` in ``jobs`` spawned processes, at most two queued per process; a
    worker's error other than an unreadable file stops the run and is raised here."""
    pool = ProcessPoolExecutor(max(1, min(jobs, len(tasks))), mp_context=get_context("spawn"),
                               initializer=_start_worker,
                               initargs=(model, device, runtime, options))
    queue = iter(tasks)
    running: dict[Future, Task] = {}
    try:
        while True:
            while len(running) < 2 * jobs and (task := next(queue, None)) is not None:
                running[pool.submit(_work, task)] = task
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task, outcome = running.pop(future), future.result()
                count(task, outcome)
                if not isinstance(outcome, str):
                    on_audio(outcome)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _duration_or_zero(path: Path) -> float:
    """Seconds of ``path`` for the progress bar; 0 when its header is unreadable."""
    try:
        return audio_duration(path)
    except AudioError:
        return 0.0
