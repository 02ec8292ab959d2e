"""Music detection on recordings of any length: streamed scoring, smoothing, segments, writers.

``detect_file(detector, path)`` scores a file block by block (`stream_probabilities`), smooths
the frame probabilities into music / no-music decisions (`decide`) and turns them into
segments; the writers write them (``NAME.segments.EXT``) and, optionally, the frame scores
(``NAME.frames.csv|npy``). `musicdet.batch.detect` runs it over many files.

Streaming is exact: features are computed on audio blocks with half a window of context, and
the scorer scores each window of the whole file's grid once and blends them as
`Detector.probabilities` does (starts at multiples of ``window // 2``, the last aligned to
the end; another `ScoringGrid` is a speed / accuracy choice), so every frame sees the same
windows and gets the same score up to float rounding. Memory holds one audio
block, one block of features and, per frame, the decisions' 1–2 bytes (`Decider`: 0.4–0.7
MB an hour at the default 10 ms hop) and, unless they are handed on as they come
(``on_probabilities``, e.g. `frame_score_writer`), the probabilities' 8. Every time
written (segments, the ``time`` column) is on the model's own frame grid, frame t centred at
t · `FeatureConfig.hop_seconds`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar, get_args

import numpy as np
import torch
from scipy.ndimage import median_filter

from .audio import stream_audio
from .config import RunConfig
from .configtools import ConfigError, require
from .datasets import MUSIC, NO_MUSIC
from .features import FeatureConfig, MelScaler, frame_features
from .fsutil import atomic_open, write_text
from .modelfile import Detector
from .sequences import ScoringGrid, WindowBlend, scoring_pool, scoring_threads, sigmoid

SegmentFormat = Literal["tsv", "csv", "audacity", "rttm", "json"]
FrameFormat = Literal["csv", "npy"]
SEGMENT_FORMATS: tuple[str, ...] = get_args(SegmentFormat)
FRAME_FORMATS: tuple[str, ...] = get_args(FrameFormat)
SEGMENT_SUFFIXES = {"tsv": "tsv", "csv": "csv", "audacity": "txt", "rttm": "rttm", "json": "json"}

T = TypeVar("T")


# --------------------------------------------------------------------------- smoothing


@dataclass
class Smoothing:
    """Post-processing of frame probabilities into music decisions; durations in seconds.

    Order: median filter → threshold (or hysteresis) → fill non-music gaps shorter than
    ``min_non_music`` between music → drop music shorter than ``min_music``.
    """

    median_seconds: float = 0.5  # median filter length over the probabilities (0: off)
    threshold: float | None = None  # music where p >= threshold; None: the model's own
    low_threshold: float | None = None  # hysteresis: music regions extend while p >= this
    min_music: float = 1.0  # shorter music segments become no-music
    min_non_music: float = 1.0  # shorter no-music gaps between music are filled

    def __post_init__(self) -> None:
        for name in ("median_seconds", "min_music", "min_non_music"):
            require(getattr(self, name) >= 0, name, f"{name} >= 0", getattr(self, name))
        require(self.threshold is None or 0 <= self.threshold <= 1, "threshold",
                "0 <= threshold <= 1", self.threshold)
        require(self.low_threshold is None or 0 <= self.low_threshold <= (
            1 if self.threshold is None else self.threshold), "low_threshold",
            "0 <= low_threshold <= threshold", (self.low_threshold, self.threshold))


def seconds_to_frames(seconds: float, hop_seconds: float) -> int:
    """Whole frames nearest to ``seconds`` on a grid of frames ``hop_seconds`` apart."""
    return round(seconds / hop_seconds)


def median_smooth(probabilities: np.ndarray, frames: int) -> np.ndarray:
    """Running median over ``frames`` frames (rounded up to odd; 1 or less: unchanged)."""
    if frames <= 1:
        return probabilities
    return median_filter(probabilities, size=frames | 1, mode="nearest")


def binarize(
    probabilities: np.ndarray, threshold: float, low_threshold: float | None = None
) -> np.ndarray:
    """Music where p >= ``threshold``; with ``low_threshold``, `hysteresis`."""
    high = probabilities >= threshold
    return high if low_threshold is None else hysteresis(high, probabilities >= low_threshold)


def hysteresis(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Every run of ``low`` frames that holds at least one ``high`` frame (symmetric in time,
    like skimage's apply_hysteresis_threshold)."""
    region = np.cumsum(np.diff(low.astype(np.int8), prepend=0) == 1)  # id of each low run
    kept = np.zeros(region[-1] + 1 if len(region) else 1, dtype=bool)
    kept[region[high & low]] = True
    return low & kept[region]


