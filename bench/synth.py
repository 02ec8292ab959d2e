"""Corpus build speed from a cold cache: the default corpus against today's procedural one.

    python bench/synth.py [--hours 1] [--jobs N] [--out DIR]

Writes ``--hours`` of the default embedded corpus (the best providers installed here) and the
same hours of the procedural baseline (additive music, espeak, procedural noise: the corpus
before real instruments, voices and recordings), each into an empty folder with an empty
source cache, with ``--jobs`` worker processes (default: the CPU count). Prints wall seconds,
× realtime (corpus seconds per wall second) and the ratio default / procedural measured in the
same run; the goal is a 1-hour default corpus in ≤ 5 minutes on 2 cores. A second build of
the default corpus into a fresh folder with the warm source cache shows what the cache saves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from musicdet.synth import SynthConfig, programme, write_corpus

PROCEDURAL = SynthConfig(music_sources={"additive": 1.0}, solo_sources={"additive-sparse": 1.0},
                         percussion_sources={"additive-percussion": 1.0}, singing_sources={},
                         speech_sources={"espeak": 1.0}, noise_sources={"procedural-noise": 1.0})


def build(out: Path, cache: Path, hours: float, config: SynthConfig, jobs: int) -> float:
    """Wall seconds to write ``hours`` of corpus into the empty folder ``out``."""
    start = time.perf_counter()
    write_corpus(out, hours, seed=0, config=config, progress=False, cache_dir=cache, jobs=jobs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="corpus length, hours")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=args.out))
    corpus_seconds = args.hours * 3600
    try:
        print("default providers:", ", ".join(programme.palette(SynthConfig()).providers()))
        runs = {
            "default, cold cache": build(scratch / "default", scratch / "cache-default",
                                         args.hours, SynthConfig(), args.jobs),
            "default, warm cache": build(scratch / "default-again", scratch / "cache-default",
                                         args.hours, SynthConfig(), args.jobs),
            "procedural, cold cache": build(scratch / "procedural", scratch / "cache-procedural",
                                            args.hours, PROCEDURAL, args.jobs),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.hours:g} h corpus, {args.jobs} jobs")
    print(f"{'corpus':24s} {'wall s':>8s} {'× realtime':>11s}")
    for name, seconds in runs.items():
        print(f"{name:24s} {seconds:8.1f} {corpus_seconds / seconds:11.1f}")
    cold = runs["default, cold cache"]
    verdict = "met" if cold / args.hours <= 300 else "missed"
    print(f"default / procedural (cold): {cold / runs['procedural, cold cache']:.2f}× the time;"
          f" goal ≤ 300 s per corpus hour: {verdict}")


if __name__ == "__main__":
    main()
