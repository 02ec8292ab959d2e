"""Singing for the synthetic corpus: a spoken line forced onto a melody, WORLD-style.

A text-to-speech voice speaks a lyric line; the WORLD vocoder (``pyworld``) analyses it into a
pitch track, a spectral envelope and an aperiodicity per 5 ms frame (cached by content: the
analysis is the slow part). The line is cut into syllable nuclei (periodic voiced runs split at
level dips); each nucleus is stretched to its note's length (its vowel core held) while the
consonants keep their speed, and the pitch track is replaced by the melody: scale notes joined
by legato glides, with onset-delayed vibrato and slow drift, in the Carnatic style melismas and
oscillating ornaments (gamakas), in chant a reciting tone. The frames are resynthesised by a
numpy source-filter synthesiser (a pulse train and noise through the minimum-phase envelope,
the envelope scaled in frequency for the vocal tract length): about 60x realtime whatever the
pitch and however many choir voices share it, where WORLD's own synthesis slows with pitch
(70x at C4, 35x at C5) and runs once per voice. Phrases are separated by rests with breaths;
a choir is several detuned voices of that vocal tract in unison, octaves or harmony, slightly
apart in time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from scipy import signal

from musicdet.fsutil import atomic_open
from musicdet.synth import sources
from musicdet.synth.dsp import SAMPLE_RATE, add_at, band, db_to_gain, fade, fit_length, samples
from musicdet.synth.music import SCALES, Key, midi_to_hz
from musicdet.synth.sources.gm import master, reverb
from musicdet.synth.speech import GRAMMARS

FORMAT = 2  # of the cached analyses; bump to re-analyse
FRAME_MS = 5.0
FRAME_S = FRAME_MS / 1000
FFT_SIZE = 1024  # WORLD's spectral envelope size at 16 kHz (bins: FFT_SIZE // 2 + 1)
WINDOW = 480  # samples (30 ms) per synthesis frame
SP_POINTS, AP_POINTS = 96, 24  # mel-spaced points the envelope and aperiodicity are kept at
LOW_AP_POINTS = 5  # the aperiodicity points below 500 Hz
MEMORY_ANALYSES = 128  # analyses kept in memory (about 50 kB per second of speech)
MAX_GAP_FRAMES = 24  # consonants and pauses between nuclei are kept up to 120 ms
# Singer ranges as MIDI notes (lowest, highest); "low" voices first.
RANGES = {"bass": (40, 60), "baritone": (43, 64), "tenor": (48, 67), "alto": (53, 72),
          "mezzo": (57, 76), "soprano": (60, 81)}
LOW_RANGES, HIGH_RANGES = ("bass", "baritone", "tenor"), ("alto", "mezzo", "soprano")
# Melakarta ragas (semitones above the tonic) for the Carnatic style.
RAGAS = {"mayamalavagowla": (0, 1, 4, 5, 7, 8, 11), "kalyani": (0, 2, 4, 6, 7, 9, 11),
         "hanumatodi": (0, 1, 3, 5, 7, 8, 10), "kharaharapriya": (0, 2, 3, 5, 7, 9, 10),
         "shankarabharanam": (0, 2, 4, 5, 7, 9, 11)}
VOCALISES = {
    "song": ("la", "na", "da", "oh", "ah", "lu", "ma", "ya", "hey", "doo", "mm"),
    "carnatic": ("sa", "ri", "ga", "ma", "pa", "da", "ni", "aa", "na", "ta"),
    "chant": ("al", "le", "lu", "ia", "a", "men", "ky", "ri", "e", "e", "lei", "son"),
}

Speaker = Callable[[str], np.ndarray]  # text -> speech, float at 16 kHz
_ANALYSES: dict[tuple[str, str], Analysis] = {}  # (singer identity, text), oldest first


@dataclass(frozen=True)
class Style:
    """How a style sings: tempo (BPM), note lengths and phrase-final lengths (beats), shares of
    melismatic syllables and ornamented notes, vibrato extent (cents), choir probability,
    scales and lyric share (the rest is vocalise)."""

    tempo: tuple[float, float]
    beats: tuple[float, ...]
    final_beats: tuple[float, float]
    melisma: float
    gamaka: float
    vibrato_cents: tuple[float, float]
    choir: float
    scales: tuple[tuple[int, ...], ...]
    lyrics: float


STYLES = {
    "song": Style((60, 130), (0.5, 1, 1, 1, 1.5, 2), (2, 4), 0.08, 0.0, (20, 80), 0.25,
                  tuple(SCALES.values()), 0.6),
    "carnatic": Style((50, 90), (0.5, 1, 1, 2), (2, 4), 0.4, 0.4, (10, 40), 0.0,
                      tuple(RAGAS.values()), 0.3),
    "chant": Style((100, 160), (0.5, 0.5, 0.5, 1), (3, 6), 0.05, 0.0, (0, 20), 0.4,
                   (SCALES["dorian"], SCALES["major"], SCALES["minor"]), 0.7),
}
STYLE_WEIGHTS = {"song": 0.6, "carnatic": 0.2, "chant": 0.2}


@dataclass(frozen=True)
class Singer:
    """A voice to sing with: its speaker, identity (the cache key: engine, versions, settings,
    voice), language of its lyrics, range (a key of `RANGES`; None: chosen from its speaking
    pitch) and formant ratio (vocal tract scaling)."""

    speak: Speaker
    identity: str
    language: str
    range_name: str | None = None
    formant: float = 1.0


@dataclass(frozen=True)
class Analysis:
    """WORLD parameters per 5 ms frame: f0 (Hz, 0 = unvoiced), log spectral envelope and
    aperiodicity at mel-spaced points, and level (dB)."""

    f0: np.ndarray
    log_sp: np.ndarray
    ap: np.ndarray
    level_db: np.ndarray


@dataclass(frozen=True)
class SungNote:
    """One planned note of the lead voice: onset and offset (s), MIDI pitch, ornamented."""

    onset: float
    offset: float
    midi: float
    ornamented: bool


@functools.cache
def world_available() -> bool:
    """Whether ``pyworld`` imports (it needs ``pkg_resources``, i.e. setuptools < 81)."""
    try:
        _pyworld()
    except ImportError:
        return False
    return True


def world_version() -> str:
    """pyworld's version, or "unavailable"."""
    return importlib.metadata.version("pyworld") if world_available() else "unavailable"