def runs(decisions: np.ndarray) -> list[tuple[int, int, bool]]:
    """Maximal runs of equal values as ``(start, stop, value)`` frame ranges."""
    if len(decisions) == 0:
        return []
    edges = np.flatnonzero(decisions[1:] != decisions[:-1]) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [len(decisions)]))
    return [(int(a), int(b), bool(decisions[a])) for a, b in zip(starts, stops, strict=True)]


def fill_gaps(decisions: np.ndarray, min_frames: int) -> np.ndarray:
    """Turn no-music runs shorter than ``min_frames`` between two music runs into music."""
    filled = decisions.copy()
    for start, stop, value in runs(decisions):
        if not value and stop - start < min_frames and start > 0 and stop < len(decisions):
            filled[start:stop] = True
    return filled


def drop_short_music(decisions: np.ndarray, min_frames: int) -> np.ndarray:
    """Turn music runs shorter than ``min_frames`` into no-music."""
    kept = decisions.copy()
    for start, stop, value in runs(decisions):
        if value and stop - start < min_frames:
            kept[start:stop] = False
    return kept


def decide(
    probabilities: np.ndarray, smoothing: Smoothing, default_threshold: float,
    hop_seconds: float,
) -> np.ndarray:
    """Music decisions (T,) bool from probabilities (T,) of frames ``hop_seconds`` apart after
    every `Smoothing` step."""
    decider = Decider(smoothing, default_threshold, hop_seconds)
    decider.push(probabilities)
    return decider.decisions()


class Decider:
    """`decide` on a file's probabilities as they arrive, block by block.

    Holds the median filter's context of probabilities (``median_seconds``) and, per frame,
    whether it passed the threshold (and the low threshold): 1 or 2 bytes a frame, where
    the probabilities take 8. The decisions equal `decide` of the whole file.
    """

    def __init__(self, smoothing: Smoothing, default_threshold: float, hop_seconds: float
                 ) -> None:
        self.threshold = default_threshold if smoothing.threshold is None else smoothing.threshold
        self.low_threshold = smoothing.low_threshold
        if self.low_threshold is not None and self.low_threshold > self.threshold:
            raise ValueError(f"low_threshold: `low_threshold <= threshold` must hold, but got "
                             f"({self.low_threshold}, {self.threshold})")
        self.median_frames = seconds_to_frames(smoothing.median_seconds, hop_seconds)
        self.radius = (self.median_frames | 1) // 2 if self.median_frames > 1 else 0
        self.min_non_music = seconds_to_frames(smoothing.min_non_music, hop_seconds)
        self.min_music = seconds_to_frames(smoothing.min_music, hop_seconds)
        self._pending = np.zeros(0)  # probabilities from frame _pending_start on
        self._pending_start = 0
        self._done = 0  # frames thresholded so far
        self._high: list[np.ndarray] = []
        self._low: list[np.ndarray] = []

    def push(self, probabilities: np.ndarray) -> None:
        """Add the file's next frame probabilities."""
        self._pending = np.concatenate((self._pending, probabilities))
        self._threshold(final=False)

    def decisions(self) -> np.ndarray:
        """Music decisions (T,) bool of every frame pushed; call once, at the file's end."""
        self._threshold(final=True)
        high = np.concatenate(self._high) if self._high else np.zeros(0, dtype=bool)
        decisions = high if self.low_threshold is None else hysteresis(
            high, np.concatenate(self._low))
        decisions = fill_gaps(decisions, self.min_non_music)
        return drop_short_music(decisions, self.min_music)

    def _threshold(self, final: bool) -> None:
        """Median-filter and threshold the frames whose filter window has arrived (all of
        them when ``final``: the filter repeats the file's last value, as at its start)."""
        end = self._pending_start + len(self._pending)
        stop = end if final else end - self.radius
        if stop <= self._done:
            return
        smoothed = median_smooth(self._pending, self.median_frames)
        smoothed = smoothed[self._done - self._pending_start : stop - self._pending_start]
        self._high.append(smoothed >= self.threshold)
        if self.low_threshold is not None:
            self._low.append(smoothed >= self.low_threshold)
        self._done = stop
        keep = max(0, stop - self.radius)  # the next frames' filter windows start here
        self._pending = self._pending[keep - self._pending_start :]
        self._pending_start = keep


