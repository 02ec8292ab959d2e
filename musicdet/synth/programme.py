"""Programmes: a sequence of labelled segments, levelled in loudness units and joined by DJ
transitions (hard cuts and cross-fades of several curves), then one broadcast chain (EQ,
band-limiting, compression, limiter, lossy codec, noise floor), as on TV or radio."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from musicdet.synth import sounds, sources
from musicdet.synth.config import ROLES, Role, SynthConfig
from musicdet.synth.dsp import (
    FADE_CURVES,
    SAMPLE_RATE,
    add_at,
    band,
    codec_round_trip,
    db_to_gain,
    duck_envelope,
    equalise,
    fade,
    fit_length,
    keep_peak,
    limit,
    multiband_compress,
    pink_noise,
    samples,
    set_loudness,
)
from musicdet.synth.sources import Split, recordings

MUSIC, NO_MUSIC = "music", "no-music"
Segments = list[tuple[float, float, str]]
# Ordinary kinds per label with their weights; hard kinds are drawn at `hard_case_rate`.
# Ambience alone is weighted up (0.2 -> 0.4): models trained with little non-speech no-music
# took real kitchen, water, machine and street noise for music.
EASY_KINDS = {
    MUSIC: {"music": 0.3, "speech_over_music": 0.3, "talk_over": 0.15, "song": 0.15,
            "jingle": 0.1},
    NO_MUSIC: {"speech": 0.5, "ambience": 0.4, "room": 0.1},
}
# Singing and chant are music (OpenBMAT's convention), so no sung-like sound is a no-music case.
HARD_KINDS = {
    MUSIC: ("solo_music", "percussion_music", "quiet_music", "music_with_crowd", "a_cappella"),
    NO_MUSIC: ("tonal", "speech_over_tonal"),
}
# Kinds that need an optional role: not drawn when no provider plays it.
KIND_ROLES = {"song": "singing", "a_cappella": "singing"}
# Segment lengths (seconds, drawn log-uniformly, then kept within the config's min and max
# segment seconds): talk 5-40 s, music 5-60 s, these kinds shorter. A stinger (a short
# musical ident between two talk segments, at `STINGER_RATE`) keeps its 0.5-4 s whatever
# the config's minimum.
TALK_KINDS = ("speech", "speech_over_music", "talk_over", "speech_over_tonal")
KIND_SECONDS = {"jingle": (2.0, 5.0), "room": (1.0, 5.0), "ambience": (3.0, 20.0),
                "tonal": (3.0, 20.0), "stinger": (0.5, 4.0)}
TALK_SECONDS, MUSIC_SECONDS = (5.0, 40.0), (5.0, 60.0)
STINGER_RATE = 0.25
# Transitions: a hard cut (10 ms, always next to a stinger) or a cross-fade of one curve.
HARD_CUT_MS, HARD_CUT_RATE = 10, 0.33
# Levels: the programme's loudness (LUFS), each segment's foreground within +-LEVEL_SPREAD_LU
# of it; renderers set their foreground to REFERENCE_LUFS and the rest relative to it (LU).
PROGRAMME_LUFS, LEVEL_SPREAD_LU, REFERENCE_LUFS = (-26.0, -16.0), 2.0, -23.0
DUCK_DB, DUCK_RAMP_S = (6.0, 20.0), (0.1, 0.6)  # talk-over: music under the presenter
PHONE_RATE, PHONE_BAND_HZ = 0.15, (300.0, 3400.0)  # speech segments that are phone-ins
# Band edges (Hz, None = open) of the broadcast channel, and how often each is drawn.
CHANNEL_BANDS = (((None, None), 0.3), ((80, 7000), 0.3), ((300, 3400), 0.15),
                 ((None, 4500), 0.15), ((150, None), 0.1))
# Lossy codecs of the channel and their bit rates (kbit/s; libvorbis at 16 kHz mono tops out
# near 68 kbit/s).
CODEC_KBPS = {"mp3": (32, 48, 64, 96, 128), "vorbis": (32, 40, 48, 56, 64)}


@dataclass(frozen=True)
class Palette:
    """What a programme draws from: its split and, per role (`ROLES`), providers by weight
    (empty for an optional role that nothing here plays)."""

    split: Split
    roles: Mapping[str, Mapping[str, float]]

    def draw(self, rng: np.random.Generator, role: str, seconds: float) -> np.ndarray:
        """``seconds`` of ``role`` from one of its providers, drawn by weight."""
        weights = self.roles[role]
        names = list(weights)
        p = np.array([weights[name] for name in names])
        name = names[rng.choice(len(names), p=p / p.sum())]
        return sources.registry()[name].draw(rng, seconds, self.split)

    def plays(self, kind: str) -> bool:
        """Whether segments of ``kind`` can be rendered (their role, if any, has a provider)."""
        return kind not in KIND_ROLES or bool(self.roles[KIND_ROLES[kind]])

    def providers(self) -> list[str]:
        """Names of every provider this palette may draw from."""
        return sorted({name for weights in self.roles.values() for name in weights})


def palette(config: SynthConfig, split: Split = "train") -> Palette:
    """The providers ``config`` asks for (or the best available) that have material in
    ``split``, a role's pool (`SynthConfig.pools`) instead of its providers; a `ConfigError`
    naming the key if one is missing."""
    return Palette(split, {name: _role_weights(config, name, role, split)
                           for name, role in ROLES.items()})


def _role_weights(config: SynthConfig, name: str, role: Role, split: Split
                  ) -> dict[str, float]:
    key = f"{name}_sources"
    requested = getattr(config, key)
    if config.pools and name in config.pools:
        key = f"pools.{name}"
        requested = {recordings.pool_source(name, role.kind, config.pools[name]): 1.0}
    return sources.resolve_weights(requested, role.default, key, role.optional, split)


@dataclass(frozen=True)
class PlannedSegment:
    """One segment of a programme: what it holds and where, in integer milliseconds, and the
    transition into it from the previous one (length in even milliseconds, centred on
    ``onset_ms``, and its curve, `FADE_CURVES`)."""

    kind: str
    label: str
    onset_ms: int
    offset_ms: int
    fade_in_ms: int = 0
    fade_curve: str = "s-curve"


@dataclass(frozen=True)
class Channel:
    """One programme's broadcast chain, in the order it is applied."""

    eq: tuple[tuple[str, float, float, float], ...]  # biquads (kind, Hz, gain dB, Q)
    band_hz: tuple[float | None, float | None]  # band-limiting edges (None: open)
    crossovers_hz: tuple[float, ...]  # bands of the compressor (none: one band)
    thresholds_db: tuple[float, ...]  # per band, relative to its RMS (none: no compressor)
    ratios: tuple[float, ...]
    hum_db: float | None  # mains hum level, dBFS
    limiter: tuple[float, float] | None  # (ceiling dBFS, drive dB of the peak over it)
    codec: tuple[str, float] | None  # (codec, kbit/s) of a lossy round trip
    noise_db: float  # noise floor, dBFS


