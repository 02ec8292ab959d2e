"""Music for the synthetic corpus: keys, chord progressions, melodies, bass and drums played
by wavetable, Karplus-Strong and inharmonic-bell instruments in a handful of styles."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from musicdet.synth.dsp import SAMPLE_RATE, add_at, band, fade, fit_length, samples, set_level

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
}
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 0, 3, 4),
                (1, 4, 0, 0), (0, 6, 5, 4), (3, 4, 2, 5))  # scale degrees of chord roots
TABLE_SIZE = 2048
MAX_PARTIAL_HZ = 7500.0


@dataclass(frozen=True)
class Timbre:
    """A wavetable instrument: harmonic amplitudes ``k**-slope`` (``odd``: odd harmonics only,
    ``partials``: explicit amplitudes), an envelope in seconds and vibrato depth (ratio)."""

    slope: float = 1.0
    odd: bool = False
    partials: tuple[float, ...] = ()
    attack: float = 0.01
    decay: float = 1.0  # time constant towards ``sustain``
    sustain: float = 1.0
    release: float = 0.1
    vibrato: float = 0.0
    brightness_decay: float = 0.0  # time constant of the spectrum darkening; 0 keeps it
    detune: float = 0.0  # ratio of a second, detuned oscillator (chorus)


TIMBRES = {
    "piano": Timbre(slope=1.1, attack=0.004, decay=0.7, sustain=0.0, release=0.08,
                    brightness_decay=0.25),
    "epiano": Timbre(partials=(1, 0.1, 0.35, 0.05, 0.12), attack=0.004, decay=1.2, sustain=0.0,
                     release=0.1, brightness_decay=0.4),
    "organ": Timbre(partials=(1, 0.8, 0.6, 0.0, 0.5, 0.0, 0.0, 0.4), attack=0.01, release=0.05),
    "strings": Timbre(slope=1.0, attack=0.25, release=0.35, vibrato=0.004, detune=0.003),
    "brass": Timbre(slope=0.8, attack=0.06, decay=0.3, sustain=0.75, release=0.1,
                    vibrato=0.002),
    "lead": Timbre(slope=1.0, odd=True, attack=0.01, decay=0.4, sustain=0.8, release=0.08,
                   vibrato=0.006),
    "flute": Timbre(partials=(1, 0.3, 0.12, 0.05), attack=0.07, release=0.1, vibrato=0.005),
    "pad": Timbre(slope=1.4, attack=0.6, release=0.9, detune=0.004),
    "bass": Timbre(partials=(1, 0.5, 0.2, 0.1), attack=0.005, decay=0.5, sustain=0.3,
                   release=0.06),
    "synth bass": Timbre(slope=1.0, attack=0.005, decay=0.25, sustain=0.5, release=0.05,
                         brightness_decay=0.12),
}
PLUCKED = ("pluck", "bell")


@dataclass(frozen=True)
class Style:
    """An arrangement: tempo range (BPM), drum pattern, instruments (``None``: not played)."""

    tempo: tuple[int, int]
    drums: str | None
    bass: str | None
    chords: tuple[str, ...]  # instrument choices for the harmony
    chord_mode: str  # "block", "arpeggio" or "offbeat"
    melody: tuple[str, ...]  # instrument choices for the tune; empty: no tune


# 16-step drum patterns: k = kick, s = snare, h = hi-hat, o = open hat, "-" = rest.
DRUM_PATTERNS = {
    "rock": ("k-h-s-h-k-k-s-h-", "k-h-s-hkk-h-s-h-"),
    "four": ("k-h-k-h-k-h-k-h-", "k-o-k-o-k-o-k-o-", "kh-hkhs-kh-hkhs-"),
    "halftime": ("k---h---s---h---", "k--kh---s---h-k-"),
    "shuffle": ("k-hhs-hhk-hhs-hh",),
}
STYLES = {
    "pop": Style((90, 130), "rock", "bass", ("piano", "epiano", "pluck"), "block",
                 ("lead", "flute", "brass", "bell")),
    "rock": Style((100, 150), "rock", "bass", ("organ", "brass", "pluck"), "block", ("lead",)),
    "electronic": Style((115, 135), "four", "synth bass", ("pad", "pluck"), "arpeggio",
                        ("lead", "bell")),
    "ambient": Style((60, 90), None, None, ("pad", "strings"), "block", ("bell", "flute")),
    "classical": Style((60, 110), None, "bass", ("strings", "piano"), "arpeggio",
                       ("flute", "strings", "piano")),
    "folk": Style((80, 120), "halftime", None, ("pluck",), "arpeggio", ("flute", "lead")),
    "reggae": Style((70, 95), "halftime", "bass", ("organ", "epiano"), "offbeat",
                    ("brass", "lead")),
    "jazz": Style((90, 160), "shuffle", "bass", ("epiano", "piano"), "offbeat",
                  ("brass", "flute")),
    "solo": Style((60, 120), None, None, ("piano", "pluck", "strings"), "arpeggio", ()),
    "percussion": Style((90, 140), "rock", None, (), "block", ()),
}


def midi_to_hz(note: float) -> float:
    """Frequency in Hz of MIDI note number ``note`` (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69) / 12)