@dataclass(frozen=True)
class Segment:
    """A labelled stretch of a file, seconds; it covers the frames centred in [onset, offset)."""

    onset: float
    offset: float
    label: str  # MUSIC or NO_MUSIC


def to_segments(decisions: np.ndarray, hop_seconds: float, duration: float) -> list[Segment]:
    """Runs of frame decisions → segments; the last one ends at ``duration`` (seconds)."""
    return [
        Segment(start * hop_seconds, stop * hop_seconds if stop < len(decisions) else duration,
                MUSIC if value else NO_MUSIC)
        for start, stop, value in runs(decisions)
    ]


# --------------------------------------------------------------------------- writers


def write_segments(
    path: Path, segments: Sequence[Segment], fmt: SegmentFormat, name: str
) -> None:
    """Write ``segments`` atomically in ``fmt``.

    tsv/csv (header ``onset,offset,label``) and json hold every segment, music and no-music,
    so they are complete label files; audacity and rttm list the music segments only.
    """
    music = [s for s in segments if s.label == MUSIC]
    if fmt in ("tsv", "csv"):
        sep = "\t" if fmt == "tsv" else ","
        rows = [sep.join(("onset", "offset", "label"))]
        rows += [sep.join((_seconds(s.onset), _seconds(s.offset), s.label)) for s in segments]
    elif fmt == "audacity":
        rows = [f"{_seconds(s.onset)}\t{_seconds(s.offset)}\t{s.label}" for s in music]
    elif fmt == "rttm":
        file_id = "_".join(name.split()) or "_"
        rows = [f"SPEAKER {file_id} 1 {_seconds(s.onset)} {_seconds(s.offset - s.onset)} "
                f"<NA> <NA> {s.label} <NA> <NA>" for s in music]
    elif fmt == "json":
        write_text(path, json.dumps({"file": name, "segments": [asdict(s) for s in segments]},
                                    indent=1) + "\n")
        return
    else:
        raise ValueError(f"format: expected one of {', '.join(SEGMENT_FORMATS)}, got {fmt!r}")
    write_text(path, "".join(row + "\n" for row in rows))


def write_frame_scores(path: Path, probabilities: np.ndarray, fmt: FrameFormat,
                       hop_seconds: float) -> None:
    """Frame probabilities as npy (float64, exact) or csv ``time,music_prob`` (frame centres)."""
    with frame_score_writer(path, fmt, hop_seconds) as write:
        write(probabilities)


@contextlib.contextmanager
def frame_score_writer(path: Path, fmt: FrameFormat, hop_seconds: float
                       ) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that appends a file's next frame probabilities to ``path``, so a long file
    is written as it is scored; the result is `write_frame_scores` of them all, and appears
    under ``path`` only when the block succeeds."""
    with atomic_open(path, "wb") as handle:
        written = 0
        header = _npy_header(0) if fmt == "npy" else b"time,music_prob\n"
        handle.write(header)

        def write(probabilities: np.ndarray) -> None:
            nonlocal written
            if fmt == "npy":
                handle.write(np.asarray(probabilities, dtype="<f8").tobytes())
            else:
                handle.write("".join(f"{round((written + i) * hop_seconds, 6)},{value}\n"
                                     for i, value in enumerate(probabilities.tolist())).encode())
            written += len(probabilities)

        yield write
        if fmt == "npy":  # the frame count, in a header of the same length
            handle.seek(0)
            handle.write(_npy_header(written, len(header)))


def _npy_header(frames: int, length: int | None = None) -> bytes:
    """The .npy header of ``frames`` float64 values (numpy pads it to the same length for any
    count up to 21 digits; checked against ``length``)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (frames,)})
    header = buffer.getvalue()
    assert length is None or len(header) == length, "the .npy header changed length"
    return header


def _seconds(value: float) -> str:
    return f"{value:.6f}"


# --------------------------------------------------------------------------- streaming


