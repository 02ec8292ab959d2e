"""Procedural General MIDI music played through tinysoundfont: band arrangements in broadcast
styles (drums, bass, chords, lead), solo instruments and percussion-only grooves, with random
programs, tempo and key and humanised timing and velocity, then mastered.

Every draw composes new material (no piece is ever repeated), so the splits share nothing but
the SoundFont's instrument samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from musicdet import __version__
from musicdet.synth.music import DRUM_PATTERNS, PROGRESSIONS, SCALES, Key, motif, voicing
from musicdet.synth.sources import Source, SourceInfo, Split, register
from musicdet.synth.sources.gm import (
    Note,
    Track,
    gm_available,
    gm_licence,
    gm_version,
    master,
    render_tracks,
)

DRUM_KEYS = {"k": 36, "s": 38, "h": 42, "o": 46}  # GM channel-10 kick, snare, hats
CRASH, RIDE, CLAP = 49, 51, 39
# GM channel-10 hand percussion: bongos, congas, timbales, agogo, cabasa, maracas, claves,
# wood blocks, tambourine, cowbell, triangle, shaker-like guiro.
HAND_PERCUSSION = (60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 75, 76, 77, 54, 56, 81, 73)
PITCHED_PERCUSSION = (47, 116, 117, 114, 115, 112, 113)  # timpani, taiko, toms, steel drum ...
SOLO_INSTRUMENTS = (0, 1, 4, 6, 11, 12, 13, 21, 22, 24, 25, 40, 41, 42, 46, 56, 57, 60, 64, 65,
                    66, 68, 70, 71, 72, 73, 74, 75, 104, 105, 107, 109, 110)
POLYPHONIC = (0, 1, 4, 6, 24, 25, 46)  # solo instruments that also play chords


@dataclass(frozen=True)
class Style:
    """A broadcast arrangement: tempo (BPM), drums, GM programs per role (empty: not played)."""

    tempo: tuple[int, int]
    drums: str | None  # a key of music.DRUM_PATTERNS
    bass: tuple[int, ...]
    chords: tuple[int, ...]
    chord_modes: tuple[str, ...]  # music.voicing modes
    lead: tuple[int, ...]
    swing: float = 0.0  # share of an eighth note the off-beat eighths are late


STYLES = {
    "pop": Style((90, 130), "rock", (33, 34, 35), (0, 4, 5, 24, 25, 27), ("block", "arpeggio"),
                 (73, 65, 56, 80, 11, 22, 40, 71)),
    "rock": Style((100, 150), "rock", (33, 34, 29), (29, 30, 27, 16, 18), ("block",),
                  (30, 29, 81, 62)),
    "electronic": Style((115, 135), "four", (38, 39, 87), (88, 89, 90, 81, 91, 95),
                        ("arpeggio", "offbeat"), (80, 81, 84, 85, 98)),
    "hip-hop": Style((80, 98), "halftime", (38, 33), (4, 0, 88, 89, 11), ("block", "offbeat"),
                     (11, 80, 65, 12), swing=0.25),
    "jazz": Style((90, 170), "shuffle", (32,), (0, 4, 26), ("offbeat", "block"),
                  (65, 66, 56, 57, 73, 11), swing=0.4),
    "ambient": Style((60, 90), None, (), (88, 89, 91, 94, 48, 49, 52), ("block",),
                     (46, 11, 8, 14, 75, 73)),
    "orchestral": Style((60, 110), None, (43, 42, 58), (48, 49, 60, 61, 52),
                        ("block", "arpeggio"), (40, 56, 60, 73, 71, 68)),
}


def humanise(rng: np.random.Generator, onset: float, hold: float, pitch: int, velocity: float
             ) -> Note:
    """A note with timing jitter (8 ms) and velocity jitter, clipped to MIDI ranges."""
    onset = max(onset + rng.normal(0, 0.008), 0.0)
    return Note(onset, onset + max(hold, 0.03), int(np.clip(pitch, 0, 127)),
                int(np.clip(velocity + rng.normal(0, 8), 1, 127)))


def band_tracks(rng: np.random.Generator, seconds: float) -> list[Track]:
    """A random style's arrangement, ``seconds`` long: drums, bass, chords and lead."""
    style = STYLES[list(STYLES)[rng.integers(len(STYLES))]]
    key = Key(int(rng.integers(45, 58)), SCALES[list(SCALES)[rng.integers(len(SCALES))]])
    beat_s = 60.0 / rng.uniform(*style.tempo)
    n_bars = int(np.ceil(seconds / (4 * beat_s))) + 1
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    roots = [progression[bar % len(progression)] for bar in range(n_bars)]

    def at(beats: float) -> float:  # seconds of a beat position, swung off-beat eighths
        late = style.swing * 0.5 * beat_s if round(beats * 2) % 2 == 1 else 0.0
        return beats * beat_s + late

    def pick(programs: tuple[int, ...]) -> int:
        return programs[rng.integers(len(programs))]

    tracks = []
    if style.drums:
        tracks.append(_drum_track(rng, style, n_bars, at))
    if style.bass:
        beats = (0, 1, 2, 3) if rng.random() < 0.5 else (0, 2)
        bass = [humanise(rng, at(bar * 4 + beat), beat_s * 0.9, key.note(root, -1), 95)
                for bar, root in enumerate(roots) for beat in beats]
        tracks.append(Track(pick(style.bass), tuple(bass), level_db=rng.uniform(-3, 1)))
    mode = style.chord_modes[rng.integers(len(style.chord_modes))]
    chords = [humanise(rng, at(bar * 4 + onset), hold * beat_s, note, 70)
              for bar, root in enumerate(roots)
              for onset, notes, hold in voicing(mode, key.chord(root, 3 + (rng.random() < 0.3)))
              for note in notes]
    tracks.append(Track(pick(style.chords), tuple(chords), level_db=rng.uniform(-6, 0)))
    if rng.random() < 0.85:
        tracks.append(_lead_track(rng, pick(style.lead), key, n_bars, at, beat_s))
    return tracks


