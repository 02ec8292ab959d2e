"""Source providers: one small module per kind of source behind one interface.

A provider says what it is (`SourceInfo`: name, kind, version, licence), whether it can run
here (`available`), and draws audio deterministically from a generator (`draw`: float32
mono at 16 kHz, RMS -20 dBFS; recordings, with their pauses, over their active frames). Its
underlying material (a score, an instrument preset, a voice, a recording) is assigned to one
split by a stable hash of the material's identity (`split_of`), and a draw for a split uses
only that split's material, so training, validation and test programmes never share a source.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from musicdet.configtools import ConfigError

Kind = Literal["music", "singing", "speech", "noise"]
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# Shares of every provider's material per split (by hash, so stable as material is added).
SPLIT_SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class SourceInfo:
    """What a provider is: its registry name, kind of audio, version and licence notes."""

    name: str
    kind: Kind
    version: str
    licence: str


class Source(ABC):
    """A provider of source audio (see the module docstring)."""

    @property
    @abstractmethod
    def info(self) -> SourceInfo:
        """Name, kind, version (with that of the data it uses) and licence."""

    @abstractmethod
    def available(self) -> bool:
        """Whether the provider's packages and data are installed here."""

    @abstractmethod
    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        """``seconds`` of audio from ``split``'s material: float32 mono 16 kHz, -20 dBFS RMS.

        Deterministic: the same generator state gives the same samples.
        """

    def why_unavailable(self) -> str:
        """One line saying what to install when `available` is false."""
        return "not installed"

    def has_material(self, split: Split) -> bool:
        """Whether ``split`` holds any of the provider's material (one with few pieces, e.g.
        a handful of voices, may have none in validation or test)."""
        return True


def split_of(identity: str) -> Split:
    """The split of the material named ``identity`` (stable across runs and machines)."""
    digest = hashlib.sha256(identity.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    for split in SPLITS:
        position -= SPLIT_SHARES[split]
        if position < 0:
            return split
    return SPLITS[-1]


def in_split(identities: Iterable[str], split: Split, namespace: str = "") -> list[str]:
    """The ``identities`` (prefixed by ``namespace`` for hashing) that fall into ``split``."""
    return [i for i in identities if split_of(f"{namespace}{i}") == split]


_REGISTRY: dict[str, Source] = {}
_CACHE_DIR: list[Path] = []


def set_cache_dir(path: str | Path | None) -> None:
    """Where providers keep converted material (content-keyed; None: memory only)."""
    _CACHE_DIR[:] = [Path(path)] if path is not None else []


def cache_dir() -> Path | None:
    """The folder `set_cache_dir` chose, or None."""
    return _CACHE_DIR[0] if _CACHE_DIR else None


def register(source: Source) -> Source:
    """Add ``source`` to the registry under its name (one provider per name)."""
    if source.info.name in _REGISTRY:
        raise ValueError(f"source {source.info.name!r} is registered twice")
    _REGISTRY[source.info.name] = source
    return source


def registry() -> dict[str, Source]:
    """Every registered provider by name, the built-in ones included."""
    from musicdet.synth.sources import (  # noqa: F401  (importing registers them)
        additive,
        arrangements,
        debian,
        flite,
        piper,
        procedural,
        scores,
        singing,
        textured,
    )

    return dict(_REGISTRY)


def get(name: str, key: str = "sources") -> Source:
    """The available provider ``name``; a `ConfigError` on ``key`` if unknown or missing."""
    sources = registry()
    if name not in sources:
        raise ConfigError(key, f"unknown source {name!r}; known: {', '.join(sorted(sources))}")
    source = sources[name]
    if not source.available():
        raise ConfigError(key, f"source {name!r} is not available: {source.why_unavailable()}")
    return source


def resolve_weights(requested: Mapping[str, float] | None, default: Mapping[str, float],
                    key: str, optional: bool = False, split: Split = "train"
                    ) -> dict[str, float]:
    """Provider weights to draw ``split`` with: ``requested`` (each one must be available)
    or, when ``None``, the ``default`` providers that are available here; either way only
    those with material in ``split``. None left is an error unless the role is ``optional``."""
    sources = registry()
    if requested is not None:
        for name in requested:
            get(name, key)
        chosen = {name: weight for name, weight in requested.items() if weight > 0}
    else:
        chosen = {name: weight for name, weight in default.items()
                  if weight > 0 and sources[name].available()}
        if not chosen and not optional:
            raise ConfigError(key, f"none of the default sources {', '.join(default)} is "
                                   "available")
    present = {name: weight for name, weight in chosen.items()
               if sources[name].has_material(split)}
    if chosen and not present and not optional:
        raise ConfigError(key, f"none of {', '.join(chosen)} has material in the {split} split "
                               "(too few recordings, speakers or pieces to share among the "
                               "train, validation and test splits)")
    return present


def describe(names: Iterable[str]) -> list[dict[str, str]]:
    """Name, kind, version and licence of each provider in ``names`` (for corpus.json)."""
    sources = registry()
    return [asdict(sources[name].info) for name in sorted(set(names))]


def table() -> str:
    """A plain-text table of every provider: name, kind, available, version, licence."""
    rows = [("name", "kind", "available", "version", "licence")]
    for name, source in sorted(registry().items()):
        info = source.info
        rows.append((name, info.kind, "yes" if source.available() else "no", info.version,
                     info.licence))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)),
                                row[4]]).rstrip() for row in rows)
