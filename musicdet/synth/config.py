"""`SynthConfig`: the knobs of the synthetic broadcast corpus (lengths, balance, difficulty)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from musicdet.configtools import require


@dataclass(frozen=True)
class Role:
    """A part programmes are made of: the kind of provider that plays it, its providers by
    weight when a config names none (those not installed are left out), and whether a
    corpus can do without it (its segments are then not drawn)."""

    kind: str
    default: Mapping[str, float]
    optional: bool = False


# Every role by name; the config key of a role is f"{name}_sources" (see
# `musicdet synth --list-sources` for the providers).
ROLES: dict[str, Role] = {
    # Recorded game soundtracks (Debian): orchestral, electronic, rock, chiptune.
    "music": Role("music", {"gm-scores": 0.4, "gm-arrangements": 0.45, "additive": 0.15,
                            "wesnoth-music": 0.15, "warzone2100-music": 0.15,
                            "nexuiz-music": 0.1, "supertux-music": 0.1}),
    "solo": Role("music", {"gm-solo": 0.8, "additive-sparse": 0.2}),
    "percussion": Role("music", {"gm-percussion": 0.8, "additive-percussion": 0.2}),
    "singing": Role("singing", {"sung-voice": 0.6, "piper-sung": 0.4}, optional=True),
    "speech": Role("speech", {"piper": 0.5, "asterisk-speech": 0.2, "flite": 0.15,
                              "espeak": 0.2, "formant-speech": 0.02}),
    "noise": Role("noise", {"textured-noise": 0.6, "procedural-noise": 0.2,
                            "opensfx-effects": 0.15, "supertux-effects": 0.05}),
}
SOURCE_KEYS = tuple(f"{role}_sources" for role in ROLES)


@dataclass
class SynthConfig:
    """How synthetic programmes are built; every level is in dB (relative levels in LU,
    ITU-R BS.1770 loudness units), every length in seconds.

    The defaults are deliberately hard (quiet beds, many tonal non-music sounds, channel
    effects) so that a frame classifier trained on the corpus does not saturate.
    """

    programme_seconds: float = 60.0  # one programme, like OpenBMAT's one-minute excerpts
    music_fraction: float = 0.5  # target share of labelled music duration
    # Segment lengths are drawn per kind (talk 5-40 s, music 5-60 s, some kinds shorter) and
    # kept within these bounds; stingers (0.5-4 s idents between talk) are exempt.
    min_segment_seconds: float = 2.0
    max_segment_seconds: float = 60.0
    max_transition_seconds: float = 1.0  # cross-fade length between segments, drawn up to this
    bed_level_db_min: float = -18.0  # music bed under speech, LU relative to the speech
    bed_level_db_max: float = -7.0
    hard_case_rate: float = 0.35  # share of segments that are tonal non-music / sparse music
    quiet_music_db: float = -24.0  # quiet-music hard case, LU relative to the programme level
    # Share of speech segments over background noise (0.3 before: real speech over kitchen,
    # street or machine noise came out as music, so more of it is shown).
    background_noise_rate: float = 0.5
    channel_effects: bool = True  # EQ, band-limiting, compressor, limiter, codec, noise floor
    noise_floor_db_max: float = -40.0  # loudest channel noise floor, dBFS
    # Providers by weight per role (`ROLES`: ordinary, solo/sparse and percussion-only music,
    # singing, speech, noise); None: the role's defaults that are installed. A provider named
    # here must be installed and of the role's kind.
    music_sources: dict[str, float] | None = None
    solo_sources: dict[str, float] | None = None
    percussion_sources: dict[str, float] | None = None
    singing_sources: dict[str, float] | None = None
    speech_sources: dict[str, float] | None = None
    noise_sources: dict[str, float] | None = None
    # The user's own recordings: folders per role (e.g. {music: [DIR]}; `musicdet synth
    # --sources`). A role's pool replaces its providers (music pools play the music role
    # only, not solo or percussion); corpus.json records each folder's files and their hash.
    pools: dict[str, list[str]] | None = None
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
        require(0.0 <= self.validation_fraction < 1.0, "validation_fraction",
                "0 <= validation_fraction < 1", self.validation_fraction)
        for role in ROLES:
            _check_weights(role, getattr(self, f"{role}_sources"))
        for role, folders in (self.pools or {}).items():
            require(role in ROLES, f"pools.{role}", f"a role ({', '.join(ROLES)})", role)
            require(bool(folders), f"pools.{role}", "at least one folder", folders)
            require(getattr(self, f"{role}_sources") is None, f"pools.{role}",
                    f"no {role}_sources as well (a pool replaces the role's providers)",
                    getattr(self, f"{role}_sources"))


def _check_weights(role: str, weights: dict[str, float] | None) -> None:
    """Known providers of the role's kind with non-negative weights, at least one positive
    (or none at all for an optional role: the corpus goes without it)."""
    if weights is None:
        return
    from musicdet.synth.sources import registry

    key, kind = f"{role}_sources", ROLES[role].kind
    known = sorted(name for name, source in registry().items() if source.info.kind == kind)
    for name, weight in weights.items():
        require(name in known, f"{key}.{name}", f"a {kind} source ({', '.join(known)})", name)
        require(weight >= 0, f"{key}.{name}", "weight >= 0", weight)
    require(sum(weights.values()) > 0 or (ROLES[role].optional and not weights), key,
            "at least one weight > 0", weights)
