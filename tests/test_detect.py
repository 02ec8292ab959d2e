"""Detection: streaming equals whole-file scoring, smoothing steps, writers, CLI behaviour."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from musicdet.audio import load_audio
from musicdet.batch import detect
from musicdet.cli import main
from musicdet.config import RunConfig
from musicdet.configtools import ConfigError
from musicdet.datasets import LabelledAudio, frame_labels
from musicdet.detect import (
    BATCH_WINDOWS,
    Decider,
    Segment,
    Smoothing,
    binarize,
    decide,
    detect_file,
    drop_short_music,
    fill_gaps,
    frame_score_writer,
    median_smooth,
    scorer_for,
    stream_features,
    stream_logits,
    to_segments,
    write_frame_scores,
    write_segments,
)
from musicdet.features import (
    MelScaler,
    Normalizer,
    extract_features,
    mel_energies,
    opensmile_chroma,
)
from musicdet.model import BiGRUDetector
from musicdet.modelfile import Detector, load_model, save_model
from musicdet.sequences import (
    ScoringGrid,
    blend_windows,
    scoring_pool,
    sigmoid,
    window_starts,
)
from musicdet.shipped import DEFAULT_MODEL

THRESHOLD = 0.5


def tiny_detector(window: int = 60) -> Detector:
    """An untrained BiGRU with 8 hidden units, its normaliser fitted on random features."""
    torch.manual_seed(0)
    config = RunConfig.from_dict(
        {"model": {"hidden_size": 8}, "training": {"sequence_frames": window}}
    )
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(-8, 4, (200, 128)), rng.uniform(0, 0.3, (200, 12))], 1)
    normalizer = Normalizer.fit([features.astype(np.float32)])
    model = BiGRUDetector(config.model).eval()
    return Detector(model, config, normalizer, {"val_threshold": THRESHOLD})


def save_tiny_model(path: Path) -> Path:
    detector = tiny_detector()
    return save_model(path, detector.model, detector.config, detector.normalizer,
                      detector.metrics)


def write_wav(path: Path, seconds: float, seed: int = 0, sample_rate: int = 16000) -> Path:
    """Noise, then a chord: something for the features to tell apart."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    time = np.arange(n) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * time) for f in (220.0, 277.2, 329.6)) / 6
    signal = np.where(time < seconds / 2, 0.2 * rng.standard_normal(n), chord)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, signal.astype(np.float32), sample_rate)
    return path


@pytest.fixture(scope="module")
def detector() -> Detector:
    return tiny_detector()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(("seconds", "sample_rate", "block_seconds"),
                         [(9.37, 16000, 0.7), (9.37, 16000, 2.0), (5.0, 22050, 1.3),
                          (0.3, 16000, 0.1)])
def test_streaming_equals_whole_file(
    tmp_path: Path, detector: Detector, seconds: float, sample_rate: int, block_seconds: float
) -> None:
    path = write_wav(tmp_path / "a.wav", seconds, sample_rate=sample_rate)
    whole = detector.probabilities(extract_features(load_audio(path), detector.config.features))
    result = detect_file(detector, path, Smoothing(), block_seconds=block_seconds)
    assert result.probabilities.shape == whole.shape
    np.testing.assert_allclose(result.probabilities, whole, rtol=0, atol=1e-6)
    assert result.duration == pytest.approx(len(load_audio(path)) / 16000)


def test_stream_features_equal_whole_signal(detector: Detector) -> None:
    audio = np.random.default_rng(1).normal(0, 0.1, 16000 * 3 + 77).astype(np.float32)
    whole = extract_features(audio, detector.config.features)
    for size in (500, 1601, 7000):
        blocks = [audio[i : i + size] for i in range(0, len(audio), size)]
        streamed = np.concatenate(list(stream_features(blocks, detector.config.features)))
        np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("window", [20, 21, 60])
@pytest.mark.parametrize("n_frames", [7, 20, 21, 61, 250])
def test_stream_logits_equal_whole_matrix(window: int, n_frames: int) -> None:
    detector = tiny_detector(window)
    features = np.random.default_rng(n_frames).normal(-5, 4, (n_frames, 140)).astype(np.float32)
    whole = detector.logits(features)
    for round_windows, chunk in ((1, 13), (3, 100), (7, 7), (2, 1)):
        pieces = [features[i : i + chunk] for i in range(0, n_frames, chunk)]
        streamed = np.concatenate(list(stream_logits(detector, pieces,
                                                     round_windows=round_windows)))
        np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("grid", [ScoringGrid(40, 30), ScoringGrid(20, 20), ScoringGrid(20, 7),
                                  ScoringGrid(50, 1)])
