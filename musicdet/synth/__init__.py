"""The embedded default corpus: deterministic synthetic broadcast programmes.

Programmes are sequences of music, speech, speech over music beds, jingles, ambiences and
tonal non-music sounds with cross-fades and a broadcast channel, labelled frame-exactly as
"music" (foreground or background) or "no-music"; see `SynthConfig` for the knobs. The audio
comes from source providers (`musicdet.synth.sources`): GM-rendered scores, arrangements, solo
and percussion music, the additive music, espeak speech, textured and procedural noise.
"""

from musicdet.synth.config import SynthConfig
from musicdet.synth.corpus import programme_seed, write_corpus
from musicdet.synth.programme import Segments, generate_programme

__all__ = ["Segments", "SynthConfig", "generate_programme", "programme_seed", "write_corpus"]