def generate_programme(seed: int, config: SynthConfig, split: Split = "train"
                       ) -> tuple[np.ndarray, Segments]:
    """One synthetic programme from ``split``'s material: float32 mono 16 kHz audio of
    ``config.programme_seconds`` and its segments (onset_s, offset_s, "music" | "no-music")
    tiling it without gaps.

    Deterministic: the same ``seed``, ``config``, split and providers give the same samples.
    """
    chosen = palette(config, split)
    rng = np.random.default_rng(seed)
    plan = plan_segments(rng, config, chosen)
    audio = np.zeros(samples(plan[-1].offset_ms / 1000))
    lufs = rng.uniform(*PROGRAMME_LUFS)
    for segment, following in zip(plan, [*plan[1:], None], strict=True):
        clip = render_segment(rng, segment, following, config, chosen, lufs)
        add_at(audio, clip, samples((segment.onset_ms - segment.fade_in_ms / 2) / 1000))
    if config.channel_effects:
        audio = apply_channel(rng, audio, draw_channel(rng, config))
    return keep_peak(audio).astype(np.float32), labelled_segments(plan)


def render_segment(rng: np.random.Generator, segment: PlannedSegment,
                   following: PlannedSegment | None, config: SynthConfig, palette: Palette,
                   lufs: float) -> np.ndarray:
    """``segment``'s clip with its foreground near ``lufs``, spanning its transitions (half of
    each lies outside it) and faded along their curves."""
    fade_in_s = segment.fade_in_ms / 1000
    fade_out_s = following.fade_in_ms / 1000 if following else 0.0
    seconds = (segment.offset_ms - segment.onset_ms) / 1000 + (fade_in_s + fade_out_s) / 2
    clip = fit_length(SEGMENT_RENDERERS[segment.kind](rng, seconds, config, palette),
                      samples(seconds))
    gain_db = lufs - REFERENCE_LUFS + rng.uniform(-LEVEL_SPREAD_LU, LEVEL_SPREAD_LU)
    curves = (segment.fade_curve, following.fade_curve if following else "s-curve")
    return fade(clip * db_to_gain(gain_db), fade_in_s, fade_out_s, curves)