def _drum_track(rng: np.random.Generator, style: Style, n_bars: int,
                at: Callable[[float], float]) -> Track:
    patterns = DRUM_PATTERNS[str(style.drums)]
    keys = {**DRUM_KEYS, "h": RIDE if style.swing > 0.3 else DRUM_KEYS["h"]}
    if style.swing and rng.random() < 0.5:
        keys["s"] = CLAP
    hits = []
    for bar in range(n_bars):
        pattern = patterns[rng.integers(len(patterns))] if bar % 4 == 3 else patterns[0]
        if bar % 8 == 0:
            hits.append(humanise(rng, at(bar * 4), 0.5, CRASH, 100))
        hits += [humanise(rng, at(bar * 4 + step / 4), 0.1, keys[hit], 100 if step % 4 == 0
                          else 80) for step, hit in enumerate(pattern) if hit in keys]
    return Track(0, tuple(hits), drums=True, level_db=rng.uniform(-3, 2))


def _lead_track(rng: np.random.Generator, program: int, key: Key, n_bars: int,
                at: Callable[[float], float], beat_s: float) -> Track:
    tune = motif(rng)
    notes = []
    for phrase in range(0, n_bars, 2):
        transpose = int(rng.choice([0, 0, 2, -2, 4]))
        notes += [humanise(rng, at(phrase * 4 + onset), hold * beat_s, key.note(degree + transpose,
                                                                                1), 90)
                  for onset, degree, hold in tune if rng.random() < 0.9]
    return Track(program, tuple(notes), level_db=rng.uniform(-2, 3))


def solo_tracks(rng: np.random.Generator, seconds: float) -> list[Track]:
    """One instrument alone (a tune with rubato; chords on keyboards, guitars and harp), or,
    a third of the time, a sparse duet: a few notes and chords with long gaps."""
    key = Key(int(rng.integers(50, 65)), SCALES[list(SCALES)[rng.integers(len(SCALES))]])
    if rng.random() < 1 / 3:
        return [_sparse_track(rng, key, seconds) for _ in range(int(rng.integers(1, 3)))]
    program = SOLO_INSTRUMENTS[rng.integers(len(SOLO_INSTRUMENTS))]
    beat_s = 60.0 / rng.uniform(60, 130)
    notes: list[Note] = []
    time_s = rng.uniform(0, 0.3)
    while time_s < seconds:
        stretch = rng.uniform(0.85, 1.2)  # rubato per phrase
        for onset, degree, hold in motif(rng):
            notes.append(humanise(rng, time_s + onset * beat_s * stretch,
                                  hold * beat_s * stretch, key.note(degree + 7 * (program < 8)),
                                  rng.uniform(55, 100)))
            if program in POLYPHONIC and onset % 2 == 0:
                notes += [humanise(rng, time_s + onset * beat_s * stretch, 2 * beat_s, pitch, 60)
                          for pitch in key.chord(int(rng.integers(0, 7)))]
        time_s += 8 * beat_s * stretch + rng.uniform(0, 0.6)
    return [Track(program, tuple(notes))]


