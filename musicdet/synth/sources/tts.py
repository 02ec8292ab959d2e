"""What the pooled text-to-speech providers (piper, flite) share: the sentences each split
speaks and a content-keyed cache of rendered utterances.

The pool is a fixed list of English news sentences (`musicdet.synth.speech.sentence` from a
fixed seed), each assigned to a split by the hash of its text, `POOL_SIZES` of them per
split (whole sentences are disjoint; the grammar's words and phrases recur in every split).
An utterance (one sentence by one voice with one set of synthesis parameters) is rendered
once and kept in memory and, when `sources.cache_dir` is set, as .npy under its ``tts``
folder, named by a hash of everything that makes it (engine and voice versions, text,
parameters; a lock file beside it lets one worker process render it while the others wait);
draws then vary it (`musicdet.synth.voice`) instead of rendering more.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from musicdet.fsutil import save_npy
from musicdet.synth import sources
from musicdet.synth.dsp import set_level
from musicdet.synth.sources import Split, split_of
from musicdet.synth.speech import sentence, trim_silence

FORMAT = 1  # of the cached utterances; bump to re-render
POOL_SEED = 20261201
POOL_SIZES: dict[str, int] = {"train": 80, "validation": 20, "test": 20}  # sentences per split
_MAX_TRIES = 100_000
_MEMORY: dict[str, np.ndarray] = {}


def pool_texts(split: Split) -> tuple[str, ...]:
    """The `POOL_SIZES` [``split``] sentences of ``split`` (disjoint from the other splits')."""
    return _texts(split, POOL_SIZES[split])


@functools.cache
def _texts(split: Split, count: int) -> tuple[str, ...]:
    rng = np.random.default_rng(POOL_SEED)
    seen: set[str] = set()
    found: list[str] = []
    for _ in range(_MAX_TRIES):
        text = sentence(rng, "en")
        if text not in seen:
            seen.add(text)
            if split_of(f"tts/{text}") == split:
                found.append(text)
                if len(found) == count:
                    return tuple(found)
    raise ValueError(f"POOL_SIZES.{split}: expected at most {len(found)} sentences, got {count}")


def utterance(key: str, render: Callable[[], np.ndarray]) -> np.ndarray:
    """The utterance content-keyed by ``key``: from memory, else the cache folder, else
    ``render()`` (16 kHz) with its silence trimmed, at -20 dBFS, float32, and stored."""
    digest = hashlib.sha256(f"{FORMAT}|{key}".encode()).hexdigest()[:24]
    if digest in _MEMORY:
        return _MEMORY[digest]
    folder = sources.cache_dir()
    if folder is None:
        audio = _finish(render())
    else:
        path = folder / "tts" / f"{digest}.npy"
        with _locked(path.with_suffix(".lock")):  # one worker process renders, others wait
            if path.is_file():
                audio = np.load(path)
            else:
                audio = _finish(render())
                save_npy(path, audio)
    _MEMORY[digest] = audio
    return audio


def _finish(audio: np.ndarray) -> np.ndarray:
    return set_level(trim_silence(set_level(audio, -20.0)), -20.0).astype(np.float32)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on file ``path`` (created) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def forget() -> None:
    """Empty the in-memory cache (the folder's copies stay)."""
    _MEMORY.clear()


def seed_of(key: str) -> int:
    """A 31-bit seed for the synthesiser's own random generator, from content key ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") >> 1
