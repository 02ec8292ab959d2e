"""Textured real-world ambiences made procedurally: uneven, layered and never stationary.

Each draw layers two or three of: kitchen clatter (dishes, cutlery, pots), running water,
rain, wind gusts, machines (motors, fans, exercise bike, printer), a cafe (distant espeak
babble and clatter), traffic, footsteps, doors, paper rustle, typing, birds and animals, and
vinyl crackle, most often led by a continuous bed (water, rain, wind, a machine, a cafe,
traffic, a record's surface), each with its own slowly wandering level, over a drifting room
floor. Events come at irregular (clustered Poisson) times, resonances and pitches are drawn
from continuous ranges (never a scale), machine cycles jitter and drift, and spectral colour
changes over time, so that a detector learns what real non-music sounds like rather than
taking everything that is neither speech nor steady noise for music.

The material is made afresh per draw (there is no finite set of files to assign to splits),
so, as for procedural-noise, every split draws from the same generator.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import signal

from musicdet import __version__
from musicdet.synth.dsp import SAMPLE_RATE, add_at, band, db_to_gain, rms, samples, set_level
from musicdet.synth.sources import Source, SourceInfo, Split, register
from musicdet.synth.speech import speech

Layer = Callable[[np.random.Generator, float], np.ndarray]
HOP = 256  # samples per frame of shaped noise (16 ms); frames are two hops long
_FREQS = np.fft.rfftfreq(2 * HOP, 1 / SAMPLE_RATE)
_WINDOW = np.sin(np.pi * (np.arange(2 * HOP) + 0.5) / (2 * HOP))  # sine: constant power OLA
CREST = 8.0  # peaks are soft-limited to about this multiple of the RMS (18 dB)


def wander(rng: np.random.Generator, seconds: float, count: int, low: float, high: float,
           knot_hz: float) -> np.ndarray:
    """``count`` values, evenly spaced over ``seconds``, of a smooth random curve between
    ``low`` and ``high`` through random knots at random times, about ``knot_hz`` a second."""
    n_knots = max(2, int(seconds * knot_hz) + 2)
    times = np.sort(np.concatenate([[0.0, seconds], rng.uniform(0, seconds, n_knots - 2)]))
    values = rng.uniform(low, high, n_knots)
    position = np.linspace(0.0, seconds, count)
    index = np.clip(np.searchsorted(times, position, side="right") - 1, 0, n_knots - 2)
    span = np.maximum(times[index + 1] - times[index], 1e-9)
    x = np.clip((position - times[index]) / span, 0.0, 1.0)
    smooth = x * x * (3 - 2 * x)
    return values[index] + (values[index + 1] - values[index]) * smooth


def shaped_noise(rng: np.random.Generator, seconds: float, centre_hz: tuple[float, float],
                 width_oct: tuple[float, float], level_db: tuple[float, float],
                 knot_hz: float) -> np.ndarray:
    """Noise in a log-frequency Gaussian band whose centre (Hz), width (octaves, one standard
    deviation) and level (dB) wander within the given ranges, ``knot_hz`` changes a second."""
    n = samples(seconds)
    frames = n // HOP + 2
    centre = np.exp(wander(rng, seconds, frames, *np.log(centre_hz), knot_hz))
    width = wander(rng, seconds, frames, *width_oct, knot_hz)
    level = 10 ** (wander(rng, seconds, frames, *level_db, knot_hz) / 20)
    octaves = np.log2(np.maximum(_FREQS, 10.0)[None, :] / centre[:, None]) / width[:, None]
    gain = level[:, None] * np.exp(-0.5 * octaves**2)
    spectrum = gain * (rng.standard_normal(gain.shape) + 1j * rng.standard_normal(gain.shape))
    grains = np.fft.irfft(spectrum, 2 * HOP) * _WINDOW
    out = np.zeros((frames + 1) * HOP)
    out[: frames * HOP].reshape(frames, HOP)[:] += grains[:, :HOP]
    out[HOP:].reshape(frames, HOP)[:] += grains[:, HOP:]
    return out[:n]


def event_times(rng: np.random.Generator, seconds: float, rate_hz: float,
                knot_hz: float = 0.5) -> np.ndarray:
    """Onsets (s) of a Poisson process whose rate wanders between 0 and twice ``rate_hz``:
    clusters and lulls, never a grid; at least one onset."""
    peak = 2.0 * rate_hz
    gaps = rng.exponential(1.0 / peak, int(peak * seconds * 1.5) + 8)
    times = np.cumsum(gaps)
    times = times[times < seconds]
    rate = wander(rng, seconds, 64, -0.3, 1.0, knot_hz).clip(0.0, 1.0)
    keep = rng.random(len(times)) < np.interp(times, np.linspace(0, seconds, 64), rate)
    return times[keep] if keep.any() else rng.uniform(0, seconds, 1)


def presence(rng: np.random.Generator, seconds: float, depth_db: float, knot_hz: float
             ) -> np.ndarray:
    """A per-sample gain wandering over ``depth_db`` dB, now and then dropping out."""
    n = samples(seconds)
    curve_db = wander(rng, seconds, max(n // HOP, 2), -depth_db, 0.0, knot_hz)
    if rng.random() < 0.3:
        curve_db -= 40.0 * (wander(rng, seconds, len(curve_db), -1.0, 1.0, knot_hz) > 0.6)
    return np.interp(np.arange(n), np.linspace(0, n, len(curve_db)), 10 ** (curve_db / 20))


def on_off(rng: np.random.Generator, seconds: float, on_s: tuple[float, float],
           off_s: tuple[float, float], ramp_s: float) -> np.ndarray:
    """A per-sample 0..1 gate: on and off stretches of random lengths with linear ramps."""
    state = int(rng.random() < 0.7)
    times, values, time_s = [0.0], [float(state)], 0.0
    while time_s < seconds:
        time_s += rng.uniform(*(on_s if state else off_s))
        times += [time_s, time_s + ramp_s]
        values += [float(state), float(1 - state)]
        state = 1 - state
        time_s += ramp_s
    return np.interp(np.arange(samples(seconds)) / SAMPLE_RATE, times, values)


def resonate(x: np.ndarray, freq_hz: float, q: float) -> np.ndarray:
    """``x`` through a two-pole resonator at ``freq_hz`` with quality factor ``q``."""
    r = np.exp(-np.pi * freq_hz / q / SAMPLE_RATE)
    w = 2 * np.pi * freq_hz / SAMPLE_RATE
    return signal.lfilter([1 - r], [1, -2 * r * np.cos(w), r * r], x)


def impact(rng: np.random.Generator, band_hz: tuple[float, float],
           decay_s: tuple[float, float]) -> np.ndarray:
    """One knock or clink: a click exciting 2-6 inharmonic modes in ``band_hz`` (Hz) that
    decay in ``decay_s`` (s, time constants)."""
    n_modes = int(rng.integers(2, 7))
    freqs = np.exp(rng.uniform(*np.log(band_hz), n_modes))
    taus = rng.uniform(*decay_s, n_modes)
    t = np.arange(samples(min(4 * taus.max(), 0.8))) / SAMPLE_RATE
    modes = (rng.uniform(0.2, 1.0, n_modes)[:, None] * np.exp(-t / taus[:, None])
             * np.sin(2 * np.pi * freqs[:, None] * t + rng.uniform(0, 2 * np.pi, n_modes)[:, None]))
    out = modes.sum(axis=0)
    click = samples(rng.uniform(0.0005, 0.004))
    out[:click] += rng.standard_normal(click) * np.hanning(click) * rng.uniform(0.3, 2.0)
    return out


def scatter(rng: np.random.Generator, seconds: float, onsets: np.ndarray,
            make: Callable[[], np.ndarray], spread_db: float) -> np.ndarray:
    """``make()`` sounds placed at ``onsets`` (s), levels spread over ``spread_db`` dB."""
    out = np.zeros(samples(seconds))
    for onset in onsets:
        add_at(out, make() * db_to_gain(-rng.uniform(0, spread_db)), samples(onset))
    return out


def glide_tone(rng: np.random.Generator, freq_hz: np.ndarray, harmonics: int) -> np.ndarray:
    """A tone following the per-sample contour ``freq_hz`` with random harmonic weights."""
    phase = 2 * np.pi * np.cumsum(freq_hz) / SAMPLE_RATE
    weights = rng.uniform(0, 1, harmonics) * (rng.random(harmonics) < 0.7) / np.arange(
        1, harmonics + 1)
    weights[0] = max(weights[0], 0.3)
    return sum(w * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
               for k, w in enumerate(weights, start=1))


# ---- layers: each (rng, seconds) -> unnormalised float64 audio -------------------------------

MATERIALS = {  # modal band (Hz) and decay time constants (s) of struck things
    "glass": ((2000.0, 7500.0), (0.03, 0.25)), "cutlery": ((1500.0, 6000.0), (0.02, 0.15)),
    "ceramic": ((700.0, 3500.0), (0.01, 0.08)), "pot": ((250.0, 1500.0), (0.05, 0.35)),
    "wood": ((150.0, 900.0), (0.005, 0.04)), "plastic": ((400.0, 2500.0), (0.004, 0.02)),
}


def clatter(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Kitchen clatter: clinks and knocks of two or three materials at irregular times, some
    bouncing or rattling (ever shorter repeats)."""
    materials = [MATERIALS[m] for m in rng.choice(list(MATERIALS), int(rng.integers(2, 4)),
                                                   replace=False)]

    def hit() -> np.ndarray:
        band_hz, decay = materials[rng.integers(len(materials))]
        sound = impact(rng, band_hz, decay)
        if rng.random() < 0.25:  # a bounce: repeats closer and quieter
            gap, gain, out = rng.uniform(0.05, 0.2), 1.0, np.zeros(samples(1.5))
            offset = 0.0
            for _ in range(int(rng.integers(2, 7))):
                add_at(out, sound * gain, samples(offset))
                offset, gap, gain = offset + gap, gap * rng.uniform(0.5, 0.85), gain * 0.6
            return out
        return sound

    return scatter(rng, seconds, event_times(rng, seconds, rng.uniform(0.5, 6.0)), hit, 24.0)