def stream_features(
    blocks: Iterable[np.ndarray], config: FeatureConfig
) -> Iterator[np.ndarray]:
    """Raw features of consecutive audio ``blocks``, in consecutive frame blocks.

    Their concatenation equals ``extract_features`` of the whole signal: each block is
    extracted with at least half a window of audio context on both sides (or the signal's
    own edge), only frames whose window lies inside that audio are kept, and one `MelScaler`
    scales them in order (PCEN carries its filter state on).
    """
    scale = MelScaler(config)
    hop = config.hop_length
    context = hop * math.ceil(config.win_length / hop)  # samples, a multiple of hop
    audio = np.zeros(0, dtype=np.float32)
    audio_start = 0  # sample index of audio[0], a multiple of hop
    next_frame = 0
    for block, last in _with_last(blocks):
        audio = np.concatenate((audio, block))
        end = audio_start + len(audio)
        stop = None if last else (end - context) // hop + 1  # frames with full context
        if stop is not None and stop <= next_frame:
            continue
        features = frame_features(audio, config)
        first = next_frame - audio_start // hop
        yield scale(features[first:] if stop is None else
                    features[first : stop - audio_start // hop])
        if stop is None:
            return
        next_frame = stop
        new_start = max(0, next_frame * hop - context)
        audio = audio[new_start - audio_start :]
        audio_start = new_start


class Scorer(Protocol):
    """What scores frames: a `Detector` (torch) or an `onnx.OnnxDetector` (onnxruntime)."""

    config: RunConfig

    @property
    def threshold(self) -> float: ...

    def score(self, batch: np.ndarray) -> np.ndarray:
        """Logits (B, L) of raw feature windows (B, L, D) (a `sequences.WindowScorer`)."""


RUNTIMES = ("auto", "torch", "onnx")
BLOCK_SECONDS = 30.0
"""Audio block length when streaming a file (s). 30 s against 60 s: peak RSS 30 MB lower
(1 h and 4 h, `--runtime onnx`: 455 against 484 MB, 489 against 519 MB, measured before the
flush-to-zero flags were confined to the scoring threads), ~10 % slower."""
BATCH_WINDOWS = 40
"""Windows scored per round when streaming with torch (`stream_logits`), split into
`scoring_threads` batches at once. More were no faster on 2 cores (bench/detect.py) and cost
~2 MB of GRU activations per window. A scorer may set its own with a ``stream_windows``
attribute (`onnx.OnnxDetector`: 16)."""


def resolve_runtime(detector: Detector, runtime: str) -> str:
    """``runtime`` itself, or for "auto": onnx where the model is on the CPU and the onnx
    extra is installed (the same frame scores within 1e-4, faster: bench/detect.py), else
    torch."""
    if runtime not in RUNTIMES:
        raise ConfigError("runtime", f"expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime != "auto":
        return runtime
    installed = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))
    return "onnx" if _on_cpu(detector) and installed else "torch"


def _on_cpu(detector: Detector) -> bool:
    return next(detector.model.parameters()).device.type == "cpu"


def scorer_for(detector: Detector, runtime: str = "torch") -> Scorer:
    """``detector`` itself (torch) or its onnxruntime twin (`onnx.OnnxDetector`), for a
    `resolve_runtime` ``runtime``."""
    if resolve_runtime(detector, runtime) == "torch":
        return detector
    if not _on_cpu(detector):
        raise ConfigError("runtime", "onnx runs on the CPU; expected --device cpu with "
                                     "--runtime onnx")
    from .onnx import OnnxDetector
    return OnnxDetector(detector)


def stream_logits(
    detector: Scorer, feature_blocks: Iterable[np.ndarray], grid: ScoringGrid | None = None,
    round_windows: int | None = None,
) -> Iterator[np.ndarray]:
    """Frame logits of a file, in consecutive blocks, from its consecutive feature blocks.

    Equal to ``detector.logits`` of the whole feature matrix (on ``grid``, default the
    model's: `ScoringGrid.of`) up to float rounding: the same windows, each scored once, as
    soon as its features have arrived, in rounds of ``round_windows`` (default: the scorer's
    ``stream_windows`` or `BATCH_WINDOWS` windows of the model's length, fewer if longer)
    split into `scoring_threads` batches scored at once in a `scoring_pool`; a frame's logit
    is yielded once no later window covers it. Holds a round's windows of features and their
    logits.
    """
    model_window = detector.config.training.sequence_frames
    grid = grid or ScoringGrid.of(model_window)
    window, hop = grid.window, grid.hop
    # as many frames in flight as the scorer's rounds of model-length windows hold
    rounds = round_windows or max(1, round(getattr(detector, "stream_windows", BATCH_WINDOWS)
                                           * model_window / window))
    batch = math.ceil(rounds / scoring_threads())
    buffer = np.zeros((0, detector.config.features.dims), dtype=np.float32)
    offset = 0  # frame index of buffer[0]; the windows still to score start at or after it
    blend = WindowBlend()

    def score(starts: list[int], length: int, pool: Executor) -> None:
        blend.score(detector.score, buffer, starts, length, batch, pool, offset)

    with scoring_pool() as pool:
        next_start = 0  # the next grid window's first frame
        for features in feature_blocks:
            buffer = np.concatenate((buffer, features))
            end = offset + len(buffer)
            while next_start + (rounds - 1) * hop + window <= end:
                starts = [next_start + i * hop for i in range(rounds)]
                score(starts, window, pool)
                next_start = starts[-1] + hop
                yield blend.take(starts[-1] + 1)  # later windows start after the last one
                keep = starts[-1] + 1  # the end-aligned window may start from here
                buffer, offset = buffer[keep - offset :], keep
        n_frames = offset + len(buffer)
        if n_frames == 0:
            return
        starts = list(range(next_start, n_frames - window + 1, hop))
        last = starts[-1] if starts else next_start - hop
        if n_frames < window:  # one window, the file's length (no full one was scored)
            score([0], n_frames, pool)
        else:
            if last + window < n_frames:
                starts.append(n_frames - window)
            score(starts, window, pool)
        yield blend.take(n_frames)


def stream_probabilities(
    detector: Scorer, blocks: Iterable[np.ndarray], grid: ScoringGrid | None = None
) -> Iterator[np.ndarray]:
    """Music probabilities of a file's consecutive 16 kHz audio blocks, in consecutive blocks.

    Decoding and feature extraction run in a worker thread, one block ahead of the BiGRU,
    which scores `scoring_threads` batches at once meanwhile, each on one torch thread.
    """
    features = _background(stream_features(blocks, detector.config.features))
    with _torch_threads(1):
        for logits in stream_logits(detector, features, grid):
            yield sigmoid(logits)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (never raised), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Detection:
    """One file's result: probabilities (unless they were handed on, `detect_file`) and
    decisions per frame, segments, duration (s)."""

    path: Path
    probabilities: np.ndarray | None
    decisions: np.ndarray
    segments: list[Segment]
    duration: float


def detect_file(
    detector: Scorer,
    path: str | Path,
    smoothing: Smoothing | None = None,
    block_seconds: float = BLOCK_SECONDS,
    on_audio: Callable[[float], object] | None = None,
    on_probabilities: Callable[[np.ndarray], object] | None = None,
    grid: ScoringGrid | None = None,
) -> Detection:
    """Stream ``path`` through ``detector`` (a `Detector` or `scorer_for` one), its windows
    on ``grid`` (default: the model's, `stream_logits`), and smooth; ``on_audio(seconds)``
    per audio block of ``block_seconds``.

    With ``on_probabilities`` the frame probabilities go to it block by block and are not
    kept (`Detection.probabilities` is None): memory then holds 1–2 bytes a frame (`Decider`).
    """
    smoothing = smoothing or Smoothing()
    config = detector.config.features
    samples = 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal samples
        for block in blocks:
            samples += len(block)
            if on_audio is not None:
                on_audio(len(block) / config.sample_rate)
            yield block

    decider = Decider(smoothing, detector.threshold, config.hop_seconds)
    kept = []
    audio = counted(stream_audio(path, block_seconds))
    for probabilities in stream_probabilities(detector, audio, grid):
        decider.push(probabilities)
        if on_probabilities is None:
            kept.append(probabilities)
        else:
            on_probabilities(probabilities)
    decisions = decider.decisions()
    duration = samples / config.sample_rate
    segments = to_segments(decisions, config.hop_seconds, duration)
    return Detection(Path(path), np.concatenate(kept) if on_probabilities is None else None,
                     decisions, segments, duration)


def _with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """``(item, is_last)`` for each item, looking one item ahead."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def _background(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``items`` in a worker thread, up to ``depth`` items ahead of the consumer.

    The worker's exceptions are raised here; closing this iterator stops the worker.
    """
    results: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    cancelled = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not cancelled.is_set():
            try:
                results.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as error:  # noqa: B036 - handed to the consumer, re-raised there
            put((False, error))
        else:
            put((False, None))

    worker = threading.Thread(target=produce, name="musicdet-features", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = results.get()
            if ok:
                yield item  # type: ignore[misc]
            elif item is None:
                return
            else:
                raise item  # type: ignore[misc]
    finally:
        cancelled.set()
        worker.join()
