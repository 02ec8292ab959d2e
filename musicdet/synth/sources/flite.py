"""English speech from CMU Flite's built-in voices (Debian ``flite``), run as a subprocess.

Flite's voices come from four speakers: kal (diphones, as ``kal`` at 8 kHz and ``kal16``),
awb (Scottish male), rms (US male) and slt (US female), all CMU ARCTIC / CMU Flite. The
material split is by speaker, and the sentences follow the pooled split (`tts.pool_texts`),
so no speaker and no sentence is shared between splits. Four speakers are too few to split by
share (hashing at 80/10/10 gives all four to training), so they are ranked by the split hash
instead: the first is the test speaker, the second the validation speaker, the others train.
An utterance (voice, sentence, duration stretch 0.9-1.15 from a hash) is rendered once,
≈ 80× realtime, and cached (`tts.utterance`); draws vary it with `voice.converse`.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from musicdet.synth import voice
from musicdet.synth.dsp import SAMPLE_RATE
from musicdet.synth.sources import SPLITS, Source, SourceInfo, Split, register, tts

BINARY = "flite"
# Built-in voice -> its speaker (``awb_time`` speaks only clock times and is left out).
VOICES = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}
LICENCE = "BSD-style (CMU Flite; voices from CMU ARCTIC and CMU kal diphones)"
_TIMEOUT_S = 60


@functools.cache
def flite_version() -> str:
    """The installed flite's version line, e.g. "flite-2.2-current Sep 2018"."""
    result = subprocess.run([BINARY, "--version"], capture_output=True, text=True,
                            timeout=_TIMEOUT_S)  # exits 1 after printing it
    lines = [line.strip() for line in result.stdout.splitlines() if "version:" in line]
    return lines[0].removeprefix("version:").split(" (")[0].strip() if lines else "unknown"


@functools.cache
def installed_voices() -> tuple[str, ...]:
    """The `VOICES` that this flite lists (``flite -lv``)."""
    result = subprocess.run([BINARY, "-lv"], capture_output=True, text=True, check=True,
                            timeout=_TIMEOUT_S)
    listed = set(result.stdout.removeprefix("Voices available:").split())
    return tuple(name for name in VOICES if name in listed)


def speaker_splits(speakers: list[str]) -> dict[str, Split]:
    """Each speaker's split: ranked by the hash of "flite/NAME", the first is test, the second
    validation, the rest train (so every split has a speaker from three on)."""
    ranked = sorted(speakers, key=lambda s: hashlib.sha256(f"flite/{s}".encode()).digest())
    order = [SPLITS[2], SPLITS[1]]
    return {s: order[i] if i < len(order) else SPLITS[0] for i, s in enumerate(ranked)}


def split_voices(split: Split) -> list[str]:
    """The installed voices whose speaker belongs to ``split``."""
    splits = speaker_splits(sorted(set(VOICES.values())))
    return [name for name in installed_voices() if splits[VOICES[name]] == split]


def speak(name: str, text: str) -> np.ndarray:
    """``text`` spoken by flite voice ``name``, cached; float32 at 16 kHz."""
    digest = hashlib.sha256(f"{name}|{text}".encode()).digest()
    stretch = round(0.9 + 0.25 * int.from_bytes(digest[:4], "big") / 2**32, 3)
    key = f"flite|{flite_version()}|{name}|{text}|{stretch:.3f}"
    return tts.utterance(key, lambda: render(name, text, stretch))


def render(name: str, text: str, stretch: float) -> np.ndarray:
    """``text`` by flite voice ``name`` with ``duration_stretch`` ``stretch``: float64 at
    16 kHz, raw level."""
    with tempfile.TemporaryDirectory(prefix="musicdet-flite-") as folder:
        wav = Path(folder) / "utterance.wav"
        result = subprocess.run([BINARY, "-voice", name, "--setf", f"duration_stretch={stretch}",
                                 "-t", text, "-o", str(wav)], capture_output=True, text=True,
                                timeout=_TIMEOUT_S)
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"flite -voice {name}: exit {result.returncode}: "
                               f"{result.stderr.strip()[:200]}")
        audio, rate = sf.read(wav, dtype="float64")
    return audio if rate == SAMPLE_RATE else soxr.resample(audio, rate, SAMPLE_RATE)


class FliteSpeech(Source):
    """Flite's built-in voices speaking the split's pooled sentences (module docstring)."""

    @property
    def info(self) -> SourceInfo:
        version = flite_version() if self.available() else "unavailable"
        return SourceInfo("flite", "speech", version, LICENCE)

    def available(self) -> bool:
        return shutil.which(BINARY) is not None

    def why_unavailable(self) -> str:
        return "needs the flite program on PATH (Debian: apt-get install flite)"

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        voices = split_voices(split)
        if not voices:
            raise RuntimeError(f"flite: no installed voice of the {split} speakers "
                               f"({', '.join(installed_voices())} installed)")
        texts = tts.pool_texts(split)
        chosen = [voices[rng.integers(len(voices))] for _ in range(2)]  # speakers 0 and 1
        return voice.converse(rng, seconds,
                              lambda r, k: speak(chosen[k], texts[r.integers(len(texts))]))


register(FliteSpeech())
