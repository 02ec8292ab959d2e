"""Peak memory of a trial worker with each feature transport, and the shared cache's build time.

Writes a generic-format corpus of MINUTES of audio (tones and noise in 10 s segments, WAV +
CSV), then runs a one-trial CE study over it with ``storage.features.transport`` object_store,
then shared_cache (whose cache starts empty: its "ready in" is the build time), each on a
fresh local Ray. While a trial runs, its worker's /proc status is sampled: VmHWM (peak RSS)
and the largest RssAnon (private memory), RssFile (pages of mapped files, which the kernel can
drop) and RssShmem (Ray's object store pages) seen.

    python bench/feature_transport.py [MINUTES]   # default 30: ≈ 100 MB of features
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile
import yaml

from search.runner import run_study
from search.spec import load_spec
from search.trainable import trial_dir, worker_info

SAMPLE_RATE = 16_000
SEGMENT_S = 10.0
FILE_S = 150.0
STATUS_KEYS = ("VmHWM", "RssAnon", "RssFile", "RssShmem")


def write_corpus(folder: Path, seconds: float, seed: int = 0) -> list[Path]:
    """Generic-format files of `FILE_S` each (``seconds`` in all): music (a random chord of
    harmonic tones) and no-music (noise) alternating every `SEGMENT_S`; their WAV paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(max(1, round(seconds / FILE_S))):
        parts, rows = [], ["onset,offset,label"]
        for k in range(int(FILE_S / SEGMENT_S)):
            music = (k + index) % 2 == 0
            parts.append(_chord(rng) if music else 0.1 * rng.standard_normal(
                int(SEGMENT_S * SAMPLE_RATE)))
            rows.append(f"{k * SEGMENT_S:g},{(k + 1) * SEGMENT_S:g},"
                        f"{'music' if music else 'no-music'}")
        path = folder / f"clip-{index:03d}.wav"
        soundfile.write(path, np.concatenate(parts).astype(np.float32), SAMPLE_RATE)
        path.with_suffix(".csv").write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


def _chord(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(SEGMENT_S * SAMPLE_RATE)) / SAMPLE_RATE
    roots = 110.0 * 2 ** (rng.integers(0, 24, size=3) / 12)
    return sum(0.1 / h * np.sin(2 * np.pi * h * f * t) for f in roots for h in (1, 2, 3))


def study_spec(folder: Path, corpus: Path, cache: Path, transport: str) -> Path:
    """A one-trial CE study over ``corpus`` whose trials get features by ``transport``."""
    spec = {
        "name": transport, "base": {
            "data": {"format": "generic", "path": str(corpus), "cache_dir": str(cache)},
            "model": {"hidden_size": 32, "num_layers": 1},
            "training": {"epochs": 2, "batch_size": 32}},
        "search": {"sampler": "grid", "grid": [{"type": "ce"}], "losses": ["ce"],
                   "n_trials": 1},
        "pruner": {"type": "none"}, "resources": {"cpus": 1, "max_concurrent": 1},
        "storage": {"features": {"transport": transport}},
    }
    path = folder / f"{transport}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def proc_status(pid: int) -> dict[str, int]:
    """The `STATUS_KEYS` of /proc/PID/status in kB ({} once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {k: int(fields[k].split()[0]) for k in STATUS_KEYS if k in fields}


def watch(folder: Path, stop: threading.Event, peaks: dict[str, int]) -> None:
    """Until ``stop``: the largest of each `STATUS_KEYS` of the trial worker in ``folder``."""
    while not stop.wait(0.2):
        pid = worker_info(folder).get("pid")
        for key, value in (proc_status(pid) if pid else {}).items():
            peaks[key] = max(peaks.get(key, 0), value)


def measure(path: Path) -> tuple[dict[str, int], float]:
    """Run the study at ``path``: its trial worker's peaks (kB) and the study's seconds."""
    spec = load_spec(path)
    peaks: dict[str, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(trial_dir(spec.workdir, 0), stop, peaks))
    watcher.start()
    started = time.perf_counter()
    try:
        run_study(spec)
    finally:
        stop.set()
        watcher.join()
    return peaks, time.perf_counter() - started


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        write_corpus(folder / "corpus", minutes * 60)
        print(f"corpus: {minutes:g} min written in {time.perf_counter() - started:.1f} s")
        for transport in ("object_store", "shared_cache"):
            peaks, seconds = measure(study_spec(folder, folder / "corpus", folder / "cache",
                                                transport))
            shown = ", ".join(f"{k} {peaks.get(k, 0) / 1024:.0f} MB" for k in STATUS_KEYS)
            print(f"{transport}: trial worker {shown}; study {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
