"""Voice and channel augmentation shared by every speech provider's draw (`converse`).

A draw has one or two speakers taking turns. Each speaker is a random `Speaker` change of the
provider's voice: speaking rate (phase-vocoder time stretch, pitch kept), pitch shift and a
formant (vocal-tract length) shift, made independent by warping each STFT frame's cepstral
envelope before resampling. The whole draw then goes through one random `Channel`: room
reverb and a microphone or telephone band. Every choice comes from the generator, so a draw
is a pure function of its state.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import soxr

from musicdet.synth.dsp import SAMPLE_RATE, band, db_to_gain, fade, set_level
from musicdet.synth.sources.gm import reverb
from musicdet.synth.speech import Say, talk

N_FFT, HOP = 1024, 256  # STFT of the voice changes: 64 ms frames (resolves 80 Hz harmonics)
LIFTER = 28  # cepstral coefficients in a frame's envelope (below the period of a 500 Hz voice)
TWO_SPEAKER_RATE = 0.3  # share of draws that are a dialogue
TELEPHONE_RATE = 0.15  # share of draws heard through a telephone band (300-3400 Hz)
REVERB_RATE = 0.5  # share of draws in an audible room

# Pitch range of `random_speaker` (semitones); a provider with one base voice widens it towards
# the other sex. The formant factor follows a third of the pitch shift, ± FORMANT_SPREAD.
SEMITONES = (-4.0, 4.0)
FORMANT_SPREAD = 0.06


@dataclass(frozen=True)
class Speaker:
    """A change of voice: speaking rate (1.2: 20 % faster), pitch shift (semitones) and
    formant frequency factor (1.1: 10 % higher formants, a shorter vocal tract)."""

    rate: float
    semitones: float
    formant: float


@dataclass(frozen=True)
class Channel:
    """Where a voice is heard: room reverb (``rt60_s`` 0: dry, ``wet`` share) and a
    Butterworth band (edges in Hz, None: open) of ``order``."""

    rt60_s: float
    wet: float
    low_hz: float | None
    high_hz: float | None
    order: int = 2


def random_speaker(rng: np.random.Generator,
                   semitones: tuple[float, float] = SEMITONES) -> Speaker:
    """A plausible speaker: rate 0.85-1.2, pitch shift in ``semitones``, formants moved by a
    third of it (higher voices have shorter vocal tracts: +9 semitones, ×1.19) ± 6 %."""
    shift = rng.uniform(*semitones)
    formant = 2 ** (shift / 36) * rng.uniform(1 - FORMANT_SPREAD, 1 + FORMANT_SPREAD)
    return Speaker(rng.uniform(0.85, 1.2), shift, formant)


def random_channel(rng: np.random.Generator) -> Channel:
    """A studio, room or telephone: half of them with reverb (RT60 0.2-0.9 s)."""
    rt60_s, wet = ((rng.uniform(0.2, 0.9), rng.uniform(0.05, 0.3)) if rng.random() < REVERB_RATE
                   else (0.0, 0.0))
    if rng.random() < TELEPHONE_RATE:
        return Channel(rt60_s, wet, 300.0, 3400.0, order=4)
    return Channel(rt60_s, wet, rng.uniform(50.0, 150.0),
                   (None, rng.uniform(4500.0, 7500.0))[rng.integers(2)])


def transform(audio: np.ndarray, speaker: Speaker) -> np.ndarray:
    """``audio`` (16 kHz) spoken by ``speaker``: ``len / rate`` samples, float64.

    The envelope is warped by formant / pitch, the result stretched by pitch / rate and
    resampled by the pitch factor, which scales every frequency: the harmonics end at the
    pitch factor, the formants at the formant factor, the length at 1 / rate.
    """
    if len(audio) < N_FFT:
        return np.asarray(audio, np.float64)  # too short to change: a click or silence
    pitch = 2 ** (speaker.semitones / 12)
    stft = librosa.stft(np.asarray(audio, np.float64), n_fft=N_FFT, hop_length=HOP)
    stft = warp_envelope(stft, speaker.formant / pitch)
    stretched = librosa.phase_vocoder(stft, rate=speaker.rate / pitch, hop_length=HOP)
    length = round(len(audio) * pitch / speaker.rate)
    out = librosa.istft(stretched, hop_length=HOP, n_fft=N_FFT, length=length)
    return soxr.resample(out, SAMPLE_RATE * pitch, SAMPLE_RATE)


def warp_envelope(stft: np.ndarray, factor: float) -> np.ndarray:
    """``stft`` (bins × frames of an ``N_FFT`` STFT) with each frame's cepstral envelope moved
    up in frequency by ``factor``, the harmonics left where they are."""
    if factor == 1.0:
        return stft
    cepstrum = np.fft.irfft(np.log(np.abs(stft) + 1e-9), n=N_FFT, axis=0)
    cepstrum[LIFTER:N_FFT - LIFTER + 1] = 0.0
    envelope = np.fft.rfft(cepstrum, axis=0).real  # log magnitude envelope
    source = np.minimum(np.arange(len(envelope)) / factor, len(envelope) - 1.0)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, len(envelope) - 1)
    weight = (source - low)[:, None]
    warped = (1 - weight) * envelope[low] + weight * envelope[high]
    return stft * np.exp(np.clip(warped - envelope, -9.0, 9.0))


def through(rng: np.random.Generator, audio: np.ndarray, channel: Channel) -> np.ndarray:
    """``audio`` in ``channel``'s room and band (the reverb's noise is drawn from ``rng``)."""
    out = reverb(rng, audio, channel.rt60_s, channel.wet) if channel.rt60_s > 0 else audio
    return band(out, channel.low_hz, channel.high_hz, channel.order)


def converse(rng: np.random.Generator, seconds: float, say: Say,
             semitones: tuple[float, float] = SEMITONES) -> np.ndarray:
    """``seconds`` of one or two augmented speakers taking turns in one channel: float32 at
    16 kHz, -20 dBFS. ``say(rng, speaker)`` gives one raw utterance (16 kHz) of speaker 0 or
    1 of the provider's voices; each speaker gets a `random_speaker` change."""
    count = 2 if rng.random() < TWO_SPEAKER_RATE else 1
    speakers = [random_speaker(rng, semitones) for _ in range(count)]

    def changed(rng: np.random.Generator, index: int) -> np.ndarray:
        utterance = set_level(transform(say(rng, index), speakers[index]), -20.0)
        return utterance * db_to_gain(rng.uniform(-2.0, 2.0))

    audio = talk(rng, seconds, changed, count)
    audio = through(rng, audio, random_channel(rng))
    return set_level(fade(audio, 0.02, 0.05), -20.0).astype(np.float32)