def _pyworld() -> ModuleType:
    with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def _mel_grid(n: int) -> np.ndarray:
    """``n`` frequencies (Hz) from 0 to the Nyquist frequency, equally spaced in mel."""
    top = 2595 * np.log10(1 + SAMPLE_RATE / 2 / 700)
    return 700 * (10 ** (np.linspace(0, top, n) / 2595) - 1)


def _lerp(matrix: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """``matrix`` read at fractional ``positions`` along ``axis`` (linear interpolation)."""
    last = matrix.shape[axis] - 1
    low = np.clip(np.floor(positions).astype(np.int64), 0, max(last - 1, 0))
    weight = np.clip(positions - low, 0.0, 1.0)
    high = np.minimum(low + 1, last)
    shape = [1, 1]
    shape[axis] = len(positions)
    weight = weight.reshape(shape)
    return (np.take(matrix, low, axis) * (1 - weight)
            + np.take(matrix, high, axis) * weight)


def analyse(audio: np.ndarray) -> Analysis:
    """WORLD analysis of 16 kHz speech (dio + stonemask, cheaptrick, d4c), kept compact:
    envelope and aperiodicity at mel-spaced points, float16."""
    pw = _pyworld()
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pw.dio(x, SAMPLE_RATE, f0_floor=50.0, f0_ceil=500.0, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, times, SAMPLE_RATE)
    sp = pw.cheaptrick(x, f0, times, SAMPLE_RATE, fft_size=FFT_SIZE)
    # Aperiodicity every 10 ms (the costly part, twice as fast), read at the 5 ms frames.
    ap = pw.d4c(x, f0[::2].copy(), times[::2].copy(), SAMPLE_RATE, fft_size=FFT_SIZE)
    ap = _lerp(ap, np.arange(len(f0)) / 2, 0)
    bin_hz = SAMPLE_RATE / FFT_SIZE
    log_sp = _lerp(np.log(np.maximum(sp, 1e-16)), _mel_grid(SP_POINTS) / bin_hz, 1)
    ap_points = _lerp(ap, _mel_grid(AP_POINTS) / bin_hz, 1)
    hop = samples(FRAME_S)
    padded = np.pad(x, (hop, hop + len(f0) * hop))
    frames = padded[: len(f0) * hop].reshape(len(f0), hop)
    level_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return Analysis(f0.astype(np.float32), log_sp.astype(np.float16),
                    ap_points.astype(np.float16), level_db.astype(np.float32))


def analysis(singer: Singer, text: str) -> Analysis:
    """The analysis of ``text`` spoken by ``singer``: from memory, the cache folder
    (content-keyed by voice, text and versions), or spoken and analysed afresh."""
    if (singer.identity, text) not in _ANALYSES:
        if len(_ANALYSES) >= MEMORY_ANALYSES:
            _ANALYSES.pop(next(iter(_ANALYSES)))
        _ANALYSES[singer.identity, text] = _stored_analysis(singer, text)
    return _ANALYSES[singer.identity, text]


def _stored_analysis(singer: Singer, text: str) -> Analysis:
    key = f"{singer.identity}|{text}|{world_version()}|{FORMAT}"
    key = hashlib.sha256(key.encode()).hexdigest()
    cache = sources.cache_dir()
    path = cache / "singing" / f"{key[:24]}.npz" if cache else None
    if path and path.is_file():
        with np.load(path) as stored:
            return Analysis(**{name: stored[name] for name in Analysis.__dataclass_fields__})
    result = analyse(singer.speak(text))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **result.__dict__)
        with atomic_open(path, "wb") as handle:
            handle.write(buffer.getvalue())
    return result


