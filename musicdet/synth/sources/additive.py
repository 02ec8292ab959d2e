"""The procedural additive music (`musicdet.synth.music`) as providers: wavetable,
Karplus-Strong and bell instruments in ten styles, and sparse notes. Every draw composes new
material, so every split draws from the same generator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from musicdet import __version__
from musicdet.synth import music
from musicdet.synth.sources import Source, SourceInfo, Split, register


class AdditiveMusic(Source):
    """Music made by ``render``: (rng, seconds) -> float32 16 kHz audio at -20 dBFS."""

    def __init__(self, name: str, render: Callable[[np.random.Generator, float], np.ndarray]
                 ) -> None:
        self._info = SourceInfo(name, "music", f"musicdet {__version__}", "MIT")
        self._render = render

    @property
    def info(self) -> SourceInfo:
        return self._info

    def available(self) -> bool:
        return True

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        return self._render(rng, seconds)


register(AdditiveMusic("additive", music.render_music))
register(AdditiveMusic("additive-sparse", music.sparse_music))
register(AdditiveMusic("additive-percussion",
                       lambda rng, seconds: music.render_music(rng, seconds, "percussion")))