def plan_segments(rng: np.random.Generator, config: SynthConfig, palette: Palette
                  ) -> list[PlannedSegment]:
    """Segments tiling the programme, of kinds ``palette`` plays, with the transitions between
    them; the label is steered towards ``music_fraction``."""
    total_ms = round(config.programme_seconds * 1000)
    min_ms = round(config.min_segment_seconds * 1000)
    fraction = config.music_fraction
    plan: list[PlannedSegment] = []
    onset_ms = music_ms = 0
    while onset_ms < total_ms:
        kinds = {label: _draw_kind(rng, label, config.hard_case_rate, palette)
                 for label in (MUSIC, NO_MUSIC)}
        lengths = {label: min(_length_ms(rng, kind, config), total_ms - onset_ms)
                   for label, kind in kinds.items()}
        music_time = fraction * lengths[NO_MUSIC]  # so that music takes `fraction` of the time
        p_music = music_time / (music_time + (1 - fraction) * lengths[MUSIC])
        deficit = fraction * onset_ms - music_ms
        p_music = np.clip(p_music + deficit / (lengths[MUSIC] + lengths[NO_MUSIC]), 0.0, 1.0)
        label = MUSIC if rng.random() < p_music else NO_MUSIC
        kind = kinds[label]
        if (label == NO_MUSIC and plan and plan[-1].kind in TALK_KINDS
                and config.music_fraction > 0 and rng.random() < STINGER_RATE):
            stinger_ms = _length_ms(rng, "stinger", config)
            if onset_ms + stinger_ms + min_ms <= total_ms:
                plan.append(_joined(rng, config, plan, "stinger", MUSIC, onset_ms, stinger_ms))
                music_ms += stinger_ms
                onset_ms += stinger_ms
        offset_ms = min(onset_ms + lengths[label], total_ms)
        if total_ms - offset_ms < min_ms:
            offset_ms = total_ms
        plan.append(_joined(rng, config, plan, kind, label, onset_ms, offset_ms - onset_ms))
        music_ms += (offset_ms - onset_ms) * (label == MUSIC)
        onset_ms = offset_ms
    return plan


def _length_ms(rng: np.random.Generator, kind: str, config: SynthConfig) -> int:
    """A length for ``kind`` (`KIND_SECONDS`, `TALK_SECONDS`, `MUSIC_SECONDS`), log-uniform."""
    low, high = KIND_SECONDS.get(kind, TALK_SECONDS if kind in TALK_KINDS else MUSIC_SECONDS)
    if kind != "stinger":
        low = min(max(low, config.min_segment_seconds), config.max_segment_seconds)
        high = min(max(high, config.min_segment_seconds), config.max_segment_seconds)
    return round(1000 * np.exp(rng.uniform(np.log(low), np.log(high))))