def nuclei(found: Analysis) -> list[tuple[int, int]]:
    """Syllable nuclei as (first, end) frames: periodic voiced runs (aperiodicity below 0.5
    under 500 Hz) of 30 ms or more, split where the level dips by 3 dB or more."""
    periodic = (found.f0 > 0) & (found.ap[:, :LOW_AP_POINTS].astype(np.float32).mean(1) < 0.5)
    voiced = np.concatenate([[0], periodic.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(voiced))
    level = np.convolve(found.level_db, np.ones(5) / 5, mode="same")
    out = []
    for first, end in zip(edges[::2], edges[1::2], strict=True):
        if end - first < 6:
            continue
        dips, _ = signal.find_peaks(-level[first:end], prominence=3.0, distance=12)
        cuts = [first, *(first + d for d in dips if 6 <= d <= end - first - 6), end]
        out += list(zip(cuts[:-1], cuts[1:], strict=True))
    return out


@dataclass(frozen=True)
class Phrase:
    """A line's melody: per syllable, its notes as (scale degree, beats, ornamented)."""

    syllables: list[list[tuple[int, float, bool]]]


def compose(rng: np.random.Generator, style: Style, key: Key, n_syllables: int,
            lowest: int, highest: int) -> Phrase:
    """A melody of ``n_syllables`` in ``key`` kept between MIDI notes ``lowest``-``highest``:
    a bounded random walk (chant: a reciting tone with an inflection and a cadence), its last
    syllable held."""
    degrees = [d for d in range(-14, 22) if lowest <= key.note(d) <= highest]
    if style is STYLES["chant"]:
        tone = int(rng.choice(degrees[len(degrees) // 3: 2 * len(degrees) // 3]))
        line = [tone] * n_syllables
        line[0] = tone - int(rng.integers(0, 2))
        line[-1] = tone - int(rng.integers(1, 3)) if n_syllables > 2 else tone
    else:
        line, degree = [], int(rng.choice(degrees[: len(degrees) // 2 + 1]))
        for _ in range(n_syllables):
            line.append(degree)
            step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]))
            degree = int(np.clip(degree + step, degrees[0], degrees[-1]))
    syllables = []
    for index, degree in enumerate(line):
        final = index == n_syllables - 1
        beats = rng.uniform(*style.final_beats) if final else float(rng.choice(style.beats))
        count = int(rng.integers(2, 5)) if rng.random() < style.melisma else 1
        walk = np.clip(degree + np.concatenate([[0], np.cumsum(rng.choice([-1, 1], count - 1))]),
                       degrees[0], degrees[-1])
        syllables.append([(int(d), beats / count, bool(rng.random() < style.gamaka))
                          for d in walk])
    return Phrase(syllables)


@dataclass(frozen=True)
class Timeline:
    """A sung line's frames: source frame position and note index (a consonant: the next
    note's) per output frame, and each note's (first, end) output frames."""

    positions: np.ndarray
    note_of_frame: np.ndarray
    note_frames: list[tuple[int, int]]


def lay_out(units: list[tuple[int, int]], lengths_s: list[list[float]], found: Analysis
            ) -> Timeline:
    """Consonants at their own speed (up to 120 ms), each nucleus stretched (`_stretch`) to
    its notes' length (s) less the next consonant, so that notes start on their beats."""
    loud = np.flatnonzero(found.level_db > found.level_db.max() - 45.0)
    ends_before = [min(int(loud[0]), units[0][0]), *(end for _, end in units[:-1])]
    gaps = [min(first - end_before, MAX_GAP_FRAMES)
            for end_before, (first, _) in zip(ends_before, units, strict=True)]
    positions: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    note_frames: list[tuple[int, int]] = []
    length = 0
    for index, ((first, end), notes_s) in enumerate(zip(units, lengths_s, strict=True)):
        positions.append(np.arange(first - gaps[index], first, dtype=np.float64))
        owner.append(np.full(gaps[index], len(note_frames)))
        length += gaps[index]
        next_gap = gaps[index + 1] if index + 1 < len(units) else 0
        frames = max(round(sum(notes_s) / FRAME_S) - next_gap, (end - first + 1) // 2)
        positions.append(_stretch(first, end, frames, found.level_db))
        split = np.round(np.cumsum([0, *notes_s]) / sum(notes_s) * frames).astype(int)
        for a, b in zip(split[:-1], split[1:], strict=True):
            owner.append(np.full(b - a, len(note_frames)))
            note_frames.append((length + a, length + b))
        length += frames
    tail = int(np.clip(loud[-1] + 1 - units[-1][1], 0, MAX_GAP_FRAMES))
    positions.append(np.arange(units[-1][1], units[-1][1] + tail, dtype=np.float64))
    owner.append(np.full(tail, len(note_frames) - 1))
    return Timeline(np.concatenate(positions), np.concatenate(owner), note_frames)


def truncate(timeline: Timeline, frames: int) -> Timeline:
    """``timeline``'s first ``frames`` frames and the notes that start in them."""
    notes = [(first, min(end, frames)) for first, end in timeline.note_frames if first < frames]
    owners = np.minimum(timeline.note_of_frame[:frames], len(notes) - 1)
    return Timeline(timeline.positions[:frames], owners, notes)


def _stretch(first: int, end: int, frames: int, level_db: np.ndarray) -> np.ndarray:
    """Source positions for ``frames`` output frames of nucleus [first, end): the frames
    around its loudest one (the vowel's core, 25 ms) slowed down to fill the note, the rest
    at its own speed; a note shorter than the nucleus squeezes it evenly."""
    if frames <= end - first:
        return np.linspace(first, end - 1, frames)
    peak = first + int(np.argmax(level_db[first:end]))
    core_first, core_end = max(first, peak - 2), min(end, peak + 3)
    held = frames - (end - first) + (core_end - core_first)
    return np.concatenate([np.arange(first, core_first),
                           np.linspace(core_first, core_end - 1, held),
                           np.arange(core_end, end)]).astype(np.float64)


def contour(rng: np.random.Generator, timeline: Timeline, midis: np.ndarray,
            ornaments: np.ndarray, vibrato_cents: float, glide_s: float) -> np.ndarray:
    """Pitch per output frame (MIDI, fractional): the notes ``midis`` joined by raised-cosine
    glides (``glide_s`` long), vibrato (5-7 Hz, peak deviation ``vibrato_cents``, after a
    0.15-0.4 s delay) on plain notes,
    oscillating gamakas on ``ornaments`` and slow drift."""
    target = midis[timeline.note_of_frame].astype(np.float64)
    width = max(3, round(glide_s / FRAME_S) | 1)
    kernel = np.hanning(width + 2)[1:-1]
    pitch = np.convolve(np.pad(target, width // 2, mode="edge"), kernel / kernel.sum(), "valid")
    rate = rng.uniform(5.0, 7.0)
    for index, (first, end) in enumerate(timeline.note_frames):
        t = np.arange(end - first) * FRAME_S
        if ornaments[index]:  # kampita: swinging up towards the next step and back
            swing = rng.uniform(0.8, 2.0) * (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(4, 7) * t))
            pitch[first:end] += swing * np.minimum(t / 0.05, 1.0)
            continue
        delay = rng.uniform(0.15, 0.4)
        onset = np.clip((t - delay) / 0.25, 0.0, 1.0)
        wobble = np.sin(2 * np.pi * rate * rng.uniform(0.95, 1.05) * t + rng.uniform(0, 6.3))
        pitch[first:end] += vibrato_cents / 100 * onset * wobble
    drift = signal.lfilter([0.02], [1, -0.98], rng.standard_normal(len(pitch)))
    return pitch + 0.08 * drift / max(np.abs(drift).max(), 1e-9)


def render(rng: np.random.Generator, found: Analysis, timeline: Timeline,
           pitches: list[np.ndarray], delays: list[int], formant: float, gain_db: np.ndarray
           ) -> np.ndarray:
    """The laid-out frames sung by one voice per contour in ``pitches`` (MIDI per frame;
    unvoiced where the source was), each late by its ``delays`` (samples): a unison of one
    vocal tract, its envelope scaled in frequency by ``formant``, with a gain (dB) per frame."""
    nearest = np.clip(np.round(timeline.positions).astype(np.int64), 0, len(found.f0) - 1)
    voiced = found.f0[nearest] > 0
    n = len(nearest) * samples(FRAME_S)
    pulses = np.zeros(n)
    for pitch, delay in zip(pitches, delays, strict=True):
        pulses[delay:] += _pulses(np.where(voiced, midi_to_hz(0) * 2 ** (pitch / 12), 0.0),
                                  n)[: n - delay]
    bins_hz = np.arange(FFT_SIZE // 2 + 1) * SAMPLE_RATE / FFT_SIZE
    sp_at = np.interp(bins_hz / formant, _mel_grid(SP_POINTS), np.arange(SP_POINTS))
    ap_at = np.interp(bins_hz, _mel_grid(AP_POINTS), np.arange(AP_POINTS))
    log_sp = _lerp(_lerp(found.log_sp.astype(np.float32), timeline.positions, 0), sp_at, 1)
    ap = _lerp(_lerp(found.ap.astype(np.float32), timeline.positions, 0), ap_at, 1)
    noise = rng.standard_normal(n) * np.sqrt(len(pitches))
    return synthesize(pulses, noise, log_sp + gain_db[:, None] * np.float32(np.log(10) / 10),
                      np.clip(ap, 0.001, 0.999))


def synthesize(pulses: np.ndarray, noise: np.ndarray, log_sp: np.ndarray, ap: np.ndarray
               ) -> np.ndarray:
    """Source-filter synthesis per 5 ms frame: ``pulses`` and ``noise`` (same length, one hop
    per row of ``log_sp``) weighted by 1 - ``ap`` and ``ap``, through the minimum-phase filter
    of the power envelope exp(``log_sp``) (`FFT_SIZE` bins), overlap-added in 30 ms frames."""
    hop, n = samples(FRAME_S), len(pulses)
    window = np.hanning(WINDOW + 1)[:-1].astype(np.float32)  # periodic: sums to 3 at 5 ms
    out = np.zeros(n + FFT_SIZE)
    spectrum = np.zeros((len(log_sp), FFT_SIZE // 2 + 1), np.complex64)
    for source, weight in zip((pulses, noise), (1 - ap, ap), strict=True):
        padded = np.pad(source.astype(np.float32), (WINDOW // 2, WINDOW))
        frames = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::hop][: len(log_sp)]
        spectrum += np.fft.rfft(frames * window, FFT_SIZE) * np.sqrt(weight)
    blocks = np.fft.irfft(spectrum * _minimum_phase(log_sp / 2), FFT_SIZE)
    for index, block in enumerate(blocks):
        out[index * hop: index * hop + FFT_SIZE] += block
    return out[WINDOW // 2: WINDOW // 2 + n] / 3.0


def _pulses(f0: np.ndarray, n: int) -> np.ndarray:
    """A pulse train of ``n`` samples following ``f0`` (Hz per 5 ms frame; none where 0), each
    pulse split between two samples at its exact time, scaled to unit power."""
    hz = np.repeat(f0, samples(FRAME_S))[:n]
    cycles = np.cumsum(hz / SAMPLE_RATE)
    at = np.flatnonzero(np.diff(np.floor(cycles), prepend=0.0) > 0)
    late = (cycles[at] % 1.0) / np.maximum(hz[at] / SAMPLE_RATE, 1e-9)  # samples past the pulse
    height = np.sqrt(SAMPLE_RATE / np.maximum(hz[at], 1.0))
    out = np.zeros(n + 1)
    np.add.at(out, np.maximum(at - 1, 0), height * np.clip(late, 0, 1))
    np.add.at(out, at, height * (1 - np.clip(late, 0, 1)))
    return out[:n]


def _minimum_phase(log_magnitude: np.ndarray) -> np.ndarray:
    """Minimum-phase spectra (rows) with the given natural-log magnitudes (real cepstrum)."""
    cepstrum = np.fft.irfft(log_magnitude, FFT_SIZE)
    fold = np.zeros(FFT_SIZE, np.float32)
    fold[0], fold[1: FFT_SIZE // 2], fold[FFT_SIZE // 2] = 1.0, 2.0, 1.0
    return np.exp(np.fft.rfft(cepstrum * fold, FFT_SIZE))


def lyric(rng: np.random.Generator, style_name: str, language: str) -> str:
    """A line to sing: a short sentence in ``language`` (subject, verb, object) or a vocalise
    of the style (a cell of one or two syllables repeated to 4-8 syllables): a finite set, so
    that cached analyses are met again."""
    if rng.random() < STYLES[style_name].lyrics:
        _, subjects, verbs, objects, _ = GRAMMARS[language]
        return " ".join(str(rng.choice(part)) for part in (subjects, verbs, objects))
    cell = list(rng.choice(VOCALISES[style_name], int(rng.integers(1, 3))))
    return " ".join((cell * 8)[: int(rng.integers(4, 9))])


def sing_line(rng: np.random.Generator, singer: Singer, style_name: str, key: Key,
              range_name: str, voices: int, max_seconds: float
              ) -> tuple[np.ndarray, list[SungNote]]:
    """One phrase (its first ``max_seconds``): a lyric line sung by ``singer`` (``voices``
    > 1: a choir) and the lead voice's notes; audio at raw level, float64 16 kHz."""
    style = STYLES[style_name]
    found = analysis(singer, lyric(rng, style_name, singer.language))
    units = nuclei(found)
    if not units:
        return np.zeros(0), []
    lowest, highest = RANGES[range_name]
    phrase = compose(rng, style, key, len(units), lowest, highest)
    beat_s = 60.0 / rng.uniform(*style.tempo)
    timeline = lay_out(units, [[beats * beat_s for _, beats, _ in notes]
                               for notes in phrase.syllables], found)
    timeline = truncate(timeline, round(max_seconds / FRAME_S) + 1)
    kept = len(timeline.note_frames)
    if not kept:
        return np.zeros(0), []
    degrees = np.array([d for notes in phrase.syllables for d, _, _ in notes])[:kept]
    ornaments = np.array([o for notes in phrase.syllables for _, _, o in notes])[:kept]
    gain_db = _dynamics(rng, timeline)
    formant = singer.formant * _formant_for(found, key.note(int(np.median(degrees))))
    pitches, delays = [], []
    for voice in range(voices):
        shift = 0 if voice == 0 else int(rng.choice([0, 0, -2, 2, -4, -7, 7]))
        midis = np.array([key.note(int(d) + shift) for d in degrees], float)
        detune = 0.0 if voice == 0 else rng.normal(0, 0.12)
        pitches.append(contour(rng, timeline, midis + detune, ornaments,
                               rng.uniform(*style.vibrato_cents), rng.uniform(0.04, 0.12)))
        delays.append(samples(rng.uniform(0, 0.03)) if voice else 0)
    out = render(rng, found, timeline, pitches, delays, formant, gain_db)
    notes = [SungNote(a * FRAME_S, b * FRAME_S, float(key.note(int(d))), bool(o))
             for (a, b), d, o in zip(timeline.note_frames, degrees, ornaments, strict=True)]
    return out, notes


def _dynamics(rng: np.random.Generator, timeline: Timeline) -> np.ndarray:
    """Gain per frame (dB): each note swells then eases off by up to 3 dB."""
    gain = np.zeros(len(timeline.positions))
    for first, end in timeline.note_frames:
        swell = np.sin(np.pi * (np.arange(end - first) + 0.5) / max(end - first, 1))
        gain[first:end] = rng.uniform(0, 3) * swell - 1.5
    return gain


def _formant_for(found: Analysis, midi: int) -> float:
    """A formant ratio following the pitch change from speaking to singing (a fifth of it)."""
    voiced = found.f0[found.f0 > 0]
    speaking_hz = float(np.median(voiced)) if len(voiced) else 150.0
    return float(np.clip((midi_to_hz(midi) / speaking_hz) ** 0.2, 0.85, 1.2))


def breath(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """An inhalation: band-passed noise swelling and fading over ``seconds``."""
    noise = band(rng.standard_normal(samples(seconds)), rng.uniform(400, 900),
                 rng.uniform(2500, 5000), order=2)
    return fade(noise * np.hanning(len(noise)), 0.02, 0.02)


def sing(rng: np.random.Generator, seconds: float, singers: list[Singer],
         style_name: str | None = None, choir: bool | None = None
         ) -> tuple[np.ndarray, list[SungNote]]:
    """``seconds`` of singing by one of ``singers`` in a style (drawn by `STYLE_WEIGHTS` when
    None): phrases with rests and breaths, in a room, mastered to -20 dBFS; float32 16 kHz,
    and the lead voice's notes. ``choir`` None: by the style's probability."""
    n = samples(seconds)
    if n == 0:
        return np.zeros(0, np.float32), []
    names = list(STYLE_WEIGHTS)
    weights = np.array(list(STYLE_WEIGHTS.values()))
    style_name = style_name or names[rng.choice(len(names), p=weights / weights.sum())]
    style = STYLES[style_name]
    singer = singers[rng.integers(len(singers))]
    range_name = singer.range_name or _range_for(rng, singer)
    lowest, highest = RANGES[range_name]
    scale = style.scales[rng.integers(len(style.scales))]
    key = Key(int(rng.integers(lowest + 2, lowest + 8)), scale)
    voices = int(rng.integers(3, 6)) if (rng.random() < style.choir if choir is None
                                         else choir) else 1
    out = np.zeros(n + samples(1.0))
    notes: list[SungNote] = []
    at = samples(rng.uniform(0.0, 0.4))
    while at < n:
        line, line_notes = sing_line(rng, singer, style_name, key, range_name, voices,
                                     (n - at) / SAMPLE_RATE)
        peak = np.abs(line).max() if len(line) else 0.0
        if peak > 0:
            line = line / peak
        add_at(out, line, at)
        notes += [SungNote(note.onset + at / SAMPLE_RATE, note.offset + at / SAMPLE_RATE,
                           note.midi, note.ornamented) for note in line_notes]
        at += len(line) + samples(rng.uniform(0.25, 1.2))
        if rng.random() < 0.6:
            gasp = breath(rng, rng.uniform(0.2, 0.4)) * db_to_gain(rng.uniform(-34, -22))
            add_at(out, gasp, at - len(gasp) - samples(0.05))
    audio = fit_length(out, n)
    if style_name == "chant":  # a church or cloister
        audio = reverb(rng, audio, rt60_s=rng.uniform(1.5, 3.5), wet=rng.uniform(0.3, 0.5))
    return master(rng, audio), [note for note in notes if note.onset < seconds]


def _range_for(rng: np.random.Generator, singer: Singer) -> str:
    """A range that suits the singer's speaking pitch (low or high voices)."""
    found = analysis(singer, "la la la")
    voiced = found.f0[found.f0 > 0]
    high = len(voiced) > 0 and float(np.median(voiced)) > 165.0
    choices = HIGH_RANGES if high else LOW_RANGES
    return str(choices[rng.integers(len(choices))])
