"""Front-end options: per-window standardisation inside the model, PCEN for the Mel block.

Each must give training, evaluate and streaming detect the same input: padding is left out
of the window statistics, PCEN carries its filter state across streamed blocks, and older
model files (without the options) load as the paper's front end.
"""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile
import torch

from musicdet.audio import SAMPLE_RATE, load_audio
from musicdet.config import RunConfig
from musicdet.configtools import ConfigError
from musicdet.detect import Smoothing, detect_file, stream_features
from musicdet.features import (
    FeatureCache,
    FeatureConfig,
    MelScaler,
    Normalizer,
    extract_features,
    frame_features,
    mel_energies,
    signal_frames,
)
from musicdet.model import WINDOW_EPS, BiGRUDetector, ModelConfig, standardise_windows
from musicdet.modelfile import Detector, load_model, save_model
from musicdet.sequences import Example, random_batches, sequential_batches
from musicdet.train import PreparedData, train

PCEN = FeatureConfig(mel_scaling="pcen")
FRONT_ENDS = {"window": ("log", "window"), "pcen": ("pcen", "none"),
              "pcen+window": ("pcen", "window")}


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise, then a chord, then digital silence, then noise again (16 kHz)."""
    rng = np.random.default_rng(seed)
    time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * time) for f in (220.0, 277.2, 329.6)) / 6
    audio = np.where(time < seconds / 3, 0.2 * rng.standard_normal(len(time)), chord)
    audio[(time > 0.6 * seconds) & (time < 0.7 * seconds)] = 0.0
    return audio.astype(np.float32)


def tiny_detector(mel_scaling: str = "log", input_norm: str = "window",
                  window: int = 60) -> Detector:
    """An untrained 8-unit BiGRU with the given front end, its normaliser fitted on audio."""
    torch.manual_seed(0)
    config = RunConfig.from_dict({"features": {"mel_scaling": mel_scaling},
                                  "model": {"hidden_size": 8, "input_norm": input_norm},
                                  "training": {"sequence_frames": window}})
    normalizer = Normalizer.fit([extract_features(signal(4.0, 5), config.features)],
                                config.features)
    return Detector(BiGRUDetector(config.model).eval(), config, normalizer, {"val_threshold": 0.5})


# --------------------------------------------------------------------------- window norm


def test_window_standardisation_is_the_per_dimension_z_score() -> None:
    x = torch.randn(3, 50, 7, dtype=torch.float64) * 4 + 2
    expected = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + WINDOW_EPS)
    torch.testing.assert_close(standardise_windows(x), expected, rtol=0, atol=1e-12)


def test_window_statistics_leave_padding_out() -> None:
    """A 20-frame sequence padded to 50 with anything standardises as the 20 frames alone."""
    real = torch.randn(1, 20, 7, dtype=torch.float64)
    padded = torch.cat([real, torch.full((1, 30, 7), 9.0, dtype=torch.float64)], 1)
    both = torch.cat([padded, torch.randn(1, 50, 7, dtype=torch.float64)])
    out = standardise_windows(both, torch.tensor([20, 50]))
    torch.testing.assert_close(out[:1, :20], standardise_windows(real), rtol=0, atol=1e-12)
    assert not out[0, 20:].any()
    torch.testing.assert_close(out[1:], standardise_windows(both[1:]), rtol=0, atol=1e-12)


def test_window_norm_makes_the_model_blind_to_level_and_channel_gain() -> None:
    """A per-dimension offset (a level or EQ change of the log-Mel) leaves the logits as they
    were, a gain nearly (WINDOW_EPS is not scaled); without the option both change them."""
    x = torch.rand(2, 40, 140)
    gain, offset = torch.rand(140) * 3 + 0.5, torch.randn(140)
    for norm, tolerance in (("window", (1e-6, 1e-2)), ("none", (0.1, 0.1))):
        torch.manual_seed(0)
        model = BiGRUDetector(ModelConfig(hidden_size=8, input_norm=norm)).eval()
        with torch.no_grad():
            shifted = (model(x) - model(x + offset)).abs().max().item()
            scaled = (model(x) - model(x * gain)).abs().max().item()
        if norm == "window":
            assert shifted < tolerance[0] and scaled < tolerance[1]
        else:
            assert shifted > tolerance[0] and scaled > tolerance[1]


def test_batches_carry_each_sequences_real_frames() -> None:
    example = Example("a", np.ones((130, 3), np.float32), np.ones(130, np.float32),
                      np.ones(130, bool))
    lengths = [b.lengths.tolist() for b in sequential_batches([example], 2, 50)]
    assert lengths == [[50, 50], [30]]
    short = random_batches([example], 3, 3, 200, np.random.default_rng(0))
    assert next(short).lengths.tolist() == [130, 130, 130]


def test_training_and_validation_give_the_model_the_real_frames(tmp_path: Path,
                                                                monkeypatch) -> None:
    """Every minibatch of training and of the validation loss reaches the model with its
    lengths: the 90-frame validation file is one window of 60 and a padded one of 30."""
    seen: list[list[int]] = []

    class Spy(BiGRUDetector):
        def forward(self, features, lengths=None):
            seen.append(None if lengths is None else lengths.tolist())
            return super().forward(features, lengths)

    monkeypatch.setattr("musicdet.train.BiGRUDetector", Spy)
    rng = np.random.default_rng(0)

    def example(frames: int) -> Example:
        labels = (np.arange(frames) % 40 < 20).astype(np.float32)
        return Example("x", rng.normal(size=(frames, 140)).astype(np.float32), labels,
                       np.ones(frames, bool))

    config = RunConfig.from_dict({
        "model": {"hidden_size": 4, "input_norm": "window"}, "loss": {"type": "ce"},
        "data": {"cache_dir": str(tmp_path / "cache")},
        "training": {"epochs": 1, "batch_size": 2, "sequences_per_epoch": 2,
                     "sequence_frames": 60}})
    train(config, tmp_path / "run", data=PreparedData([example(45)], [example(90)]),
          progress=False)
    assert seen[0] == [45, 45]  # training: the 45-frame file padded to 60, twice
    assert [60, 30] in seen  # the validation loss's sequential windows


# --------------------------------------------------------------------------- PCEN


def test_pcen_is_librosa_pcen_of_the_documented_input() -> None:
    audio = signal(3.0)
    energies = mel_energies(audio, PCEN).astype(np.float64)
    amplitude = np.sqrt(np.where(energies < PCEN.log_floor, 0.0, energies)) * 2.0**31
    t_frames = 0.4 * SAMPLE_RATE / PCEN.hop_length
    b = (np.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)
    zi = scipy.signal.lfilter_zi([b], [1, b - 1]) * amplitude[:1]
    expected = librosa.pcen(amplitude, sr=SAMPLE_RATE, hop_length=160, gain=0.98, bias=2.0,
                            power=0.5, time_constant=0.4, eps=1e-6, axis=0, zi=zi)
    features = extract_features(audio, PCEN)
    np.testing.assert_allclose(features[:, :128], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(features[:, 128:], extract_features(audio)[:, 128:])


def test_pcen_silence_is_zero_and_left_out_of_the_fit() -> None:
    """Digital silence (0.6–0.7 of the signal) gives PCEN 0 in every band, and signal_frames
    finds the same silent frames as under log-Mel."""
    audio = signal(3.0)
    pcen, log = extract_features(audio, PCEN), extract_features(audio)
    silent = ~signal_frames(pcen, PCEN)
    np.testing.assert_array_equal(silent, ~signal_frames(log, FeatureConfig()))
    assert 20 < silent.sum() < 40 and not pcen[silent][3:-3, :128].any()
    assert (pcen[~silent, :128].max(axis=1) > 0).all()


def test_pcen_state_carries_across_blocks() -> None:
    frames = frame_features(signal(3.0), PCEN)
    whole = MelScaler(PCEN)(frames)
    scaler = MelScaler(PCEN)
    pieces = [scaler(frames[i : i + 37]) for i in range(0, len(frames), 37)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    fresh = MelScaler(PCEN)(frames[37:])  # a new filter on the same frames is not the same
    assert np.abs(fresh - whole[37:]).max() > 0.1


@pytest.mark.parametrize("size", [500, 1601, 16000])
def test_stream_features_equal_whole_signal_with_pcen(size: int) -> None:
    audio = signal(3.0) + np.float32(1e-3)
    blocks = [audio[i : i + size] for i in range(0, len(audio), size)]
    streamed = np.concatenate(list(stream_features(blocks, PCEN)))
    np.testing.assert_allclose(streamed, extract_features(audio, PCEN), rtol=0, atol=1e-6)


def test_pcen_features_have_their_own_cache_key(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    soundfile.write(path, signal(1.0), SAMPLE_RATE)
    cache = FeatureCache(tmp_path / "cache")
    assert cache.key(path, PCEN) != cache.key(path, FeatureConfig())
    audio = load_audio(path)
    np.testing.assert_array_equal(cache.load(path, PCEN), extract_features(audio, PCEN))
    np.testing.assert_array_equal(cache.load(path), extract_features(audio))


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("front", list(FRONT_ENDS))
@pytest.mark.parametrize("block_seconds", [0.7, 2.0])
def test_streaming_equals_whole_file(tmp_path: Path, front: str, block_seconds: float) -> None:
    detector = tiny_detector(*FRONT_ENDS[front])
    path = tmp_path / "a.wav"
    soundfile.write(path, signal(9.37, 1), SAMPLE_RATE)
    whole = detector.probabilities(extract_features(load_audio(path), detector.config.features))
    result = detect_file(detector, path, Smoothing(), block_seconds=block_seconds)
    np.testing.assert_allclose(result.probabilities, whole, rtol=0, atol=1e-6)


def test_options_round_trip_through_the_model_file(tmp_path: Path) -> None:
    detector = tiny_detector("pcen", "window")
    path = save_model(tmp_path / "m.pt", detector.model, detector.config, detector.normalizer,
                      detector.metrics)
    loaded = load_model(path)
    assert (loaded.config.features.mel_scaling, loaded.config.model.input_norm) == \
        ("pcen", "window")
    features = extract_features(signal(2.0), loaded.config.features)
    np.testing.assert_array_equal(loaded.logits(features), detector.logits(features))


def test_older_model_files_load_as_the_papers_front_end(tmp_path: Path) -> None:
    """A model file written before the options existed has neither key: it is log-Mel without
    window standardisation, whatever the defaults are now."""
    detector = tiny_detector("log", "none")
    path = save_model(tmp_path / "m.pt", detector.model, detector.config, detector.normalizer,
                      detector.metrics)
    payload = torch.load(path, weights_only=True)
    meta = json.loads(payload["meta"])
    del meta["config"]["model"]["input_norm"], meta["config"]["features"]["mel_scaling"]
    torch.save({**payload, "meta": json.dumps(meta)}, path)
    loaded = load_model(path)
    assert (loaded.config.features.mel_scaling, loaded.config.model.input_norm) == \
        ("log", "none")


@pytest.mark.parametrize(("section", "key"), [("model", "input_norm"),
                                              ("features", "mel_scaling")])
def test_unknown_option_values_are_refused_naming_the_key(section: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{section}.{key}: expected one of .*got 'zscore'"):
        RunConfig.from_dict({section: {key: "zscore"}})
