"""General MIDI rendering with real instrument samples: tinysoundfont plays note lists through
a SoundFont, then a mastering chain (room reverb, EQ, compression) gives a produced sound.

SoundFonts, best first: FluidR3_GM (Debian ``fluid-soundfont-gm``), MuseScore_General (Debian
``musescore-general-soundfont-small``), else TimGM6mb, which ships inside ``pretty_midi``.
tinysoundfont is installed with ``pip install --no-deps`` (its ``pyaudio`` requirement is
only for live playback), so it is not a package dependency: `available` checks the import.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from scipy import signal

from musicdet.synth.dsp import (
    SAMPLE_RATE,
    band,
    compress,
    db_to_gain,
    fit_length,
    samples,
    set_level,
)

RENDER_RATE = 22050  # Hz: tinysoundfont renders here (≈2× faster than 44.1 kHz), then soxr
DRUM_CHANNEL = 9
MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)
MUSESCORE_LICENCE = "MIT (MuseScore_General, S. Christian Collins)"
# (path, licence), best first; the first that exists is used.
SYSTEM_SOUNDFONTS = (
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "MIT (FluidR3_GM, Frank Wen)"),
    ("/usr/share/sounds/sf2/MuseScore_General.sf2", MUSESCORE_LICENCE),
    ("/usr/share/sounds/sf3/MuseScore_General.sf3", MUSESCORE_LICENCE),
)
TIMGM6MB_LICENCE = "GPL-2.0 (TimGM6mb.sf2 from pretty_midi, data loaded at run time)"


@dataclass(frozen=True)
class Note:
    """One note: onset and offset in seconds, MIDI pitch and velocity (1-127)."""

    onset: float
    offset: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Track:
    """The notes one GM program plays (``drums``: a channel-10 kit, pitches are drum keys)."""

    program: int
    notes: tuple[Note, ...]
    drums: bool = False
    level_db: float = 0.0  # track gain relative to the others


def tinysoundfont_available() -> bool:
    """Whether tinysoundfont can be imported (``make setup`` installs it)."""
    return importlib.util.find_spec("tinysoundfont") is not None


@functools.cache
def soundfont() -> tuple[Path, str] | None:
    """(path, licence) of the best SoundFont installed, or None."""
    for path, licence in SYSTEM_SOUNDFONTS:
        if Path(path).is_file():
            return Path(path), licence
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        return None
    bundled = Path(spec.origin).parent / "TimGM6mb.sf2"
    return (bundled, TIMGM6MB_LICENCE) if bundled.is_file() else None


def gm_available() -> bool:
    """Whether GM rendering can run: tinysoundfont and a SoundFont are installed."""
    return tinysoundfont_available() and soundfont() is not None


def gm_version() -> str:
    """tinysoundfont's version and the SoundFont's file name and size (changes re-render)."""
    found = soundfont()
    if not gm_available() or found is None:
        return "unavailable"
    path = found[0]
    return (f"tinysoundfont {importlib.metadata.version('tinysoundfont')}, {path.name} "
            f"({path.stat().st_size} bytes)")


def gm_licence() -> str:
    """The licence of the SoundFont in use (tinysoundfont itself is MIT)."""
    found = soundfont()
    return found[1] if found else "unavailable"


@functools.cache
def _soundfont_bytes() -> bytes:
    found = soundfont()
    if found is None:
        raise RuntimeError("no SoundFont installed")
    return found[0].read_bytes()


def render_tracks(tracks: Sequence[Track], seconds: float) -> np.ndarray:
    """``tracks`` played by the SoundFont for ``seconds``: float64 mono at 16 kHz (raw level).

    A fresh synthesiser per call keeps the result a pure function of the notes.
    """
    import tinysoundfont
    from tinysoundfont.midi import ControlChange, Event, NoteOff, NoteOn, ProgramChange

    synth = tinysoundfont.Synth(samplerate=RENDER_RATE, gain=-6.0)
    synth.sfload(_soundfont_bytes())
    events: list[tuple[float, int, Event]] = []
    for index, track in enumerate(tracks):
        channel = DRUM_CHANNEL if track.drums else MELODIC_CHANNELS[index % len(MELODIC_CHANNELS)]
        volume = int(np.clip(100 * db_to_gain(track.level_db), 1, 127))
        events += [(0.0, 0, Event(ProgramChange(track.program), 0.0, channel, False)),
                   (0.0, 0, Event(ControlChange(7, volume), 0.0, channel, False))]
        for note in track.notes:
            if note.onset < seconds:
                events += [(note.onset, 2, Event(NoteOn(note.pitch, note.velocity), note.onset,
                                                 channel, False)),
                           (note.offset, 1, Event(NoteOff(note.pitch), note.offset, channel,
                                                  False))]
    events.sort(key=lambda item: (item[0], item[1]))
    sequencer = tinysoundfont.Sequencer(synth)
    sequencer.add([event for _, _, event in events])
    n = samples(seconds) * RENDER_RATE // SAMPLE_RATE + 1
    stereo = np.frombuffer(synth.generate(n), np.float32).reshape(-1, 2)
    mono = stereo.mean(axis=1)
    return fit_length(soxr.resample(mono, RENDER_RATE, SAMPLE_RATE).astype(np.float64),
                      samples(seconds))


def master(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    """A random production chain: room reverb, EQ, mastering compression; -20 dBFS float32."""
    out = audio
    if rng.random() < 0.7:
        out = reverb(rng, out, rt60_s=rng.uniform(0.2, 2.0), wet=rng.uniform(0.05, 0.35))
    out = band(out, (None, 60.0, 120.0)[rng.integers(3)], (None, 5000.0, 7000.0)[rng.integers(3)],
               order=2)
    if rng.random() < 0.8:
        out = compress(out, threshold_db=rng.uniform(-30.0, -15.0), ratio=rng.uniform(1.5, 6.0))
    return set_level(out, -20.0).astype(np.float32)


def reverb(rng: np.random.Generator, audio: np.ndarray, rt60_s: float, wet: float
           ) -> np.ndarray:
    """``audio`` in a room: convolved with exponentially decaying, darkening noise."""
    t = np.arange(samples(min(rt60_s, 1.5))) / SAMPLE_RATE
    tail = band(rng.standard_normal(len(t)), None, rng.uniform(3000, 7000), order=2)
    response = tail * np.exp(-6.9 * t / rt60_s)
    response /= max(np.sqrt(np.sum(response**2)), 1e-12)
    wet_signal = signal.fftconvolve(audio, response)[: len(audio)]
    return (1 - wet) * audio + wet * wet_signal