def test_stream_logits_on_another_grid_equal_the_whole_matrix_on_it(grid: ScoringGrid) -> None:
    detector = tiny_detector(20)
    features = np.random.default_rng(grid.hop).normal(-5, 4, (333, 140)).astype(np.float32)
    whole = blend_windows(detector.score, features, grid.window, hop=grid.hop)
    pieces = [features[i : i + 45] for i in range(0, len(features), 45)]
    streamed = np.concatenate(list(stream_logits(detector, pieces, grid, round_windows=4)))
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)


class CountingScorer:
    """A detector's scorer that counts the windows it scores."""

    def __init__(self, detector: Detector) -> None:
        self.detector, self.config, self.threshold = detector, detector.config, 0.5
        self.windows = 0

    def score(self, batch: np.ndarray) -> np.ndarray:
        self.windows += len(batch)
        return self.detector.score(batch)


def test_stream_logits_score_each_window_once() -> None:
    scorer = CountingScorer(tiny_detector(60))
    features = np.zeros((1000, 140), dtype=np.float32)
    list(stream_logits(scorer, [features[i : i + 70] for i in range(0, 1000, 70)],
                       round_windows=3))
    assert scorer.windows == len(window_starts(1000, 60))


def test_default_stream_blocks_equal_whole_matrix() -> None:
    """detect's own block size (`BATCH_WINDOWS` windows per BiGRU batch), several blocks."""
    detector = tiny_detector(60)
    n_frames = 3 * BATCH_WINDOWS * 30 + 77
    features = np.random.default_rng(2).normal(-5, 4, (n_frames, 140)).astype(np.float32)
    pieces = [features[i : i + 6000] for i in range(0, n_frames, 6000)]
    streamed = np.concatenate(list(stream_logits(detector, pieces)))
    np.testing.assert_allclose(streamed, detector.logits(features), rtol=0, atol=1e-6)


def test_batches_scored_at_once_blend_as_one_after_another() -> None:
    detector = tiny_detector(60)
    features = np.random.default_rng(3).normal(-5, 4, (1000, 140)).astype(np.float32)
    serial = detector.logits(features, batch_windows=5)
    with scoring_pool(3) as pool:
        np.testing.assert_allclose(detector.logits(features, batch_windows=5, pool=pool), serial,
                                   rtol=0, atol=1e-6)  # the pool flushes denormals


def test_detect_scores_equal_the_reference_path_with_the_default_model(tmp_path: Path) -> None:
    """The shipped model on 200 s: streamed detect (numpy chroma, large batches) gives the
    whole-file scores of openSMILE's chroma and `Detector.probabilities` within 1e-4."""
    path = write_wav(tmp_path / "a.wav", 200.0)
    detector = load_model(DEFAULT_MODEL)
    config = detector.config.features
    audio = load_audio(path)
    reference_features = MelScaler(config)(np.concatenate(
        [mel_energies(audio, config), opensmile_chroma(audio, config)], axis=1))
    reference = detector.probabilities(reference_features)
    result = detect_file(detector, path)
    assert result.probabilities.shape == reference.shape
    np.testing.assert_allclose(result.probabilities, reference, rtol=0, atol=1e-4)