def _joined(rng: np.random.Generator, config: SynthConfig, plan: list[PlannedSegment],
            kind: str, label: str, onset_ms: int, length_ms: int) -> PlannedSegment:
    """The segment after ``plan`` with its transition: none first, a hard cut next to a
    stinger or at `HARD_CUT_RATE`, otherwise a cross-fade of up to max_transition_seconds."""
    curve = str(rng.choice(list(FADE_CURVES)))
    if not plan:
        return PlannedSegment(kind, label, onset_ms, onset_ms + length_ms, 0, curve)
    half_ms = HARD_CUT_MS // 2
    if "stinger" not in (kind, plan[-1].kind) and rng.random() >= HARD_CUT_RATE:
        half_ms = int(rng.integers(half_ms, max(half_ms, round(config.max_transition_seconds
                                                              * 500)) + 1))
    return PlannedSegment(kind, label, onset_ms, onset_ms + length_ms, 2 * half_ms, curve)


def _draw_kind(rng: np.random.Generator, label: str, hard_case_rate: float, palette: Palette
               ) -> str:
    if rng.random() < hard_case_rate:
        hard = [kind for kind in HARD_KINDS[label] if palette.plays(kind)]
        return str(rng.choice(hard))
    kinds = {kind: w for kind, w in EASY_KINDS[label].items() if palette.plays(kind)}
    weights = np.array(list(kinds.values()))
    return str(rng.choice(list(kinds), p=weights / weights.sum()))


def labelled_segments(plan: list[PlannedSegment]) -> Segments:
    """(onset_s, offset_s, label) of ``plan``, neighbours with the same label merged; a
    transition between music and no-music is music throughout (as in realdev)."""
    merged: list[list] = []
    for segment in plan:
        if merged and merged[-1][2] == segment.label:
            merged[-1][1] = segment.offset_ms
            continue
        onset_ms = segment.onset_ms
        if merged:
            onset_ms += segment.fade_in_ms // 2 * (1 if merged[-1][2] == MUSIC else -1)
            merged[-1][1] = onset_ms
        merged.append([onset_ms, segment.offset_ms, segment.label])
    return [(onset / 1000, offset / 1000, label) for onset, offset, label in merged]


def draw_channel(rng: np.random.Generator, config: SynthConfig) -> Channel:
    """A random broadcast chain: EQ (60 %), band-limiting (`CHANNEL_BANDS`), a three-band
    (40 %) or one-band (30 %) compressor, hum (20 %), a brickwall limiter (60 %), an mp3 or
    vorbis round trip (50 %, `CODEC_KBPS`) and a noise floor up to noise_floor_db_max."""
    eq: list[tuple[str, float, float, float]] = []
    if rng.random() < 0.6:
        eq = [("low_shelf", rng.uniform(60.0, 250.0), rng.uniform(-6.0, 6.0), 0.7),
              ("high_shelf", rng.uniform(2500.0, 6000.0), rng.uniform(-8.0, 4.0), 0.7)]
        eq += [("peaking", float(np.exp(rng.uniform(np.log(200.0), np.log(5000.0)))),
                rng.uniform(-6.0, 6.0), rng.uniform(0.5, 3.0)) for _ in range(rng.integers(3))]
    edges = [edge for edge, _ in CHANNEL_BANDS]
    weights = np.array([weight for _, weight in CHANNEL_BANDS])
    band_hz = edges[rng.choice(len(edges), p=weights / weights.sum())]
    compressor = rng.random()
    crossovers = (rng.uniform(120.0, 300.0), rng.uniform(1500.0, 4000.0)) \
        if compressor < 0.4 else ()
    n_bands = (compressor < 0.7) * (len(crossovers) + 1)
    hum_db = rng.uniform(-35.0, -15.0) if rng.random() < 0.2 else None
    limiter = (rng.uniform(-3.0, -0.5), rng.uniform(0.0, 8.0)) if rng.random() < 0.6 else None
    codec = None
    if rng.random() < 0.5:
        name = "mp3" if rng.random() < 0.6 else "vorbis"
        codec = (name, float(rng.choice(CODEC_KBPS[name])))
    return Channel(tuple(eq), band_hz, crossovers,
                   tuple(rng.uniform(-15.0, -3.0, n_bands)), tuple(rng.uniform(2.0, 8.0, n_bands)),
                   hum_db, limiter, codec,
                   rng.uniform(config.noise_floor_db_max - 25.0, config.noise_floor_db_max))


