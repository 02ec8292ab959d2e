"""Non-music sounds: ambiences (applause, crowd, street, room tone) and tonal non-music hard
cases (sirens, telephone tones, beeps, mains hum, appliance whines). Everything is float32 at
16 kHz, -20 dBFS."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from musicdet.synth.dsp import SAMPLE_RATE, add_at, band, fade, pink_noise, samples, set_level
from musicdet.synth.sources.textured import glide_tone, on_off, wander
from musicdet.synth.speech import speech

Sound = Callable[[np.random.Generator, float], np.ndarray]


def _time(seconds: float) -> np.ndarray:
    return np.arange(samples(seconds)) / SAMPLE_RATE


def _finish(x: np.ndarray) -> np.ndarray:
    return set_level(fade(x, 0.01, 0.01), -20.0).astype(np.float32)


def applause(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Many hands clapping at random: short band-passed noise bursts, swelling and fading."""
    n = samples(seconds)
    clap = band(rng.standard_normal(samples(0.012)), 800, 5000) * np.hanning(samples(0.012))
    rate = rng.uniform(80, 400)  # claps per second
    onsets = rng.integers(0, n, int(rate * seconds))
    impulses = np.zeros(n)
    np.add.at(impulses, onsets, rng.uniform(0.3, 1.0, len(onsets)))
    out = np.convolve(impulses, clap)[:n]
    swell = np.interp(np.arange(n), [0, n * 0.2, n * 0.7, n], [0.3, 1.0, 1.0, 0.4])
    return _finish(out * swell)


def crowd(rng: np.random.Generator, seconds: float, engine: str = "espeak") -> np.ndarray:
    """Crowd murmur: several far-away talkers over pink noise."""
    talkers = sum(band(speech(rng, seconds, engine), 200, 3500) * rng.uniform(0.3, 1.0)
                  for _ in range(int(rng.integers(3, 7))))
    return _finish(talkers + 0.3 * band(pink_noise(rng, samples(seconds)), 100, 4000))


def street(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Traffic: low rumble, cars passing by, now and then a horn (tonal, not music)."""
    n = samples(seconds)
    out = band(pink_noise(rng, n), 30, 800)
    for _ in range(int(rng.integers(1, 2 + seconds // 3))):
        width = samples(rng.uniform(1.0, 4.0))
        car = band(rng.standard_normal(width), 80, rng.uniform(1500, 4000)) * np.hanning(width)
        add_at(out, 2.0 * car, int(rng.integers(0, n)))
    if rng.random() < 0.4:
        add_at(out, 2.0 * _horn(rng, rng.uniform(0.3, 1.2)), int(rng.integers(0, n)))
    return _finish(out)


def _horn(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = _time(seconds)
    f0 = rng.uniform(300, 500)
    wave = sum(np.sign(np.sin(2 * np.pi * f0 * ratio * t)) for ratio in (1.0, 1.26))
    return fade(band(wave, None, 3000), 0.02, 0.05)


def room_tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Near-silence: a soft band-limited hiss (its level is set by the programme)."""
    return _finish(band(pink_noise(rng, samples(seconds)), 60, 6000))


def siren(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """An emergency siren: wailing or two-tone (hi-lo), a few harmonics."""
    t = _time(seconds)
    low, high = sorted(rng.uniform(450, 1500, 2))
    if rng.random() < 0.5:
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(1.5, 5.0))
    else:
        sweep = (np.floor(t / rng.uniform(0.4, 0.8)) % 2).astype(float)
    phase = 2 * np.pi * np.cumsum(low + (high - low) * sweep) / SAMPLE_RATE
    return _finish(np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase))


def phone_tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Telephone signalling: dial, ringback or busy tone with its cadence, or DTMF digits."""
    t = _time(seconds)
    if rng.random() < 0.35:
        return _finish(_dtmf(rng, seconds))
    freqs = [(350.0, 440.0), (425.0,), (440.0, 480.0), (480.0, 620.0), (400.0, 450.0)]
    tone = sum(np.sin(2 * np.pi * f * t) for f in freqs[rng.integers(len(freqs))])
    on_s, off_s = [(1e9, 0.0), (0.5, 0.5), (1.0, 3.0), (0.4, 0.2)][rng.integers(4)]
    gate = (t % (on_s + off_s)) < on_s
    return _finish(tone * gate)


def _dtmf(rng: np.random.Generator, seconds: float) -> np.ndarray:
    rows, columns = (697, 770, 852, 941), (1209, 1336, 1477)
    out = np.zeros(samples(seconds))
    onset = rng.uniform(0, 0.3)
    while onset < seconds:
        t = _time(rng.uniform(0.08, 0.2))
        digit = np.sin(2 * np.pi * rng.choice(rows) * t) + np.sin(2 * np.pi * rng.choice(columns)
                                                                  * t)
        add_at(out, fade(digit, 0.005, 0.005), samples(onset))
        onset += len(t) / SAMPLE_RATE + rng.uniform(0.05, 0.4)
    return out


def beeps(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Repeated beeps: test tone, censor bleep, alarm clock, truck reversing, pips."""
    t = _time(seconds)
    freq = float(rng.choice([440.0, 800.0, 1000.0, 1200.0, 2000.0, 2500.0]))
    period = rng.uniform(0.2, 1.5)
    duty = rng.uniform(0.1, 0.9) if rng.random() < 0.8 else 1.0
    gate = (t % period) < duty * period
    shape = np.sin(2 * np.pi * freq * t) if rng.random() < 0.7 else np.sign(
        np.sin(2 * np.pi * freq * t))
    return _finish(band(shape * gate, None, 6000))


def hum(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Mains hum with harmonics (50 or 60 Hz) or a steady fan/engine drone."""
    t = _time(seconds)
    base = float(rng.choice([50.0, 60.0, rng.uniform(80, 240)]))
    out = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k**0.7
              for k in range(1, 8))
    return _finish(out + 0.05 * pink_noise(rng, len(t)))


def machine_line(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """An appliance or power tool (drill, blender, vacuum cleaner, hair dryer) run in bursts:
    a whine of 150-1200 Hz with harmonics that spins up and down with the switch, drifts and
    dips under load (1-4 semitones), over its motor noise."""
    n = samples(seconds)
    gate = on_off(rng, seconds, (0.8, 6.0), (0.3, 3.0), rng.uniform(0.2, 1.5))
    drift = wander(rng, seconds, n, -1.0, 1.0, rng.uniform(0.5, 3.0)) * rng.uniform(1.0, 4.0)
    freq = rng.uniform(150, 1200) * (0.3 + 0.7 * gate) * 2 ** (drift / 12)
    whine = glide_tone(rng, freq, int(rng.integers(3, 9)))
    motor = band(pink_noise(rng, n), 200, 6000) * rng.uniform(0.1, 0.5)
    return _finish((whine + motor) * gate)


AMBIENCES: dict[str, Sound] = {"applause": applause, "street": street, "room": room_tone}


def ambience(rng: np.random.Generator, seconds: float, engine: str = "espeak") -> np.ndarray:
    """Applause, street noise or a crowd murmur (talkers spoken by ``engine``), -20 dBFS."""
    name = str(rng.choice(["applause", "street", "crowd"]))
    if name == "crowd":
        return crowd(rng, seconds, engine)
    return AMBIENCES[name](rng, seconds)
TONAL: dict[str, Sound] = {"siren": siren, "phone": phone_tone, "beeps": beeps, "hum": hum,
                          "machine": machine_line}