def water(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Running water (tap, stream, sink): flow noise of drifting colour, dense droplets
    through a few resonances and rising bubble chirps; a tap turned on and off."""
    n = samples(seconds)
    flow = shaped_noise(rng, seconds, (300.0, 4000.0), (0.6, 1.8), (-8.0, 0.0),
                        rng.uniform(0.3, 2.0))
    drops = np.zeros(n)
    for _ in range(int(rng.integers(4, 10))):  # resonances coming and going, never a line
        rate = rng.uniform(20, 500) * presence(rng, seconds, 30.0, 1.0)
        pulses = (rng.random(n) < rate / SAMPLE_RATE) * rng.lognormal(0, 0.8, n)
        drops += resonate(pulses, rng.uniform(400, 6000), rng.uniform(2, 8))
    bubbles = scatter(rng, seconds, event_times(rng, seconds, rng.uniform(2, 30), 1.0),
                      lambda: _bubble(rng), 18.0)
    out = _mix(rng, [flow, drops, bubbles], 12.0, 10.0)
    if rng.random() < 0.5:
        out *= 0.05 + on_off(rng, seconds, (1.0, 6.0), (0.3, 3.0), rng.uniform(0.05, 0.5))
    return out


def _bubble(rng: np.random.Generator) -> np.ndarray:
    length_s = rng.uniform(0.008, 0.05)
    t = np.arange(samples(length_s)) / SAMPLE_RATE
    freq = rng.uniform(500, 3500) * (1 + rng.uniform(0.1, 0.9) * t / length_s)
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-3 * t / length_s)


def rain(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Rain: a hiss whose density wanders, broadband drop ticks and drops drumming on a few
    surfaces (resonances), with a low rumble."""
    n = samples(seconds)
    hiss = shaped_noise(rng, seconds, (1500.0, 7000.0), (1.0, 2.5), (-10.0, 0.0), 0.3)
    rate = rng.uniform(200, 3000) * presence(rng, seconds, 12.0, 0.3)
    ticks = band((rng.random(n) < rate / SAMPLE_RATE) * rng.lognormal(0, 1.0, n), 1000, None, 2)
    surfaces = sum(resonate((rng.random(n) < rng.uniform(5, 80) / SAMPLE_RATE)
                            * rng.lognormal(0, 0.7, n), rng.uniform(150, 3000), rng.uniform(1.5, 5))
                   for _ in range(int(rng.integers(1, 4))))
    rumble = shaped_noise(rng, seconds, (60.0, 250.0), (0.5, 1.0), (-6.0, 0.0), 0.2)
    return _mix(rng, [hiss, ticks, surfaces, rumble], 15.0, 12.0)


def wind(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Wind gusts: low noise whose band and level swing, brighter in the gusts; sometimes a
    whistle gliding over a wide range."""
    gusts = shaped_noise(rng, seconds, (70.0, 900.0), (0.8, 2.2), (-25.0, 0.0),
                         rng.uniform(0.3, 1.2))
    if rng.random() < 0.3:
        whistle = shaped_noise(rng, seconds, (400.0, 2000.0), (0.04, 0.12), (-30.0, 0.0), 1.0)
        gusts += whistle * rng.uniform(0.1, 0.5) * rms(gusts) / max(rms(whistle), 1e-9)
    return gusts


def machine(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A motor, fan, pump or exercise bike: a hum of drifting pitch, noise fluttering at the
    rotation rate (jittered), a slow irregular whoosh; switched on and off with spin-up."""
    n = samples(seconds)
    gate = on_off(rng, seconds, (1.5, 10.0), (0.5, 4.0), rng.uniform(0.3, 2.0)) \
        if rng.random() < 0.6 else np.ones(n)
    speed = (0.5 + 0.5 * gate) * 2 ** (wander(rng, seconds, n, -1.0, 1.0, rng.uniform(0.2, 1.5))
                                       * rng.uniform(0.5, 3.0) / 12)
    hum = glide_tone(rng, rng.uniform(40, 400) * speed, int(rng.integers(3, 10)))
    rotation = np.cumsum(rng.uniform(8, 45) * speed * wander(rng, seconds, n, 0.9, 1.1, 3.0)
                         ) / SAMPLE_RATE
    flutter = np.maximum(0.0, np.sin(2 * np.pi * rotation)) ** rng.uniform(1, 6)
    body = shaped_noise(rng, seconds, (200.0, 3000.0), (0.5, 1.5), (-6.0, 0.0), 0.5)
    layers = [hum, body * (1 - rng.uniform(0, 0.9) * flutter)]
    if rng.random() < 0.4:  # exercise bike, washing machine: a cycle of 0.7-2 s, irregular
        cycle = np.cumsum(rng.uniform(0.5, 1.4) * 2 ** wander(rng, seconds, n, -0.4, 0.4, 1.0)
                          ) / SAMPLE_RATE
        whoosh = shaped_noise(rng, seconds, (300.0, 2500.0), (0.5, 1.2), (-3.0, 0.0), 0.5)
        layers.append(whoosh * np.sin(np.pi * cycle) ** 2)
    return _mix(rng, layers, 15.0, 10.0) * gate


def printer(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A printer or other mechanism: carriage sweeps of noise with a gliding stepper whine,
    clicks at their ends, irregular pauses."""
    out = np.zeros(samples(seconds))
    time_s = rng.uniform(0, 1.0)
    while time_s < seconds:
        length = rng.uniform(0.2, 2.0)
        sweep = shaped_noise(rng, length, (500.0, 5000.0), (0.4, 1.0), (-6.0, 0.0), 3.0)
        whine = glide_tone(rng, np.linspace(*rng.uniform(200, 2500, 2), len(sweep)), 3)
        burst = (sweep + whine * rng.uniform(0, 0.5) * rms(sweep)) * np.hanning(len(sweep))
        add_at(out, burst, samples(time_s))
        for edge in (time_s, time_s + length):
            add_at(out, impact(rng, (800.0, 4000.0), (0.003, 0.02)) * rms(sweep) * 3,
                   samples(edge))
        time_s += length + rng.exponential(1.0)
    return out


def babble(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Distant talkers (2-4 espeak voices, band-limited), each coming and going."""
    return sum(band(speech(rng, seconds), 150, 4000) * presence(rng, seconds, 15.0, 0.5)
               for _ in range(int(rng.integers(2, 5))))


def cafe(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A cafe or canteen: babble, cups and cutlery, now and then a hissing steam wand."""
    layers = [babble(rng, seconds), clatter(rng, seconds)]
    if rng.random() < 0.4:
        steam = shaped_noise(rng, seconds, (2000.0, 6000.0), (0.5, 1.0), (-6.0, 0.0), 2.0)
        layers.append(steam * on_off(rng, seconds, (1.0, 4.0), (2.0, 8.0), 0.1))
    return _mix(rng, layers, 12.0, 10.0)


def traffic(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Traffic: a wandering rumble and vehicles passing (tyre noise swelling, engine pitch
    falling as they pass)."""
    out = shaped_noise(rng, seconds, (50.0, 400.0), (0.6, 1.5), (-12.0, 0.0), 0.3)
    for passing in event_times(rng, seconds + 4, rng.uniform(0.1, 0.6)) - 2:
        width = rng.uniform(0.8, 3.0)
        start = max(passing - 3 * width, 0.0)
        t = np.arange(samples(min(passing + 3 * width, seconds) - start)) / SAMPLE_RATE + start
        if len(t) == 0:
            continue
        doppler = 1 + rng.uniform(0.02, 0.08) * -np.tanh((t - passing) / (0.3 * width))
        engine = glide_tone(rng, rng.uniform(25, 90) * doppler, 6)
        tyres = shaped_noise(rng, len(t) / SAMPLE_RATE, (300.0, 2000.0), (0.6, 1.2), (-4.0, 0.0),
                             1.0)
        swell = np.exp(-0.5 * ((t - passing) / width) ** 2) * rng.uniform(1.0, 4.0)
        add_at(out, swell * (tyres + rng.uniform(0, 0.5) * engine), samples(start))
    return out


def footsteps(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Someone walking for a few steps at a time (heel and toe, uneven), then standing."""
    band_hz, decay = MATERIALS[str(rng.choice(["wood", "ceramic", "plastic"]))]
    onsets: list[float] = []
    time_s = rng.uniform(0, 2.0)
    while time_s < seconds:
        step = rng.uniform(0.42, 0.75)
        for _ in range(int(rng.integers(2, 9))):
            onsets.append(time_s)
            time_s += step * rng.uniform(0.8, 1.25)
        time_s += rng.uniform(0.8, 5.0)

    def step_sound() -> np.ndarray:
        heel = impact(rng, (band_hz[0] * 0.5, band_hz[1] * 0.5), decay)
        out = np.zeros(samples(0.3))
        add_at(out, heel, 0)
        add_at(out, impact(rng, band_hz, decay) * rng.uniform(0.2, 0.7),
               samples(rng.uniform(0.03, 0.09)))
        return out

    return scatter(rng, seconds, np.array(onsets), step_sound, 10.0)


def doors(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Doors and cupboards: a low thud with rattle and a latch click, or a creak (a
    noisy glide); rare and irregular."""
    def door() -> np.ndarray:
        if rng.random() < 0.3:
            length = rng.uniform(0.3, 1.2)
            glide = np.exp(np.linspace(*np.log(rng.uniform(200, 1500, 2)), samples(length)))
            stick_slip = np.sin(2 * np.pi * np.cumsum(glide) / SAMPLE_RATE) > 0.7
            rasp = rng.standard_normal(len(glide)) * stick_slip
            return resonate(rasp, float(np.median(glide)) * 2, 4.0) * np.hanning(len(glide))
        n = samples(0.6)
        thud = band(rng.standard_normal(n), 40, rng.uniform(200, 600)) * np.exp(
            -np.arange(n) / SAMPLE_RATE / rng.uniform(0.05, 0.2))
        add_at(thud, impact(rng, (300.0, 2000.0), (0.02, 0.1)) * 0.5, samples(0.01))
        add_at(thud, impact(rng, (1500.0, 5000.0), (0.005, 0.02)) * 0.3, 0)
        return thud

    return scatter(rng, seconds, event_times(rng, seconds, rng.uniform(0.1, 0.5)), door, 12.0)


def paper(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Paper rustling: gestures of dense high crackle, pages turned at irregular times."""
    def gesture() -> np.ndarray:
        n = samples(rng.uniform(0.15, 1.2))
        crackle = (rng.random(n) < rng.uniform(0.02, 0.2)) * rng.lognormal(0, 1.0, n)
        swish = band(rng.standard_normal(n), rng.uniform(800, 3000), None, 2) * 0.3
        return band(crackle + swish, 1200, None, 2) * np.hanning(n) ** rng.uniform(0.5, 2)

    return scatter(rng, seconds, event_times(rng, seconds, rng.uniform(0.5, 3.0)), gesture, 15.0)


def typing(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Keyboard typing: key clicks at log-normal intervals in words, louder space bars,
    pauses to think."""
    onsets: list[float] = []
    time_s = rng.uniform(0, 1.0)
    median = rng.uniform(0.1, 0.25)
    while time_s < seconds:
        for _ in range(int(rng.integers(2, 10))):
            onsets.append(time_s)
            time_s += median * rng.lognormal(0, 0.4)
        time_s += rng.uniform(0.1, 0.6) + (rng.random() < 0.15) * rng.uniform(1.0, 4.0)
    low = rng.uniform(1000, 2500)
    return scatter(rng, seconds, np.array(onsets),
                   lambda: impact(rng, (low, low * 3), (0.003, 0.015)), 8.0)


def creatures(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Birds (calls of chirps sweeping over continuous ranges, irregularly spaced) or, now
    and then, croaking frogs and barks."""
    def call() -> np.ndarray:
        kind = rng.choice(["bird", "bird", "croak", "bark"])
        if kind == "croak":
            n = samples(rng.uniform(0.2, 0.8))
            pulses = np.maximum(0, np.sin(2 * np.pi * np.cumsum(
                rng.uniform(15, 40) * (1 + 0.2 * rng.standard_normal(n))) / SAMPLE_RATE)) ** 4
            return resonate(rng.standard_normal(n) * pulses, rng.uniform(300, 1200), 5.0)
        if kind == "bark":
            n = samples(rng.uniform(0.1, 0.3))
            tone = glide_tone(rng, np.linspace(*rng.uniform(300, 900, 2), n), 6)
            return (tone + 0.5 * rng.standard_normal(n)) * np.hanning(n)
        out, offset = np.zeros(samples(2.0)), 0.0
        for _ in range(int(rng.integers(1, 9))):
            n = samples(rng.uniform(0.02, 0.15))
            start = rng.uniform(2000, 7000)
            glide = start * 2 ** np.linspace(0, rng.uniform(-1.5, 1.5), n)
            add_at(out, glide_tone(rng, glide, 2) * np.hanning(n) ** 2, samples(offset))
            offset += n / SAMPLE_RATE + rng.uniform(0.02, 0.25)
        return out

    return scatter(rng, seconds, event_times(rng, seconds, rng.uniform(0.2, 1.5)), call, 20.0)


def vinyl(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A worn record's surface (no music): hiss, crackle of wandering density, pops, rumble."""
    n = samples(seconds)
    hiss = shaped_noise(rng, seconds, (2000.0, 6000.0), (1.0, 2.0), (-4.0, 0.0), 0.5)
    rate = rng.uniform(5, 150) * presence(rng, seconds, 15.0, 0.5)
    crackle = band((rng.random(n) < rate / SAMPLE_RATE) * rng.pareto(2.5, n), 800, None, 2)
    pops = scatter(rng, seconds, event_times(rng, seconds, rng.uniform(0.1, 1.0)),
                   lambda: impact(rng, (100.0, 600.0), (0.002, 0.01)), 10.0)
    rumble = shaped_noise(rng, seconds, (20.0, 60.0), (0.3, 0.6), (-3.0, 0.0), 0.2)
    return _mix(rng, [hiss, crackle, pops, rumble], 18.0, 12.0)


def _mix(rng: np.random.Generator, layers: list[np.ndarray], spread_db: float,
         wander_db: float = 0.0) -> np.ndarray:
    """``layers`` at equal RMS, each then lowered by up to ``spread_db`` dB at random and
    wandering in level over ``wander_db`` dB (the blend's colour changes)."""
    seconds = len(layers[0]) / SAMPLE_RATE
    return sum(set_level(layer * presence(rng, seconds, wander_db, rng.uniform(0.2, 1.0)), 0.0)
               * db_to_gain(-rng.uniform(0, spread_db)) for layer in layers)


# Layers with their weights (babble's espeak voices make the cafe the slowest).
LAYERS: dict[str, tuple[Layer, float]] = {
    "clatter": (clatter, 1.0), "water": (water, 1.0), "rain": (rain, 0.7), "wind": (wind, 0.7),
    "machine": (machine, 1.0), "printer": (printer, 0.4), "cafe": (cafe, 0.8),
    "traffic": (traffic, 0.8), "footsteps": (footsteps, 0.5), "doors": (doors, 0.4),
    "paper": (paper, 0.4), "typing": (typing, 0.5), "creatures": (creatures, 0.6),
    "vinyl": (vinyl, 0.3),
}


BEDS = ("water", "rain", "wind", "machine", "cafe", "traffic", "vinyl")  # continuous layers
BED_RATE = 0.75  # share of draws led by a continuous bed (the rest: any layer leads)


def pick_layers(rng: np.random.Generator) -> tuple[str, ...]:
    """Two or three distinct `LAYERS` by weight, the first (the loudest) a bed at `BED_RATE`."""
    names = list(BEDS) if rng.random() < BED_RATE else list(LAYERS)
    chosen: list[str] = []
    for count in range(int(rng.integers(2, 4))):
        pool = [name for name in (names if count == 0 else LAYERS) if name not in chosen]
        weights = np.array([LAYERS[name][1] for name in pool])
        chosen.append(str(pool[rng.choice(len(pool), p=weights / weights.sum())]))
    return tuple(chosen)


def textured_ambience(rng: np.random.Generator, seconds: float,
                      layers: tuple[str, ...] | None = None) -> np.ndarray:
    """``seconds`` of a layered ambience: `pick_layers` (or the named ``layers``), the first at
    0 dB and the others 3-18 dB below it, each wandering in level (3-12 dB a draw), over a
    drifting room floor 30-45 dB down; peaks soft-limited to about `CREST` times the RMS;
    float32, -20 dBFS."""
    layers = pick_layers(rng) if layers is None else layers
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        raise ValueError(f"unknown textured layers {unknown}; known: {', '.join(LAYERS)}")
    if samples(seconds) == 0:
        return np.zeros(0, np.float32)
    parts = [LAYERS[name][0](rng, seconds) for name in layers]
    depth = rng.uniform(3.0, 12.0)
    below_db = [0.0, *rng.uniform(3.0, 18.0, len(parts) - 1)]
    out = sum(set_level(part * presence(rng, seconds, depth, rng.uniform(0.2, 1.0)), 0.0)
              * db_to_gain(-level) for part, level in zip(parts, below_db, strict=True))
    floor = shaped_noise(rng, seconds, (150.0, 3000.0), (1.0, 2.5), (-8.0, 0.0), 0.2)
    out = out + set_level(floor, 20 * np.log10(max(rms(out), 1e-9)) - rng.uniform(30, 45))
    for _ in range(3):  # soft-limit and re-level until the peaks stay within the crest
        out = soft_limit(set_level(out, -20.0), CREST * db_to_gain(-20.0))
    return set_level(out, -20.0).astype(np.float32)


def soft_limit(x: np.ndarray, limit: float) -> np.ndarray:
    """``x`` unchanged below half of ``limit``, above it bent smoothly (tanh) towards it."""
    knee = limit / 2
    size = np.abs(x)
    bent = knee + knee * np.tanh((size - knee) / knee)
    return np.where(size > knee, np.sign(x) * bent, x)


class TexturedNoise(Source):
    """Layered textured ambiences (`textured_ambience`); every split shares the generator."""

    info = SourceInfo("textured-noise", "noise", f"musicdet {__version__}", "MIT")

    def available(self) -> bool:
        return True

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        return textured_ambience(rng, seconds)


register(TexturedNoise())
