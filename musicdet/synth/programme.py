"""Programmes: a sequence of labelled segments joined by cross-fades, then one broadcast
channel (band-limiting, compression, noise floor), as on TV or radio."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from musicdet.synth import sounds, sources
from musicdet.synth.config import ROLES, SynthConfig
from musicdet.synth.dsp import (
    SAMPLE_RATE,
    add_at,
    band,
    compress,
    db_to_gain,
    fade,
    pink_noise,
    samples,
    set_level,
)
from musicdet.synth.sources import Split

MUSIC, NO_MUSIC = "music", "no-music"
Segments = list[tuple[float, float, str]]
# Ordinary kinds per label with their weights; hard kinds are drawn at `hard_case_rate`.
# Ambience alone is weighted up (0.2 -> 0.4): models trained with little non-speech no-music
# took real kitchen, water, machine and street noise for music.
EASY_KINDS = {
    MUSIC: {"music": 0.35, "speech_over_music": 0.4, "song": 0.15, "jingle": 0.1},
    NO_MUSIC: {"speech": 0.5, "ambience": 0.4, "room": 0.1},
}
# Singing and chant are music (OpenBMAT's convention), so no sung-like sound is a no-music case.
HARD_KINDS = {
    MUSIC: ("solo_music", "percussion_music", "quiet_music", "music_with_crowd", "a_cappella"),
    NO_MUSIC: ("tonal", "speech_over_tonal"),
}
# Kinds that need an optional role: not drawn when no provider plays it.
KIND_ROLES = {"song": "singing", "a_cappella": "singing"}
# Band edges (Hz, None = open) of the broadcast channel, and how often each is drawn.
CHANNEL_BANDS = (((None, None), 0.3), ((80, 7000), 0.3), ((300, 3400), 0.15),
                 ((None, 4500), 0.15), ((150, None), 0.1))


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
    """The providers ``config`` asks for (or the best available); a `ConfigError` naming the
    key if one is missing."""
    return Palette(split, {
        name: sources.resolve_weights(getattr(config, f"{name}_sources"), role.default,
                                      f"{name}_sources", role.optional)
        for name, role in ROLES.items()})


@dataclass(frozen=True)
class PlannedSegment:
    """One segment of a programme: what it holds and where, in integer milliseconds."""

    kind: str
    label: str
    onset_ms: int
    offset_ms: int


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
    transitions = [0.0] + [_transition_s(rng, config) for _ in plan[1:]] + [0.0]
    for index, segment in enumerate(plan):
        fade_in, fade_out = transitions[index], transitions[index + 1]
        length_s = (segment.offset_ms - segment.onset_ms) / 1000 + (fade_in + fade_out) / 2
        clip = SEGMENT_RENDERERS[segment.kind](rng, length_s, config, chosen)
        clip = fade(clip * db_to_gain(rng.uniform(-6.0, 4.0)), fade_in, fade_out)
        add_at(audio, clip, samples(segment.onset_ms / 1000 - fade_in / 2))
    audio = set_level(audio, rng.uniform(-26.0, -16.0))
    if config.channel_effects:
        audio = broadcast_channel(rng, audio, config.noise_floor_db_max)
    peak = float(np.abs(audio).max())
    if peak > 0.98:
        audio *= 0.98 / peak
    return audio.astype(np.float32), labelled_segments(plan)


def _transition_s(rng: np.random.Generator, config: SynthConfig) -> float:
    """A hard cut (10 ms) a third of the time, otherwise a cross-fade of random length."""
    return 0.01 if rng.random() < 0.33 else rng.uniform(0.01, config.max_transition_seconds)


def plan_segments(rng: np.random.Generator, config: SynthConfig, palette: Palette
                  ) -> list[PlannedSegment]:
    """Segments tiling the programme, of kinds ``palette`` plays; the label is steered
    towards ``music_fraction``."""
    total_ms = round(config.programme_seconds * 1000)
    min_ms = round(config.min_segment_seconds * 1000)
    max_ms = round(config.max_segment_seconds * 1000)
    mean_ms = (min_ms + max_ms) / 2
    plan: list[PlannedSegment] = []
    onset_ms = music_ms = 0
    while onset_ms < total_ms:
        deficit = config.music_fraction * (onset_ms + mean_ms) - music_ms
        p_music = np.clip(config.music_fraction + deficit / (2 * mean_ms), 0.0, 1.0)
        label = MUSIC if rng.random() < p_music else NO_MUSIC
        kind = _draw_kind(rng, label, config.hard_case_rate, palette)
        length_ms = int(rng.integers(min_ms, max_ms + 1))
        if kind in ("jingle", "room"):
            length_ms = min(length_ms, max(min_ms, 5000))
        offset_ms = min(onset_ms + length_ms, total_ms)
        if total_ms - offset_ms < min_ms:
            offset_ms = total_ms
        plan.append(PlannedSegment(kind, label, onset_ms, offset_ms))
        music_ms += (offset_ms - onset_ms) * (label == MUSIC)
        onset_ms = offset_ms
    return plan


def _draw_kind(rng: np.random.Generator, label: str, hard_case_rate: float, palette: Palette
               ) -> str:
    if rng.random() < hard_case_rate:
        hard = [kind for kind in HARD_KINDS[label] if palette.plays(kind)]
        return str(rng.choice(hard))
    kinds = {kind: w for kind, w in EASY_KINDS[label].items() if palette.plays(kind)}
    weights = np.array(list(kinds.values()))
    return str(rng.choice(list(kinds), p=weights / weights.sum()))


def labelled_segments(plan: list[PlannedSegment]) -> Segments:
    """(onset_s, offset_s, label) of ``plan``, neighbours with the same label merged."""
    merged: list[list] = []
    for segment in plan:
        if merged and merged[-1][2] == segment.label:
            merged[-1][1] = segment.offset_ms
        else:
            merged.append([segment.onset_ms, segment.offset_ms, segment.label])
    return [(onset / 1000, offset / 1000, label) for onset, offset, label in merged]


def broadcast_channel(rng: np.random.Generator, audio: np.ndarray,
                      noise_floor_db_max: float) -> np.ndarray:
    """One random channel: band-limiting, dynamic compression, hum and a noise floor."""
    edges = [edge for edge, _ in CHANNEL_BANDS]
    weights = np.array([weight for _, weight in CHANNEL_BANDS])
    low, high = edges[rng.choice(len(edges), p=weights / weights.sum())]
    out = band(audio, low, high)
    if rng.random() < 0.7:
        out = compress(out, threshold_db=rng.uniform(-35.0, -20.0), ratio=rng.uniform(2.0, 8.0))
    if rng.random() < 0.2:
        out += sounds.hum(rng, len(out) / SAMPLE_RATE) * db_to_gain(rng.uniform(-35.0, -15.0))
    noise_db = rng.uniform(noise_floor_db_max - 25.0, noise_floor_db_max)
    return out + band(pink_noise(rng, len(out)), 40, 7500) * db_to_gain(noise_db)


Renderer = Callable[[np.random.Generator, float, SynthConfig, Palette], np.ndarray]


def _music(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
           ) -> np.ndarray:
    return palette.draw(rng, "music", seconds)


def _speech_over_music(rng: np.random.Generator, seconds: float, config: SynthConfig,
                       palette: Palette) -> np.ndarray:
    bed_db = rng.uniform(config.bed_level_db_min, config.bed_level_db_max)
    voice = palette.draw(rng, "speech", seconds)
    return voice + palette.draw(rng, "music", seconds) * db_to_gain(bed_db)


def _jingle(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
            ) -> np.ndarray:
    return fade(palette.draw(rng, "music", seconds), 0.0, min(0.3, seconds / 4))


def _song(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
          ) -> np.ndarray:
    """A sung voice over accompaniment (the voice 0-10 dB above it)."""
    voice = palette.draw(rng, "singing", seconds)
    return voice + palette.draw(rng, "music", seconds) * db_to_gain(rng.uniform(-10.0, 0.0))


def _a_cappella(rng: np.random.Generator, seconds: float, config: SynthConfig,
                palette: Palette) -> np.ndarray:
    return palette.draw(rng, "singing", seconds)


def _solo_music(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
                ) -> np.ndarray:
    return palette.draw(rng, "solo", seconds)


def _percussion_music(rng: np.random.Generator, seconds: float, config: SynthConfig,
                      palette: Palette) -> np.ndarray:
    return palette.draw(rng, "percussion", seconds)


def _quiet_music(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
                 ) -> np.ndarray:
    quiet = palette.draw(rng, "music", seconds) * db_to_gain(config.quiet_music_db)
    return quiet + sounds.room_tone(rng, seconds) * db_to_gain(config.quiet_music_db - 6.0)


def _music_with_crowd(rng: np.random.Generator, seconds: float, config: SynthConfig,
                      palette: Palette) -> np.ndarray:
    crowd = palette.draw(rng, "noise", seconds)
    bed_db = rng.uniform(config.bed_level_db_min, config.bed_level_db_max)
    return crowd + palette.draw(rng, "music", seconds) * db_to_gain(bed_db)


def _speech(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
            ) -> np.ndarray:
    voice = palette.draw(rng, "speech", seconds)
    if rng.random() >= config.background_noise_rate:
        return voice
    return voice + _ambience(rng, seconds, config, palette) * db_to_gain(rng.uniform(-20.0, -5.0))


def _ambience(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
              ) -> np.ndarray:
    return palette.draw(rng, "noise", seconds)


def _room(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
          ) -> np.ndarray:
    return sounds.room_tone(rng, seconds) * db_to_gain(rng.uniform(-30.0, -15.0))


def _tonal(rng: np.random.Generator, seconds: float, config: SynthConfig, palette: Palette
           ) -> np.ndarray:
    return sounds.TONAL[str(rng.choice(list(sounds.TONAL)))](rng, seconds)


def _speech_over_tonal(rng: np.random.Generator, seconds: float, config: SynthConfig,
                       palette: Palette) -> np.ndarray:
    bed_db = rng.uniform(config.bed_level_db_min, config.bed_level_db_max)
    voice = palette.draw(rng, "speech", seconds)
    return voice + _tonal(rng, seconds, config, palette) * db_to_gain(bed_db)


SEGMENT_RENDERERS: dict[str, Renderer] = {
    "music": _music,
    "speech_over_music": _speech_over_music,
    "jingle": _jingle,
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
