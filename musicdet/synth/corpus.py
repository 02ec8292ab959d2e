"""`write_corpus`: a folder of synthetic programmes in the generic label format.

Programme ``i`` of a corpus depends only on ``(seed, i)``, so a larger corpus extends a
smaller one, and rerunning with the same arguments leaves a complete folder untouched. Each
programme draws on the material of one split (every ``round(1 / validation_fraction)``-th
programme, from programme 0, on validation material, the others on training material; test
throughout for a test corpus), and corpus.json lists the validation programmes — the ones
`musicdet train` holds out — the providers (with version and licence) that made it, and the
user's pools (folder, number of files, hash of their list).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

import musicdet
from musicdet.configtools import to_dict
from musicdet.fsutil import atomic_path, write_text
from musicdet.synth import sources
from musicdet.synth.config import SynthConfig
from musicdet.synth.dsp import SAMPLE_RATE
from musicdet.synth.programme import Segments, generate_programme, palette
from musicdet.synth.sources import Split, recordings

MANIFEST = "corpus.json"


def programme_seed(seed: int, index: int) -> int:
    """The seed of programme ``index`` in the corpus of ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def programme_split(index: int, config: SynthConfig) -> Split:
    """The split whose material programme ``index`` draws on: a fixed stride, so that a
    larger corpus keeps a smaller one's validation programmes and every corpus of at least
    one programme holds some (when ``validation_fraction`` > 0)."""
    if config.test_corpus:
        return "test"
    if config.validation_fraction == 0:
        return "train"
    stride = max(1, round(1 / config.validation_fraction))
    return "validation" if index % stride == 0 else "train"


def programme_paths(out_dir: Path, index: int) -> tuple[Path, Path]:
    """(wav, tsv) paths of programme ``index``."""
    stem = out_dir / f"prog-{index:04d}"
    return stem.with_suffix(".wav"), stem.with_suffix(".tsv")


def write_segments(path: Path, segments: Segments) -> None:
    """Write ``segments`` as a generic label TSV (header ``onset\\toffset\\tlabel``, seconds)."""
    rows = [f"{onset:.3f}\t{offset:.3f}\t{label}" for onset, offset, label in segments]
    write_text(path, "\n".join(["onset\toffset\tlabel", *rows]) + "\n")


def write_corpus(out_dir: str | Path, hours: float, seed: int,
                 config: SynthConfig | None = None, progress: bool = True,
                 cache_dir: str | Path | None = None, jobs: int = 1) -> list[Path]:
    """Write ``hours`` of programmes (prog-NNNN.wav + .tsv) and corpus.json into ``out_dir``;
    return the wav paths. Converted source material is cached in ``cache_dir`` (default: a
    folder source-cache next to ``out_dir``). ``jobs`` > 1 makes programmes in up to that many
    worker processes, one per 4 programmes to make at most (the same files: each programme
    depends only on seed and index).

    If corpus.json shows the same seed, config, providers (and their versions) and package
    version, the programmes already there are kept and only missing ones are made (a finished
    corpus is not regenerated; a larger one extends it); otherwise every programme is
    rewritten. Programmes beyond the requested count are removed. Every file is written
    atomically. A config naming a provider that is not installed raises `ConfigError`.
    """
    config = config or SynthConfig()
    if not (isinstance(hours, int | float) and hours > 0 and math.isfinite(hours)):
        raise ValueError(f"hours: expected a positive number of hours, got {hours!r}")
    out_dir = Path(out_dir)
    sources.set_cache_dir(cache_dir if cache_dir is not None else out_dir.parent / "source-cache")
    count = max(1, math.ceil(hours * 3600 / config.programme_seconds - 1e-9))
    identity = _identity(seed, config)
    reuse = _read_identity(out_dir) == identity
    if not reuse:
        (out_dir / MANIFEST).unlink(missing_ok=True)
    wavs = [programme_paths(out_dir, index)[0] for index in range(count)]
    validation = [wav.stem for index, wav in enumerate(wavs)
                  if programme_split(index, config) == "validation"]
    missing = [index for index, wav in enumerate(wavs)
               if not (reuse and wav.exists() and wav.with_suffix(".tsv").exists())]
    make = functools.partial(_write_programme, out_dir, seed, config, sources.cache_dir())
    bar = tqdm(total=count, initial=count - len(missing), desc="synth", unit="prog",
               disable=not progress)
    with bar, _mapper(min(jobs, len(missing) // 4)) as mapper:
        for _ in mapper(make, missing):
            bar.update()
    _remove_programmes_from(out_dir, count)
    summary = json.dumps({**identity, "hours": hours, "programmes": count,
                          "validation": validation}, indent=2) + "\n"
    manifest = out_dir / MANIFEST
    if not manifest.exists() or manifest.read_text(encoding="utf-8") != summary:
        write_text(manifest, summary)
    return wavs


def _write_programme(out_dir: Path, seed: int, config: SynthConfig, cache: Path | None,
                     index: int) -> None:
    """Make programme ``index`` and write its wav and tsv atomically."""
    sources.set_cache_dir(cache)
    wav, tsv = programme_paths(out_dir, index)
    audio, segments = generate_programme(programme_seed(seed, index), config,
                                         programme_split(index, config))
    with atomic_path(wav) as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    write_segments(tsv, segments)


@contextlib.contextmanager
def _mapper(jobs: int) -> Iterator[Callable[..., Iterator[Any]]]:
    """An ordered map: the built-in one for one job, else a pool of ``jobs`` fresh processes
    (spawned, so no thread state of the parent is copied)."""
    if jobs <= 1:
        yield map
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        yield pool.map


def _remove_programmes_from(out_dir: Path, count: int) -> None:
    """Delete prog-NNNN.wav/.tsv with NNNN >= ``count`` (left by a larger corpus)."""
    for path in out_dir.glob("prog-[0-9][0-9][0-9][0-9].*"):
        if path.suffix in (".wav", ".tsv") and int(path.stem[5:]) >= count:
            path.unlink()


IDENTITY_KEYS = ("seed", "config", "sources", "pools", "version")


def _identity(seed: int, config: SynthConfig) -> dict[str, Any]:
    """What makes programme ``i`` what it is (hours only decides how many there are)."""
    chosen = palette(config)
    return {"seed": seed, "config": to_dict(config),
            "sources": sources.describe(chosen.providers()),
            "pools": recordings.describe_pools(config.pools), "version": musicdet.__version__}


def _read_identity(out_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {key: data.get(key) for key in IDENTITY_KEYS}
