"""Benchmark `musicdet detect`: ×realtime and peak memory of streamed detection on long files.

    python bench/detect.py [--hours 1.0] [--threads 1] [--skip-long]

Writes a HOURS-long and a 4×HOURS-long 16 kHz wav into a temp dir, saves an untrained model of
the paper's size, and runs each measurement in a fresh subprocess (so its peak RSS is its
own): the streamed detect path (decode + features in a worker thread, BiGRU in the main
thread), features alone (decode + log-Mel + chroma), BiGRU alone (on precomputed features),
and the whole-file non-streaming path as the baseline.
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


def measure(mode: str, model: Path, audio: Path, threads: int) -> dict[str, float]:
    """Run one measurement (`_child`) in a fresh interpreter; returns its timings and RSS."""
    command = [sys.executable, __file__, "--child", mode, str(model), str(audio), str(threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _child(mode: str, model_path: str, audio_path: str, threads: int) -> None:
    import torch

    from musicdet.audio import audio_duration, load_audio, stream_audio
    from musicdet.detect import detect_file, stream_features, stream_logits
    from musicdet.features import extract_features
    from musicdet.modelfile import load_model

    torch.set_num_threads(threads)
    detector = load_model(model_path)
    config = detector.config.features
    start = time.perf_counter()
    if mode == "detect":
        detect_file(detector, audio_path)
    elif mode == "features":
        for _ in stream_features(stream_audio(audio_path), config):
            pass
    elif mode == "gru":
        blocks = list(stream_features(stream_audio(audio_path), config))
        start = time.perf_counter()
        for _ in stream_logits(detector, blocks):
            pass
    elif mode == "whole":
        detector.probabilities(extract_features(load_audio(audio_path), config))
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "audio_seconds": audio_duration(audio_path),
                      "peak_rss_mb": rss_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="length of the short input")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the BiGRU")
    parser.add_argument("--skip-long", action="store_true", help="no 4×HOURS input")
    args = parser.parse_args()

    from musicdet.config import RunConfig
    from musicdet.features import Normalizer
    from musicdet.model import BiGRUDetector
    from musicdet.modelfile import save_model

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
          f"torch threads for the BiGRU: {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = RunConfig()
        rng = np.random.default_rng(0)
        normalizer = Normalizer.fit([np.concatenate(
            [rng.normal(-10, 5, (500, 128)), rng.uniform(0, 0.5, (500, 12))], 1)])
        model = save_model(folder / "model.pt", BiGRUDetector(config.model), config,
                           normalizer, {})
        lengths = [args.hours] if args.skip_long else [args.hours, 4 * args.hours]
        for hours in lengths:
            audio = folder / f"{hours:g}h.wav"
            write_programme(audio, hours)
            modes = ["detect", "features", "gru", "whole"] if hours == args.hours else ["detect"]
            results = {mode: measure(mode, model, audio, args.threads) for mode in modes}
            report(hours, results)
            audio.unlink()


def report(hours: float, results: dict[str, dict[str, float]]) -> None:
    audio_seconds = results["detect"]["audio_seconds"]
    print(f"\n{hours:g} h input ({audio_seconds:.0f} s of audio):")
    for mode, result in results.items():
        print(f"  {mode:9s} {result['seconds']:7.1f} s  {audio_seconds / result['seconds']:6.0f}× "
              f"realtime  peak RSS {result['peak_rss_mb']:7.0f} MB")
    if "whole" in results:
        detect, whole = results["detect"], results["whole"]
        parts = results["features"]["seconds"] + results["gru"]["seconds"]
        speed = whole["seconds"] / detect["seconds"]
        memory = detect["peak_rss_mb"] / whole["peak_rss_mb"]
        print(f"  streamed detect vs whole-file baseline: {speed:.2f}× the speed, "
              f"{memory:.2f}× the memory")
        print(f"  split: features {results['features']['seconds'] / parts:.0%}, BiGRU "
              f"{results['gru']['seconds'] / parts:.0%} of their sum; pipelining gives "
              f"{parts / detect['seconds']:.2f}× the sum's speed")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
