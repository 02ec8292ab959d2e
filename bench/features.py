"""Front-end speed on one core: decode + 140-dim features vs. the chroma and log-Mel stages alone.

Prints each stage as × realtime (seconds of audio per second of one core, best of 3 after a
warm-up call) on 60 s of generated audio: the chroma musicdet computes (numpy) beside
openSMILE's own (the reference it equals within 1e-5), and the goal whole ≥ 200× realtime.

    python bench/features.py [--seconds 60] [--repeats 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy / torch load their thread pools

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from musicdet.audio import SAMPLE_RATE, load_audio  # noqa: E402
from musicdet.features import (  # noqa: E402
    FeatureConfig,
    chroma_features,
    extract_file,
    log_mel,
    opensmile_chroma,
)


def music_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A chord of harmonic tones changing every second, over noise: 16 kHz float32."""
    rng = np.random.default_rng(seed)
    time_axis = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    roots = 220.0 * 2 ** (rng.integers(0, 12, size=int(np.ceil(seconds))) / 12)
    root = roots[time_axis.astype(int)]
    signal = sum(
        0.1 / harmonic * np.sin(2 * np.pi * harmonic * ratio * root * time_axis)
        for ratio in (1.0, 1.26, 1.5)
        for harmonic in (1, 2, 3)
    )
    return (signal + 0.01 * rng.standard_normal(len(time_axis))).astype(np.float32)


def best_seconds(stages: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each stage; rounds interleave the stages so load changes hit all."""
    for run in stages.values():
        run()  # warm-up: librosa's and openSMILE's first calls set things up
    best = dict.fromkeys(stages, float("inf"))
    for _ in range(repeats):
        for name, run in stages.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = FeatureConfig()
    audio = music_like(args.seconds)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.wav"
        soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        decoded = load_audio(path)
        stages = {
            "decode + features (whole)": lambda: extract_file(path, config),
            "decode alone": lambda: load_audio(path),
            "chroma alone (numpy)": lambda: chroma_features(decoded, config),
            "chroma alone (openSMILE)": lambda: opensmile_chroma(decoded, config),
            "log-Mel alone": lambda: log_mel(decoded, config),
        }
        seconds = best_seconds(stages, args.repeats)
    print(f"{args.seconds:g} s of 16 kHz audio, 1 thread, best of {args.repeats}:")
    for name, elapsed in seconds.items():
        print(f"  {name:<28} {args.seconds / elapsed:8.0f}x realtime  ({elapsed * 1e3:7.1f} ms)")
    ratio = seconds["chroma alone (openSMILE)"] / seconds["chroma alone (numpy)"]
    print(f"numpy chroma: {ratio:.1f}x openSMILE's speed; "
          f"whole: {args.seconds / seconds['decode + features (whole)']:.0f}x (goal >= 200x)")


if __name__ == "__main__":
    main()
