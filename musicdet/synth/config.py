"""`SynthConfig`: the knobs of the synthetic broadcast corpus (lengths, balance, difficulty)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from musicdet.configtools import require

SpeechEngine = Literal["espeak", "formant"]
# Music providers by weight (see `musicdet synth --list-sources`) when a config names none;
# those not installed are left out.
DEFAULT_MUSIC_SOURCES = {"gm-scores": 0.4, "gm-arrangements": 0.45, "additive": 0.15}
DEFAULT_SOLO_SOURCES = {"gm-solo": 0.8, "additive-sparse": 0.2}
DEFAULT_PERCUSSION_SOURCES = {"gm-percussion": 0.8, "additive-percussion": 0.2}
SOURCE_KEYS = ("music_sources", "solo_sources", "percussion_sources")


@dataclass
class SynthConfig:
    """How synthetic programmes are built; every level is in dB, every length in seconds.

    The defaults are deliberately hard (quiet beds, many tonal non-music sounds, channel
    effects) so that a frame classifier trained on the corpus does not saturate.
    """

    programme_seconds: float = 60.0  # one programme, like OpenBMAT's one-minute excerpts
    music_fraction: float = 0.5  # target share of labelled music duration
    min_segment_seconds: float = 2.0
    max_segment_seconds: float = 12.0
    max_transition_seconds: float = 1.0  # cross-fade length between segments, drawn up to this
    bed_level_db_min: float = -20.0  # music bed under speech, relative to the speech
    bed_level_db_max: float = -6.0
    hard_case_rate: float = 0.35  # share of segments that are tonal non-music / sparse music
    quiet_music_db: float = -24.0  # quiet-music hard case, relative to the programme level
    background_noise_rate: float = 0.3  # share of speech segments with street/crowd noise
    channel_effects: bool = True  # band-limiting, compression, noise floor per programme
    noise_floor_db_max: float = -40.0  # loudest channel noise floor, dBFS
    speech_engine: SpeechEngine = "espeak"  # falls back to "formant" if espeak-ng is missing
    # Music providers by weight for ordinary music, solo/sparse and percussion-only segments;
    # None: the defaults above that are installed. A provider named here must be installed.
    music_sources: dict[str, float] | None = None
    solo_sources: dict[str, float] | None = None
    percussion_sources: dict[str, float] | None = None
    validation_fraction: float = 0.1  # share of programmes drawing on validation material
    test_corpus: bool = False  # every programme draws on test material (a separate test set)

    def __post_init__(self) -> None:
        require(self.programme_seconds >= 1.0, "programme_seconds", "programme_seconds >= 1",
                self.programme_seconds)
        require(0.0 <= self.music_fraction <= 1.0, "music_fraction",
                "0 <= music_fraction <= 1", self.music_fraction)
        require(0.2 <= self.min_segment_seconds <= self.max_segment_seconds,
                "min_segment_seconds", "0.2 <= min_segment_seconds <= max_segment_seconds",
                (self.min_segment_seconds, self.max_segment_seconds))
        require(0.0 <= self.max_transition_seconds <= self.min_segment_seconds / 2,
                "max_transition_seconds",
                "0 <= max_transition_seconds <= min_segment_seconds / 2",
                self.max_transition_seconds)
        require(-60.0 <= self.bed_level_db_min <= self.bed_level_db_max <= 0.0,
                "bed_level_db_min", "-60 <= bed_level_db_min <= bed_level_db_max <= 0",
                (self.bed_level_db_min, self.bed_level_db_max))
        for key in ("hard_case_rate", "background_noise_rate"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, key, f"0 <= {key} <= 1", value)
        require(-60.0 <= self.quiet_music_db <= 0.0, "quiet_music_db",
                "-60 <= quiet_music_db <= 0", self.quiet_music_db)
        require(-90.0 <= self.noise_floor_db_max <= -10.0, "noise_floor_db_max",
                "-90 <= noise_floor_db_max <= -10", self.noise_floor_db_max)
        require(self.speech_engine in ("espeak", "formant"), "speech_engine",
                "speech_engine in ('espeak', 'formant')", self.speech_engine)
        require(0.0 <= self.validation_fraction < 1.0, "validation_fraction",
                "0 <= validation_fraction < 1", self.validation_fraction)
        for key in SOURCE_KEYS:
            _check_weights(key, getattr(self, key))


def _check_weights(key: str, weights: dict[str, float] | None) -> None:
    """Known music providers with non-negative weights, at least one positive."""
    if weights is None:
        return
    from musicdet.synth.sources import registry

    music = sorted(name for name, source in registry().items() if source.info.kind == "music")
    for name, weight in weights.items():
        require(name in music, f"{key}.{name}", f"a music source ({', '.join(music)})", name)
        require(weight >= 0, f"{key}.{name}", "weight >= 0", weight)
    require(sum(weights.values()) > 0, key, "at least one weight > 0", weights)
