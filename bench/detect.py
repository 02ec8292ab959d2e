"""Benchmark `musicdet detect`: ×realtime and peak memory of streamed detection on long files.

    python bench/detect.py [--hours 1.0] [--skip-long]

Writes a HOURS-long and a 4×HOURS-long 16 kHz wav into a temp dir and scores them with the
shipped model (musicdet/models/default.pt). Each measurement runs in a fresh subprocess, so
its peak RSS is its own:

* reference: the path before issue 14, measured here as the baseline: openSMILE chroma
  (and its import) in the feature worker thread, the BiGRU on one thread at a time, one
  batch per 60 s block, denormals not flushed (today's streaming otherwise: each window
  scored once; the old CLI ran the BiGRU on torch's threads, one per core, beside the
  worker: slower still on a busy machine, where they spin), frame scores kept;
* detect: streamed detect (decode + features in a worker thread, the BiGRU in one scoring
  thread per core, frame scores handed on as `musicdet detect` writes them), torch, and
  detect-onnx: the same with onnxruntime running the model (what `--runtime auto`
  picks where the onnx extra is installed); detect-600/450: detect-onnx with
  ``--window-frames 600 --hop-frames 450`` (1.33 windows a frame against 2; other scores:
  the README gives their realdev AUC);
* features: decode + log-Mel + chroma alone; gru / gru-onnx: the BiGRU alone on
  precomputed features, `scoring_threads` batches at once as in detect (their peak RSS
  holds the whole file's features: 0.2 GB an hour).

Ratios are against the reference measured in the same run, so a busy machine shifts the
absolute figures but less so the ratios; CPU seconds (user + system, all threads) change
least with load. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000


def write_programme(path: Path, hours: float, seed: int = 0) -> None:
    """Alternating minute-long noise and chords, written block by block (flat memory)."""
    rng = np.random.default_rng(seed)
    minute = 60 * SAMPLE_RATE
    time_axis = np.arange(minute) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * time_axis) for f in (220.0, 277.2, 329.6)) / 6
    total = round(hours * 3600 * SAMPLE_RATE)
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as sound:
        for index, start in enumerate(range(0, total, minute)):
            length = min(minute, total - start)
            noise = 0.2 * rng.standard_normal(length)
            sound.write((noise if index % 2 else chord[:length]).astype(np.float32))


def measure(mode: str, audio: Path) -> dict[str, float]:
    """Run one measurement (`_child`) in a fresh interpreter; returns its timings and RSS."""
    command = [sys.executable, __file__, "--child", mode, str(audio)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _child(mode: str, audio_path: str) -> None:
    import torch

    from musicdet import detect, features, sequences
    from musicdet.audio import audio_duration, stream_audio
    from musicdet.detect import detect_file, scorer_for, stream_features, stream_logits
    from musicdet.modelfile import load_model
    from musicdet.sequences import ScoringGrid
    from musicdet.shipped import DEFAULT_MODEL

    if mode == "reference":  # all looked up by name at run time
        features.chroma_features = features.opensmile_chroma
        detect.scoring_threads = lambda: 1
        sequences.flush_denormals = lambda: None
    torch.set_num_threads(1)
    detector = load_model(DEFAULT_MODEL)
    scorer = scorer_for(detector, "torch" if mode in ("reference", "detect", "gru") else "onnx")
    config = detector.config.features
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "reference":
        detect_file(scorer, audio_path, block_seconds=60.0)
    elif mode.startswith("detect"):  # frame scores handed on, as `musicdet detect` does
        grid = ScoringGrid(600, 450) if mode == "detect-600/450" else None
        detect_file(scorer, audio_path, on_probabilities=lambda _: None, grid=grid)
    elif mode == "features":
        for _ in stream_features(stream_audio(audio_path), config):
            pass
    elif mode in ("gru", "gru-onnx"):
        blocks = list(stream_features(stream_audio(audio_path), config))
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in stream_logits(scorer, blocks):
            pass
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": rss_mb,
                      "audio_seconds": audio_duration(audio_path)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="length of the short input")
    parser.add_argument("--skip-long", action="store_true", help="no 4×HOURS input")
    args = parser.parse_args()

    from musicdet.sequences import scoring_threads

    print(f"cores: {os.cpu_count()}, load average: {_load()}, BiGRU batches at once: "
          f"{scoring_threads()} (reference: 1), one thread each")
    with tempfile.TemporaryDirectory() as tmp:
        lengths = [args.hours] if args.skip_long else [args.hours, 4 * args.hours]
        for hours in lengths:
            audio = Path(tmp) / f"{hours:g}h.wav"
            write_programme(audio, hours)
            modes = ["reference", "detect", "detect-onnx", "detect-600/450", "features", "gru",
                     "gru-onnx"]
            report(hours, {mode: measure(mode, audio) for mode in modes})
            audio.unlink()
    print(f"\nload average after: {_load()}")


def report(hours: float, results: dict[str, dict[str, float]]) -> None:
    """Wall-clock ×realtime and its ratio to the reference; CPU seconds and ×realtime per
    second of CPU (what a busy machine changes least); peak RSS."""
    audio_seconds = results["reference"]["audio_seconds"]
    reference = results["reference"]
    print(f"\n{hours:g} h input ({audio_seconds:.0f} s of audio):")
    print(f"  {'path':14s} {'wall s':>7s} {'×realtime':>10s} {'vs ref':>7s} {'CPU s':>7s} "
          f"{'×/CPU-s':>8s} {'vs ref':>7s} {'peak RSS':>9s}")
    for mode, result in results.items():
        wall, cpu = result["seconds"], result["cpu_seconds"]
        print(f"  {mode:14s} {wall:7.1f} {audio_seconds / wall:9.0f}× "
              f"{reference['seconds'] / wall:6.2f}× {cpu:7.1f} {audio_seconds / cpu:7.0f}× "
              f"{reference['cpu_seconds'] / cpu:6.2f}× {result['peak_rss_mb']:6.0f} MB")


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    else:
        main()