def apply_channel(rng: np.random.Generator, audio: np.ndarray, channel: Channel) -> np.ndarray:
    """``audio`` through ``channel`` (hum and noise drawn from ``rng``)."""
    out = band(equalise(audio, channel.eq), *channel.band_hz)
    if channel.ratios:
        out = multiband_compress(out, channel.crossovers_hz, channel.thresholds_db,
                                 channel.ratios)
    if channel.hum_db is not None:
        out += sounds.hum(rng, len(out) / SAMPLE_RATE) * db_to_gain(channel.hum_db)
    if channel.limiter is not None:
        ceiling_db, drive_db = channel.limiter
        peak = max(float(np.abs(out).max()), 1e-9)
        out = limit(out * db_to_gain(ceiling_db + drive_db) / peak, ceiling_db)
    if channel.codec is not None:
        out = codec_round_trip(keep_peak(out), *channel.codec)
    return out + band(pink_noise(rng, len(out)), 40, 7500) * db_to_gain(channel.noise_db)


Renderer = Callable[[np.random.Generator, float, SynthConfig, Palette], np.ndarray]


def _lu(x: np.ndarray, relative_lu: float = 0.0) -> np.ndarray:
    """``x`` at ``relative_lu`` loudness units from a renderer's foreground (REFERENCE_LUFS)."""
    return set_loudness(x, REFERENCE_LUFS + relative_lu)


def _bed_lu(rng: np.random.Generator, config: SynthConfig) -> float:
    return rng.uniform(config.bed_level_db_min, config.bed_level_db_max)


def _music(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
           ) -> np.ndarray:
    return _lu(palette.draw(rng, "music", seconds))


def _speech_over_music(rng: np.random.Generator, seconds: float, config: SynthConfig,
                       palette: Palette) -> np.ndarray:
    bed_lu = _bed_lu(rng, config)
    voice = _lu(palette.draw(rng, "speech", seconds))
    return voice + _lu(palette.draw(rng, "music", seconds), bed_lu)


def _talk_over(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
               ) -> np.ndarray:
    """Music at full level that ducks `DUCK_DB` under a presenter over the middle 40-60 % of
    the segment (attack and release `DUCK_RAMP_S`) and comes back up."""
    n = samples(seconds)
    start = samples(seconds * rng.uniform(0.15, 0.35))
    stop = start + samples(seconds * rng.uniform(0.4, 0.6))
    envelope = duck_envelope(n, start, stop, rng.uniform(*DUCK_DB), rng.uniform(*DUCK_RAMP_S),
                             rng.uniform(*DUCK_RAMP_S))
    out = fit_length(_lu(palette.draw(rng, "music", seconds)), n) * envelope
    add_at(out, _lu(palette.draw(rng, "speech", (stop - start) / SAMPLE_RATE)), start)
    return out


def _jingle(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
            ) -> np.ndarray:
    return fade(_lu(palette.draw(rng, "music", seconds)), 0.0, min(0.3, seconds / 4))


