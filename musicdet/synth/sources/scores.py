"""Real scores from the corpus inside the ``music21`` wheel played by GM ensembles.

Each work (a file, or one tune of a multi-tune ABC file) is one piece of material, assigned to
a split by the hash of its corpus path. A work is converted once to a note list (quarter
lengths and MIDI pitches per part) and cached by content key; a draw picks a work of its
split, a tempo, a transposition and an ensemble, starts somewhere inside and loops short tunes.
Palestrina (© John Miller, derivative formats reserved) and the large Beethoven quartets (slow
to parse) are left out.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicdet.fsutil import write_text
from musicdet.synth import sources
from musicdet.synth.sources import Source, SourceInfo, Split, in_split, register
from musicdet.synth.sources.gm import (
    Note,
    Track,
    gm_available,
    gm_licence,
    gm_version,
    master,
    render_tracks,
)

FORMAT = 1  # of the cached note lists; bump to re-convert
MUSIC21_LICENCE = ("public-domain works, encodings distributed with music21 "
                   "(music21/corpus/license.txt)")
# GM programs per part, top part first; the last repeats for further parts.
ENSEMBLES = {
    "strings": (40, 40, 41, 42, 43), "organ": (19,), "piano": (0,), "harpsichord": (6,),
    "winds": (73, 68, 71, 70), "brass": (56, 60, 57, 58), "choir": (52, 53, 52, 52),
    "guitars": (25, 24, 24, 32), "mixed": (73, 40, 71, 42),
}
SOLO_PROGRAMS = (40, 110, 73, 74, 72, 71, 68, 21, 22, 105, 24, 0, 46, 75, 109, 64)


@dataclass(frozen=True)
class Collection:
    """Works of the music21 corpus (globs under its folder), how fast, on what, and licence."""

    globs: tuple[str, ...]
    tempo: tuple[float, float]  # quarter notes per minute
    ensembles: tuple[str, ...]  # keys of ENSEMBLES; empty: one solo instrument
    licence: str
    weight: float
    numbered: bool = False  # ABC files holding many tunes (X: numbers)


COLLECTIONS = {
    "bach-chorales": Collection(("bach/bwv*.mxl",), (60, 100),
                                ("organ", "strings", "winds", "brass", "choir", "piano"),
                                MUSIC21_LICENCE, 0.25),
    "monteverdi-madrigals": Collection(("monteverdi/*.mxl",), (70, 120),
                                       ("choir", "strings", "winds", "mixed"),
                                       MUSIC21_LICENCE, 0.1),
    "string-quartets": Collection(("haydn/*/*.mxl", "mozart/*/*.mxl"), (70, 140),
                                  ("strings", "strings", "winds", "piano"), MUSIC21_LICENCE,
                                  0.15),
    "essen-folksongs": Collection(("essenFolksong/*.abc",), (80, 150), (),
                                  "Essen Folksong Collection (ABC by Seymour Schlien): "
                                  "non-commercial use (music21/corpus/essenFolksong/license.txt)",
                                  0.2, numbered=True),
    "ryans-mammoth": Collection(("ryansMammoth/*.abc",), (90, 150), (), MUSIC21_LICENCE, 0.15),
    "oneills-1850": Collection(("oneills1850/*.abc",), (90, 150), (), MUSIC21_LICENCE, 0.15,
                               numbered=True),
}

Parts = list[list[tuple[float, float, int]]]  # per part: (onset, length, pitch) in quarters


def music21_root() -> Path | None:
    """The music21 corpus folder, or None when music21 is not installed."""
    spec = importlib.util.find_spec("music21")
    return Path(spec.origin).parent / "corpus" if spec and spec.origin else None


@functools.cache
def works(collection: str) -> tuple[str, ...]:
    """Identities of the works in ``collection``: corpus paths, "path#N" for numbered tunes."""
    root = music21_root()
    spec = COLLECTIONS[collection]
    if root is None:
        return ()
    found = []
    for pattern in spec.globs:
        for path in sorted(root.glob(pattern)):
            name = path.relative_to(root).as_posix()
            if spec.numbered:
                text = path.read_text(encoding="utf-8", errors="replace")
                found += [f"{name}#{n}" for n in re.findall(r"^X:\s*(\d+)", text, re.M)]
            else:
                found.append(name)
    return tuple(found)


def split_works(collection: str, split: Split) -> list[str]:
    """The works of ``collection`` assigned to ``split``."""
    return in_split(works(collection), split, "music21/")


def load_parts(identity: str) -> Parts:
    """The note lists of work ``identity``, converted once and cached (empty if unreadable)."""
    cache = sources.cache_dir()
    version = importlib.metadata.version("music21")
    key = hashlib.sha256(f"{identity}|{version}|{FORMAT}".encode()).hexdigest()[:20]
    path = cache / "music21" / f"{key}.json" if cache else None
    if path and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    parts = _convert(identity)
    if path:
        write_text(path, json.dumps(parts))
    return parts


@functools.lru_cache(maxsize=256)
def _convert(identity: str) -> Parts:
    from music21 import converter

    name, _, number = identity.partition("#")
    try:
        score = converter.parse(str(music21_root() / name), number=int(number) if number else None)
    except Exception:  # a corpus file music21 cannot read is skipped, every time
        return []
    parts = []
    for part in getattr(score, "parts", [score]):
        notes = [(float(n.offset), float(n.quarterLength), int(p.midi))
                 for n in part.flatten().stripTies().notes for p in n.pitches
                 if n.quarterLength > 0]
        if notes:
            parts.append(notes)
    return parts


class ScoreMusic(Source):
    """music21 corpus works played by GM ensembles through tinysoundfont, then mastered."""

    @property
    def info(self) -> SourceInfo:
        version = (importlib.metadata.version("music21") if music21_root() else "unavailable")
        licences = sorted({c.licence for c in COLLECTIONS.values()})
        return SourceInfo("gm-scores", "music", f"music21 {version}; {gm_version()}",
                          f"{'; '.join(licences)}; SoundFont: {gm_licence()}")

    def available(self) -> bool:
        return gm_available() and music21_root() is not None

    def why_unavailable(self) -> str:
        return ("needs music21 (pip) and tinysoundfont (pip install --no-deps tinysoundfont, "
                "as make setup does) with a SoundFont (pretty_midi ships one)")

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        names = list(COLLECTIONS)
        weights = np.array([COLLECTIONS[n].weight for n in names])
        parts: Parts = []
        while not parts:  # until a readable work (a few corpus files are not)
            name = names[rng.choice(len(names), p=weights / weights.sum())]
            candidates = split_works(name, split)
            if candidates:
                parts = load_parts(candidates[rng.integers(len(candidates))])
        tracks = _ensemble_tracks(rng, parts, COLLECTIONS[name], seconds)
        return master(rng, render_tracks(tracks, seconds))


def _ensemble_tracks(rng: np.random.Generator, parts: Parts, collection: Collection,
                     seconds: float) -> list[Track]:
    """``parts`` at a random tempo and transposition, from a random point, looped to last."""
    beat_s = 60.0 / rng.uniform(*collection.tempo)
    if collection.ensembles:
        programs = ENSEMBLES[collection.ensembles[rng.integers(len(collection.ensembles))]]
    else:
        programs = (SOLO_PROGRAMS[rng.integers(len(SOLO_PROGRAMS))],)
    length_q = max(onset + length for notes in parts for onset, length, _ in notes)
    start_q = rng.uniform(0, max(length_q - seconds / beat_s, 0.0))
    transpose = int(rng.integers(-3, 4))
    tracks = []
    for index, notes in enumerate(parts):
        velocity = rng.uniform(60, 100)
        played = []
        for loop in range(int((start_q + seconds / beat_s) // length_q) + 1):
            for onset_q, length_q_note, pitch in notes:
                onset = ((onset_q + loop * length_q - start_q) * beat_s
                         + rng.normal(0, 0.008))
                if onset >= 0 and onset < seconds:
                    played.append(Note(onset, onset + length_q_note * beat_s * 0.95,
                                       int(np.clip(pitch + transpose, 0, 127)),
                                       int(np.clip(velocity + rng.normal(0, 8), 1, 127))))
        tracks.append(Track(programs[min(index, len(programs) - 1)], tuple(played),
                            level_db=rng.uniform(-4.0, 2.0)))
    return tracks


register(ScoreMusic())