@dataclass(frozen=True)
class Key:
    """A tonic (MIDI note) and a scale; degrees count scale steps from the tonic."""

    tonic: int
    scale: tuple[int, ...]

    def note(self, degree: int, octave_shift: int = 0) -> int:
        """MIDI note of scale ``degree`` (any integer), shifted by whole octaves."""
        octave, step = divmod(degree, len(self.scale))
        return self.tonic + 12 * (octave + octave_shift) + self.scale[step]

    def chord(self, root: int, size: int = 3) -> list[int]:
        """MIDI notes of the stacked-thirds chord on scale degree ``root``."""
        return [self.note(root + 2 * i) for i in range(size)]


@functools.lru_cache(maxsize=512)
def _wavetables(timbre_name: str, midi: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright and dark one-period tables of ``timbre_name`` at ``midi``, band-limited."""
    timbre = TIMBRES[timbre_name]
    n_partials = max(1, int(MAX_PARTIAL_HZ / midi_to_hz(midi)))
    k = np.arange(1, n_partials + 1)
    if timbre.partials:
        amps = np.zeros(n_partials)
        m = min(n_partials, len(timbre.partials))
        amps[:m] = timbre.partials[:m]
    else:
        amps = k ** -timbre.slope * (k % 2 == 1 if timbre.odd else 1)
    phase = 2 * np.pi * np.arange(TABLE_SIZE) / TABLE_SIZE
    waves = np.sin(np.outer(phase, k))
    bright = waves @ amps
    dark = waves @ (amps * np.exp(-(k - 1) / 1.5))
    return bright / np.abs(bright).max(), dark / np.abs(dark).max()


def envelope(timbre: Timbre, hold_s: float) -> np.ndarray:
    """Amplitude envelope: attack, decay towards sustain for ``hold_s``, then release."""
    t = np.arange(samples(hold_s + timbre.release)) / SAMPLE_RATE
    attack = np.minimum(t / max(timbre.attack, 1e-3), 1.0)
    decay = timbre.sustain + (1 - timbre.sustain) * np.exp(-np.maximum(t - timbre.attack, 0)
                                                            / timbre.decay)
    release = np.clip(1.0 - (t - hold_s) / max(timbre.release, 1e-3), 0.0, 1.0)
    return attack * decay * release


def tone(timbre_name: str, midi: int, hold_s: float, rng: np.random.Generator) -> np.ndarray:
    """One note of instrument ``timbre_name`` held ``hold_s`` seconds (plus its release)."""
    if timbre_name == "pluck":
        return karplus_strong(midi_to_hz(midi), hold_s + 0.5, rng)
    if timbre_name == "bell":
        return bell(midi_to_hz(midi), hold_s + 1.0)
    timbre = TIMBRES[timbre_name]
    env = envelope(timbre, hold_s)
    t = np.arange(len(env)) / SAMPLE_RATE
    bright, dark = _wavetables(timbre_name, midi)
    wobble = 1 + timbre.vibrato * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    cycles = np.cumsum(midi_to_hz(midi) * wobble) / SAMPLE_RATE
    out = _read_tables(bright, dark, cycles, t, timbre.brightness_decay)
    if timbre.detune:
        out = 0.5 * (out + _read_tables(bright, dark, cycles * (1 + timbre.detune), t,
                                        timbre.brightness_decay))
    return out * env


def _read_tables(bright: np.ndarray, dark: np.ndarray, cycles: np.ndarray, t: np.ndarray,
                 brightness_decay: float) -> np.ndarray:
    index = ((cycles % 1.0) * TABLE_SIZE).astype(np.int64)
    if not brightness_decay:
        return bright[index]
    weight = np.exp(-t / brightness_decay)
    return bright[index] * weight + dark[index] * (1 - weight)


def karplus_strong(freq_hz: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A plucked string: a noise burst circulating in a damped delay line of one period."""
    period = max(2, round(SAMPLE_RATE / freq_hz))
    n = samples(seconds)
    burst = signal.lfilter([0.6], [1, -0.4], rng.uniform(-1, 1, period))
    feedback = np.zeros(period + 2)
    feedback[0] = 1.0
    feedback[period:period + 2] = -0.5 * rng.uniform(0.994, 0.999)
    return fade(signal.lfilter([1.0], feedback, fit_length(burst, n)), 0.0, 0.05)


def bell(freq_hz: float, seconds: float) -> np.ndarray:
    """An inharmonic struck bell or mallet: a few exponentially decaying partials."""
    t = np.arange(samples(seconds)) / SAMPLE_RATE
    out = np.zeros_like(t)
    for ratio, amp, tau in ((1.0, 1.0, 0.9), (2.76, 0.5, 0.4), (5.4, 0.25, 0.2), (8.93, 0.12, 0.1)):
        if freq_hz * ratio < MAX_PARTIAL_HZ:
            out += amp * np.exp(-t / tau) * np.sin(2 * np.pi * freq_hz * ratio * t)
    return fade(out, 0.002, 0.05)


def drum_kit(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One randomised drum kit: kick, snare, closed and open hi-hat samples."""
    t = np.arange(samples(0.4)) / SAMPLE_RATE
    kick_hz = rng.uniform(45, 60) + rng.uniform(60, 120) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(kick_hz) / SAMPLE_RATE) * np.exp(-t / rng.uniform(0.1, 0.3))
    noise = rng.standard_normal(len(t))
    snare = (band(noise, 1000, 6000) * 2 + np.sin(2 * np.pi * rng.uniform(160, 220) * t))
    snare *= np.exp(-t / rng.uniform(0.06, 0.15))
    hat = band(noise, 6500, None) * 3
    return {"k": kick, "s": snare * 0.7, "h": hat * np.exp(-t / 0.03) * 0.5,
            "o": hat * np.exp(-t / 0.15) * 0.4}


def render_music(rng: np.random.Generator, seconds: float, style_name: str | None = None,
                 ) -> np.ndarray:
    """``seconds`` of music in ``style_name`` (a key of `STYLES`, random if ``None``), starting
    somewhere inside the piece; float32 at 16 kHz, RMS -20 dBFS."""
    style = STYLES[style_name or str(rng.choice(list(STYLES)))]
    key = Key(int(rng.integers(45, 58)), SCALES[str(rng.choice(list(SCALES)))])
    beat_s = 60.0 / rng.uniform(*style.tempo)
    n_bars = int(np.ceil(seconds / (4 * beat_s))) + 2
    progression = [int(d) for d in PROGRESSIONS[rng.integers(len(PROGRESSIONS))]]
    roots = [progression[bar % len(progression)] for bar in range(n_bars)]
    total = samples(n_bars * 4 * beat_s + 2.0)
    tracks = []
    if style.drums:
        tracks.append(_drum_track(rng, style.drums, beat_s, n_bars, total))
    if style.bass:
        tracks.append(_bass_track(rng, style.bass, key, roots, beat_s, total))
    if style.chords:
        tracks.append(_chord_track(rng, style, key, roots, beat_s, total))
    if style.melody:
        tracks.append(_melody_track(rng, str(rng.choice(style.melody)), key, beat_s, n_bars,
                                    total))
    mix = sum(set_level(track, -20.0 + rng.uniform(-6, 3)) for track in tracks)
    start = samples(rng.uniform(0, 4 * beat_s))
    return set_level(fit_length(mix[start:], samples(seconds)), -20.0).astype(np.float32)


def _drum_track(rng: np.random.Generator, family: str, beat_s: float, n_bars: int,
                total: int) -> np.ndarray:
    kit = drum_kit(rng)
    patterns = DRUM_PATTERNS[family]
    out = np.zeros(total)
    step_s = beat_s / 4
    for bar in range(n_bars):
        pattern = patterns[rng.integers(len(patterns))] if bar % 4 == 3 else patterns[0]
        for step, hit in enumerate(pattern):
            if hit in kit:
                velocity = rng.uniform(0.7, 1.0)
                add_at(out, kit[hit] * velocity, samples((bar * 16 + step) * step_s))
    return out


def _bass_track(rng: np.random.Generator, instrument: str, key: Key, roots: list[int],
                beat_s: float, total: int) -> np.ndarray:
    out = np.zeros(total)
    beats = (0, 2) if rng.random() < 0.5 else (0, 1, 2, 3)
    for bar, root in enumerate(roots):
        for beat in beats:
            degree = root + (4 if beat == 2 and rng.random() < 0.3 else 0)
            note = tone(instrument, key.note(degree, -1), beat_s * 0.8, rng)
            add_at(out, note, samples((bar * 4 + beat) * beat_s))
    return out


def _chord_track(rng: np.random.Generator, style: Style, key: Key, roots: list[int],
                 beat_s: float, total: int) -> np.ndarray:
    instrument = str(rng.choice(style.chords))
    size = 4 if rng.random() < 0.3 else 3
    out = np.zeros(total)
    for bar, root in enumerate(roots):
        chord = key.chord(root, size)
        for onset_beats, notes, hold_beats in voicing(style.chord_mode, chord):
            for note in notes:
                add_at(out, tone(instrument, note, hold_beats * beat_s, rng),
                       samples((bar * 4 + onset_beats) * beat_s))
    return out


def voicing(mode: str, chord: list[int]) -> list[tuple[float, list[int], float]]:
    """(onset in beats, notes, hold in beats) for one bar of ``chord`` played in ``mode``."""
    if mode == "arpeggio":
        order = chord + [chord[0] + 12] + chord[1:][::-1]
        return [(i * 0.5, [order[i % len(order)]], 0.5) for i in range(8)]
    if mode == "offbeat":
        return [(beat + 0.5, chord, 0.3) for beat in range(4)]
    return [(0.0, chord, 3.8)]


def _melody_track(rng: np.random.Generator, instrument: str, key: Key, beat_s: float,
                  n_bars: int, total: int) -> np.ndarray:
    tune = motif(rng)
    out = np.zeros(total)
    for phrase_start in range(0, n_bars, 2):
        transpose = int(rng.choice([0, 0, 2, -2, 4]))
        for onset, degree, hold in tune:
            if rng.random() < 0.9:
                note = key.note(degree + transpose, 1)
                add_at(out, tone(instrument, note, hold * beat_s, rng),
                       samples((phrase_start * 4 + onset) * beat_s))
    return out


def motif(rng: np.random.Generator) -> list[tuple[float, int, float]]:
    """A two-bar tune: (onset in beats, scale degree, hold in beats), a bounded random walk."""
    notes, onset, degree = [], 0.0, int(rng.integers(0, 5))
    while onset < 8:
        length = float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.random() > 0.15:
            notes.append((onset, degree, length * 0.9))
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), -3, 9))
        onset += length
    return notes


def sparse_music(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Hard-case music: a few isolated notes or a slow chord with long gaps; -20 dBFS."""
    key = Key(int(rng.integers(50, 65)), SCALES[str(rng.choice(list(SCALES)))])
    instrument = str(rng.choice(["pluck", "bell", "piano", "pad", "strings"]))
    n = samples(seconds)
    out = np.zeros(n + samples(2.0))
    onset = rng.uniform(0, 0.5)
    while onset < seconds:
        notes = key.chord(int(rng.integers(0, 7))) if rng.random() < 0.3 else [
            key.note(int(rng.integers(0, 8)))]
        for note in notes:
            add_at(out, tone(instrument, note, rng.uniform(0.4, 2.0), rng), samples(onset))
        onset += rng.uniform(0.6, 2.5)
    return set_level(fit_length(out, n), -20.0).astype(np.float32)