def _stinger(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
             ) -> np.ndarray:
    """A short musical ident cut from 2 s more of music at its first onset (the first sample
    within 20 dB of the peak), with a quick fade-out (30-150 ms)."""
    music = palette.draw(rng, "music", seconds + 2.0)
    onset = int(np.argmax(np.abs(music) >= 0.1 * np.abs(music).max()))
    fade_out_s = min(rng.uniform(0.03, 0.15), seconds / 4)
    return fade(_lu(fit_length(music[onset:], samples(seconds))), 0.005, fade_out_s)


def _song(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
          ) -> np.ndarray:
    """A sung voice over accompaniment (the voice 0-10 LU above it)."""
    voice = _lu(palette.draw(rng, "singing", seconds))
    return voice + _lu(palette.draw(rng, "music", seconds), rng.uniform(-10.0, 0.0))


def _a_cappella(rng: np.random.Generator, seconds: float, config: SynthConfig,
                palette: Palette) -> np.ndarray:
    return _lu(palette.draw(rng, "singing", seconds))


def _solo_music(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
                ) -> np.ndarray:
    return _lu(palette.draw(rng, "solo", seconds))


def _percussion_music(rng: np.random.Generator, seconds: float, config: SynthConfig,
                      palette: Palette) -> np.ndarray:
    return _lu(palette.draw(rng, "percussion", seconds))


def _quiet_music(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
                 ) -> np.ndarray:
    quiet = _lu(palette.draw(rng, "music", seconds), config.quiet_music_db)
    return quiet + _lu(sounds.room_tone(rng, seconds), config.quiet_music_db - 6.0)


def _music_with_crowd(rng: np.random.Generator, seconds: float, config: SynthConfig,
                      palette: Palette) -> np.ndarray:
    crowd = _lu(palette.draw(rng, "noise", seconds))
    return crowd + _lu(palette.draw(rng, "music", seconds), _bed_lu(rng, config))


def _speech(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
            ) -> np.ndarray:
    """Speech, a phone-in (band-limited to `PHONE_BAND_HZ`) at `PHONE_RATE`, over street or
    crowd noise (5-20 LU under it) at background_noise_rate."""
    voice = palette.draw(rng, "speech", seconds)
    if rng.random() < PHONE_RATE:
        voice = band(voice, *PHONE_BAND_HZ)
    if rng.random() >= config.background_noise_rate:
        return _lu(voice)
    return _lu(voice) + _lu(palette.draw(rng, "noise", seconds), rng.uniform(-20.0, -5.0))


def _ambience(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
              ) -> np.ndarray:
    return _lu(palette.draw(rng, "noise", seconds))


def _room(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
          ) -> np.ndarray:
    return _lu(sounds.room_tone(rng, seconds), rng.uniform(-30.0, -15.0))


def _tonal(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
           ) -> np.ndarray:
    return _lu(sounds.TONAL[str(rng.choice(list(sounds.TONAL)))](rng, seconds))


def _speech_over_tonal(rng: np.random.Generator, seconds: float, config: SynthConfig,
                       palette: Palette) -> np.ndarray:
    bed_lu = _bed_lu(rng, config)
    voice = _lu(palette.draw(rng, "speech", seconds))
    return voice + _lu(_tonal(rng, seconds, config, palette), bed_lu)


SEGMENT_RENDERERS: dict[str, Renderer] = {
    "music": _music,
    "speech_over_music": _speech_over_music,
    "talk_over": _talk_over,
    "jingle": _jingle,
    "stinger": _stinger,
    "song": _song,
    "a_cappella": _a_cappella,
    "solo_music": _solo_music,
    "percussion_music": _percussion_music,
    "quiet_music": _quiet_music,
    "music_with_crowd": _music_with_crowd,
    "speech": _speech,
    "ambience": _ambience,
    "room": _room,
    "tonal": _tonal,
    "speech_over_tonal": _speech_over_tonal,
}