def _sparse_track(rng: np.random.Generator, key: Key, seconds: float) -> Track:
    notes: list[Note] = []
    onset = rng.uniform(0, 0.5)
    while onset < seconds:
        pitches = key.chord(int(rng.integers(0, 7))) if rng.random() < 0.3 else [
            key.note(int(rng.integers(0, 8)))]
        notes += [humanise(rng, onset, rng.uniform(0.4, 2.0), pitch, rng.uniform(50, 90))
                  for pitch in pitches]
        onset += rng.uniform(0.6, 2.5)
    return Track(SOLO_INSTRUMENTS[rng.integers(len(SOLO_INSTRUMENTS))], tuple(notes))


def percussion_tracks(rng: np.random.Generator, seconds: float) -> list[Track]:
    """Percussion only: 2-5 hand-percussion or kit voices in interlocking patterns (16 or 12
    steps per bar, accents, fills), sometimes with pitched drums (timpani, taiko, toms)."""
    steps = 12 if rng.random() < 0.3 else 16
    step_s = 60.0 / rng.uniform(70, 140) * 4 / steps
    voices = [int(v) for v in rng.choice(HAND_PERCUSSION + tuple(DRUM_KEYS.values()),
                                         int(rng.integers(2, 6)), replace=False)]
    patterns = {v: rng.random(steps) < rng.uniform(0.15, 0.6) for v in voices}
    n_bars = int(seconds / (steps * step_s)) + 1
    hits = []
    for bar in range(n_bars):
        fill = bar % 4 == 3 and rng.random() < 0.5
        for voice, pattern in patterns.items():
            for step in range(steps):
                if pattern[step] or (fill and rng.random() < 0.3):
                    accent = 105 if step % (steps // 4) == 0 else 75
                    hits.append(humanise(rng, (bar * steps + step) * step_s, 0.2, voice, accent))
    tracks = [Track(0, tuple(hits), drums=True)]
    if rng.random() < 0.4:
        program = PITCHED_PERCUSSION[rng.integers(len(PITCHED_PERCUSSION))]
        pitch = int(rng.integers(38, 55))
        pitched = [humanise(rng, (bar * steps + step) * step_s, 0.4, pitch + int(rng.choice(
            [0, 0, 5, 7, 12])), 90) for bar in range(n_bars) for step in range(0, steps, 2)
            if rng.random() < 0.4]
        tracks.append(Track(program, tuple(pitched), level_db=rng.uniform(-6, 0)))
    return tracks


class GMMusic(Source):
    """Procedural GM music composed by ``compose`` (rng, seconds) -> tracks, then mastered."""

    def __init__(self, name: str, compose: Callable[[np.random.Generator, float], list[Track]]
                 ) -> None:
        self._name, self._compose = name, compose

    @property
    def info(self) -> SourceInfo:
        return SourceInfo(self._name, "music", f"musicdet {__version__}; {gm_version()}",
                          f"MIT; SoundFont: {gm_licence()}")

    def available(self) -> bool:
        return gm_available()

    def why_unavailable(self) -> str:
        return ("needs tinysoundfont (pip install --no-deps tinysoundfont, as make setup does) "
                "and a SoundFont (pretty_midi ships one)")

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        return master(rng, render_tracks(self._compose(rng, seconds), seconds))


register(GMMusic("gm-arrangements", band_tracks))
register(GMMusic("gm-solo", solo_tracks))
register(GMMusic("gm-percussion", percussion_tracks))