def test_median_filter_removes_spikes_and_keeps_steps() -> None:
    p = np.array([0.1, 0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    np.testing.assert_array_equal(median_smooth(p, 3),
                                  [0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    np.testing.assert_array_equal(median_smooth(p, 1), p)


def test_threshold_and_hysteresis() -> None:
    p = np.array([0.2, 0.5, 0.7, 0.5, 0.2, 0.5, 0.5, 0.2, 0.9])
    np.testing.assert_array_equal(binarize(p, 0.6), p >= 0.6)
    # low regions [1, 4) and [5, 7) and [8, 9): the second never reaches 0.6
    np.testing.assert_array_equal(binarize(p, 0.6, 0.4), [0, 1, 1, 1, 0, 0, 0, 0, 1])


def test_gap_filling_only_between_music() -> None:
    d = np.array([0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    np.testing.assert_array_equal(fill_gaps(d, 3), [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0])


def test_short_music_dropped() -> None:
    d = np.array([1, 0, 1, 1, 1, 0, 1, 1], dtype=bool)
    np.testing.assert_array_equal(drop_short_music(d, 2), [0, 0, 1, 1, 1, 0, 1, 1])


def test_decide_fills_gaps_before_dropping_short_music() -> None:
    p = np.r_[np.full(5, 0.9), np.full(2, 0.1), np.full(5, 0.9), np.full(20, 0.1)]
    smoothing = Smoothing(median_seconds=0, min_music=0.08, min_non_music=0.03)
    # the 2-frame gap is filled first, so the joined 12-frame run outlives min_music
    assert decide(p, smoothing, 0.5, 0.01).sum() == 12
    assert decide(p, Smoothing(median_seconds=0, threshold=0.95, min_music=0), 0.5, 0.01).sum() == 0


@given(seed=st.integers(0, 2**32 - 1), median_seconds=st.sampled_from([0.0, 0.02, 0.05, 0.5]),
       low_threshold=st.sampled_from([None, 0.3]), cuts=st.lists(st.integers(0, 400),
                                                                 max_size=6))
@settings(max_examples=60, deadline=None)
def test_decisions_on_streamed_blocks_equal_every_step_on_the_whole_file(
        seed: int, median_seconds: float, low_threshold: float | None, cuts: list[int]) -> None:
    """`Decider` fed a file's probabilities in blocks cut anywhere (empty ones too) gives the
    decisions of each smoothing step applied to the whole file in turn."""
    rng = np.random.default_rng(seed)
    levels = rng.choice([0.1, 0.4, 0.8], size=rng.integers(1, 40))
    p = np.repeat(levels, rng.integers(1, 20, len(levels)))  # steps of 1-19 frames, noisy
    p = np.clip(p + rng.normal(0, 0.15, len(p)), 0, 1)
    smoothing = Smoothing(median_seconds=median_seconds, threshold=0.6,
                          low_threshold=low_threshold, min_music=0.04, min_non_music=0.03)
    expected = median_smooth(p, round(median_seconds / 0.01))
    expected = binarize(expected, 0.6, low_threshold)
    expected = drop_short_music(fill_gaps(expected, 3), 4)
    decider = Decider(smoothing, 0.5, 0.01)
    edges = sorted(min(c, len(p)) for c in cuts)
    for start, stop in zip([0, *edges], [*edges, len(p)], strict=True):
        decider.push(p[start:stop])
    np.testing.assert_array_equal(decider.decisions(), expected)


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_frame_scores_written_block_by_block_equal_one_write(tmp_path: Path, fmt: str) -> None:
    p = np.random.default_rng(0).uniform(size=1234)
    write_frame_scores(tmp_path / f"whole.{fmt}", p, fmt, 0.01)
    with frame_score_writer(tmp_path / f"blocks.{fmt}", fmt, 0.01) as write:
        for start in range(0, len(p), 500):
            write(p[start : start + 500])
    assert (tmp_path / f"blocks.{fmt}").read_bytes() == (tmp_path / f"whole.{fmt}").read_bytes()
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(tmp_path / "blocks.npy"), p)
    else:
        assert (tmp_path / "whole.csv").read_text().splitlines()[2] == f"0.01,{float(p[1])!r}"


def test_frame_score_writer_leaves_nothing_when_the_file_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), frame_score_writer(tmp_path / "a.npy", "npy", 0.01) as write:
        write(np.ones(10))
        raise RuntimeError("decoding failed half-way")
    assert list(tmp_path.iterdir()) == []


def test_smoothing_rejects_low_threshold_above_threshold() -> None:
    with pytest.raises(ConfigError, match="low_threshold"):
        Smoothing(threshold=0.4, low_threshold=0.6)
    with pytest.raises(ValueError, match="low_threshold"):
        decide(np.zeros(3), Smoothing(low_threshold=0.6), default_threshold=0.4, hop_seconds=0.01)


def test_segments_give_back_the_decisions_as_frame_labels() -> None:
    decisions = np.array([0, 1, 1, 1, 0, 0, 1, 1], dtype=bool)
    duration = 0.075  # frames centred at 0 … 0.07 s
    segments = to_segments(decisions, 0.01, duration)
    assert [s.label for s in segments] == ["no-music", "music", "no-music", "music"]
    assert segments[1].onset == pytest.approx(0.01) and segments[1].offset == pytest.approx(0.04)
    assert segments[-1].offset == duration
    item = LabelledAudio(Path("x.wav"), [(s.onset, s.offset, s.label == "music")
                                         for s in segments], duration)
    labels, mask = frame_labels(item, len(decisions), 0.01)
    assert mask.all()
    np.testing.assert_array_equal(labels.astype(bool), decisions)


# --------------------------------------------------------------------------- writers


SEGMENTS = [Segment(0.0, 1.5, "no-music"), Segment(1.5, 4.25, "music"),
            Segment(4.25, 5.0, "no-music"), Segment(5.0, 6.125, "music")]
MUSIC = [(1.5, 4.25), (5.0, 6.125)]


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_delimited_segments_parse_back(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    write_segments(path, SEGMENTS, fmt, "x")  # type: ignore[arg-type]
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ","))
    assert [(float(r["onset"]), float(r["offset"]), r["label"]) for r in rows] == [
        (s.onset, s.offset, s.label) for s in SEGMENTS]


def test_audacity_labels_parse_back(tmp_path: Path) -> None:
    write_segments(tmp_path / "x.txt", SEGMENTS, "audacity", "x")
    rows = [line.split("\t") for line in (tmp_path / "x.txt").read_text().splitlines()]
    assert [(float(a), float(b)) for a, b, _ in rows] == MUSIC
    assert {label for *_, label in rows} == {"music"}


def test_rttm_parses_back(tmp_path: Path) -> None:
    write_segments(tmp_path / "x.rttm", SEGMENTS, "rttm", "my file")
    rows = [line.split(" ") for line in (tmp_path / "x.rttm").read_text().splitlines()]
    assert all(len(row) == 10 and row[0] == "SPEAKER" and row[1] == "my_file" for row in rows)
    ends = [(float(r[3]), float(r[3]) + float(r[4])) for r in rows]
    np.testing.assert_allclose(ends, MUSIC, atol=1e-6)
    assert {row[7] for row in rows} == {"music"}


def test_json_parses_back(tmp_path: Path) -> None:
    write_segments(tmp_path / "x.json", SEGMENTS, "json", "x")
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["file"] == "x"
    assert [Segment(**s) for s in data["segments"]] == SEGMENTS


# --------------------------------------------------------------------------- CLI


def test_cli_detect_writes_segments_and_frame_scores(tmp_path: Path, model_file: Path) -> None:
    audio = write_wav(tmp_path / "in" / "prog.wav", 4.0)
    out = tmp_path / "out"
    args = ["detect", str(model_file), str(tmp_path / "in"), "--out", str(out), "--quiet"]
    assert main([*args, "--frame-scores", "csv", "--block-seconds", "1"]) == 0
    assert main([*args, "--frame-scores", "npy", "--format", "json", "--threshold", "0"]) == 0
    with open(out / "prog.frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    times = np.array([float(r["time"]) for r in rows])
    probs = np.array([float(r["music_prob"]) for r in rows])
    np.testing.assert_allclose(times, np.arange(len(rows)) * 0.01, atol=1e-9)  # frame centres
    assert len(rows) == 1 + len(load_audio(audio)) // 160
    expected = detect_file(scorer_for(load_model(model_file), "auto"), audio).probabilities
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "prog.frames.npy"), expected, atol=1e-6)
    segments = json.loads((out / "prog.segments.json").read_text())["segments"]
    assert [s["label"] for s in segments] == ["music"]  # threshold 0: everything is music
    assert segments[0]["offset"] == pytest.approx(4.0)
    assert (out / "prog.segments.tsv").read_text().startswith("onset\toffset\tlabel\n")


def test_cli_detect_on_another_scoring_grid(tmp_path: Path, model_file: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--window-frames / --hop-frames score the whole file's windows on that grid, the run
    records it, and a run on another grid redoes the file."""
    audio = write_wav(tmp_path / "prog.wav", 7.0)
    out = tmp_path / "out"
    args = ["detect", str(model_file), str(audio), "--out", str(out), "--quiet",
            "--frame-scores", "npy", "--runtime", "torch", "--block-seconds", "2"]
    assert main([*args, "--window-frames", "80", "--hop-frames", "60"]) == 0
    detector = load_model(model_file)
    features = extract_features(load_audio(audio), detector.config.features)
    expected = sigmoid(blend_windows(detector.score, features, 80, hop=60))
    written = np.load(out / "prog.frames.npy")
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)
    assert json.loads((out / "detect-run.json").read_text())["grid"] == {"window": 80, "hop": 60}
    assert main(args) == 0  # the model's own grid: the file is scored again, differently
    assert np.abs(np.load(out / "prog.frames.npy") - written).max() > 1e-4
    assert main([*args, "--hop-frames", "0"]) != 0
    assert ("hop_frames: `1 <= hop_frames <= window_frames` must hold, but got (0, 60)"
            in capsys.readouterr().err)


class LoudnessModel(torch.nn.Module):
    """Logit +20 where the frame's mean normalised log-Mel is above 0.5, -20 well below."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * (features[..., :128].mean(-1) - 0.5)


def test_detect_times_frames_and_segments_on_the_model_hop(tmp_path: Path) -> None:
    """At hop 320 (20 ms) frame t is centred at t · 0.02 s: loud 0–5 s is music up to the
    first frame whose window is all quiet (frame 251, 5.02 s)."""
    rng = np.random.default_rng(0)
    signal = np.concatenate([0.3 * rng.standard_normal(80000),
                             0.003 * rng.standard_normal(80000)]).astype(np.float32)
    soundfile.write(tmp_path / "prog.wav", signal, 16000)
    config = RunConfig.from_dict({"features": {"hop_length": 320},
                                  "training": {"sequence_frames": 60}})
    normalizer = Normalizer.fit([extract_features(signal, config.features)], config.features)
    detector = Detector(LoudnessModel(), config, normalizer, {"val_threshold": 0.5})
    assert detect(detector, [tmp_path / "prog.wav"], tmp_path / "out", frame_scores="csv",
                  progress=False).failures == []
    with open(tmp_path / "out" / "prog.frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 + 160000 // 320
    assert [float(r["time"]) for r in rows] == [round(t * 0.02, 6) for t in range(501)]
    segments = (tmp_path / "out" / "prog.segments.tsv").read_text().splitlines()[1:]
    assert segments == ["0.000000\t5.020000\tmusic", "5.020000\t10.000000\tno-music"]


def test_detect_refuses_a_device_it_cannot_use(tmp_path: Path, model_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    audio = write_wav(tmp_path / "in" / "prog.wav", 1.0)
    for device, message in (("cuda", "^device: cuda was asked for but no GPU is available"),
                            ("gpu", "^device: expected one of auto, cpu, cuda, got 'gpu'")):
        with pytest.raises(ConfigError, match=message):
            detect(model_file, [audio], tmp_path / "out", device=device, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_detect_on_cuda_scores_as_on_cpu(tmp_path: Path, model_file: Path) -> None:
    audio = write_wav(tmp_path / "in" / "prog.wav", 20.0)
    for device in ("cpu", "cuda"):
        detect(model_file, [audio], tmp_path / device, frame_scores="npy", device=device,
               progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "cuda" / "prog.frames.npy"),
                               np.load(tmp_path / "cpu" / "prog.frames.npy"), atol=1e-5)


def test_skip_bad_does_not_skip_a_bug_of_ours(tmp_path: Path, model_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(blocks: object, size: int) -> None:
        raise TypeError("a bug in rebuffering")

    monkeypatch.setattr("musicdet.audio._rebuffer", broken)
    audio = write_wav(tmp_path / "in" / "prog.wav", 1.0)
    with pytest.raises(TypeError, match="a bug in rebuffering"):
        detect(model_file, [audio], tmp_path / "out", progress=False)


def test_cli_reports_a_bad_file_and_goes_on(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    write_wav(folder / "good1.wav", 2.0)
    write_wav(folder / "good2.wav", 2.5, seed=1)
    (folder / "bad.wav").write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "out"
    args = ["detect", str(model_file), str(folder), "--out", str(out), "--quiet"]
    assert main([*args, "--overwrite"]) == 1
    captured = capsys.readouterr()
    assert "bad.wav" in captured.err and "2 files done" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "detect-run.json", "detect-summary.txt", "good1.segments.tsv", "good2.segments.tsv"]
