"""Benchmark archive runs of `musicdet detect`: x realtime of a folder of files with --jobs 1
and --jobs 2, and of the resumed run that finds every file done.

    python bench/archive.py [--files 24] [--seconds 150]

Writes FILES wav files of SECONDS each (noise then chords) in nested folders of a temp dir and
runs `musicdet.batch.detect` with the default detector on them, each run into a fresh output
folder, then once more into the last one (all skipped).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from musicdet.batch import detect
from musicdet.shipped import default_model

SAMPLE_RATE = 16000


def write_archive(folder: Path, files: int, seconds: float) -> None:
    """``files`` wavs of ``seconds``, half noise, half a chord, under folder/aNN/."""
    rng = np.random.default_rng(0)
    time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * time) for f in (220.0, 277.2, 329.6)) / 6
    for index in range(files):
        noise = 0.2 * rng.standard_normal(len(time))
        path = folder / f"a{index % 4:02d}" / f"prog{index:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.where(time < seconds / 2, noise, chord).astype(np.float32),
                        SAMPLE_RATE, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="musicdet-archive-") as tmp:
        folder = Path(tmp) / "in"
        write_archive(folder, args.files, args.seconds)
        model = default_model()
        for jobs in (1, 2):
            summary = detect(model, [folder], Path(tmp) / f"out{jobs}", jobs=jobs,
                             progress=False)
            print(f"--jobs {jobs}: {summary.lines()[0]}")
        summary = detect(model, [folder], Path(tmp) / "out2", jobs=2, progress=False)
        print(f"resumed: {summary.lines()[0]}")


if __name__ == "__main__":
    main()
