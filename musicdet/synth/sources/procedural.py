"""Today's built-in speech and noise wrapped as providers: espeak-ng, the formant fallback and
the procedural ambiences. Their material is generated afresh per draw (random sentences,
voice parameters and noise), so every split draws from the same generators; the speech is
varied further per draw by `voice.converse` (rate, pitch, formants, room, band)."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from musicdet import __version__
from musicdet.synth import sounds, speech, voice
from musicdet.synth.sources import Source, SourceInfo, Split, register


class EspeakSpeech(Source):
    """espeak-ng speech through ``espeakng_loader`` (seven languages, 40 voice variants)."""

    @property
    def info(self) -> SourceInfo:
        try:
            version = f"espeakng-loader {importlib.metadata.version('espeakng-loader')}"
        except importlib.metadata.PackageNotFoundError:
            version = "unavailable"
        return SourceInfo("espeak", "speech", version, "GPL-3.0-or-later (espeak-ng)")

    def available(self) -> bool:
        return speech.espeak_available()

    def why_unavailable(self) -> str:
        return "espeak-ng cannot be loaded (pip install espeakng-loader)"

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        speakers = [speech.random_speaker(rng) for _ in range(2)]  # speakers 0 and 1
        return voice.converse(rng, seconds,
                              lambda r, k: speech.espeak_utterance(r, speakers[k]))


class FormantSpeech(Source):
    """Speech-like consonant-vowel phrases from a numpy formant synthesiser."""

    info = SourceInfo("formant-speech", "speech", f"musicdet {__version__}", "MIT")

    def available(self) -> bool:
        return True

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        base_f0 = rng.uniform(90, 240)
        return voice.converse(rng, seconds, lambda r, _: speech.formant_phrase(
            r, base_f0, int(r.integers(3, 12))))


class ProceduralNoise(Source):
    """Applause, street traffic and crowd murmur (espeak talkers) made from noise."""

    info = SourceInfo("procedural-noise", "noise", f"musicdet {__version__}", "MIT")

    def available(self) -> bool:
        return True

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        return sounds.ambience(rng, seconds)


for _source in (EspeakSpeech(), FormantSpeech(), ProceduralNoise()):
    register(_source)
