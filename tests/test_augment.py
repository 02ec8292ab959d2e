"""Training-time augmentation (musicdet/augment.py): off changes nothing; gain, masks and mixing
each change what they should and only that, deterministically per seed; a training run with
augmentation resumes bit-identically; bad options are one-line errors; a study samples them."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from guarantees import assert_resumed_run_equals_uninterrupted

from musicdet.augment import NATS_PER_DB, AugmentConfig, Augmenter, mask, stretch
from musicdet.config import RunConfig
from musicdet.configtools import ConfigError
from musicdet.features import Normalizer
from musicdet.model import BiGRUDetector, standardise_windows
from musicdet.modelfile import load_model
from musicdet.sequences import Batch, Example, random_batches
from musicdet.train import AUGMENT_STREAM, PreparedData, _normalised, augmenter_of, train
from search.space import describe, logged_params, run_config_of, sample
from search.spec import parse_spec

N_MELS, DIMS, FRAMES = 128, 140, 50
SPAN = 20.0  # natural-log energy range of the Mel block
ALL_ON = {"gain_db": 6.0, "time_masks": 2, "time_mask_frames": 10, "freq_masks": 2,
          "freq_mask_bins": 20, "mix_prob": 0.5, "mix_level_db": 12.0, "stretch": 0.1}


def make_batch(seed: int = 0, lengths: tuple[int, ...] = (50, 50, 30, 50)) -> Batch:
    """Scaled features in (0.05, 0.95) (chroma rows summing to one before scaling), labels,
    masks, zero padding after each length."""
    rng = np.random.default_rng(seed)
    size = len(lengths)
    features = rng.uniform(0.05, 0.95, (size, FRAMES, DIMS)).astype(np.float32)
    labels = rng.integers(0, 2, (size, FRAMES)).astype(np.float32)
    known = rng.random((size, FRAMES)) < 0.8
    real = np.arange(FRAMES)[None] < np.array(lengths)[:, None]
    features *= real[..., None]
    return Batch(torch.tensor(features), torch.tensor(labels * real),
                 torch.tensor(known & real), torch.tensor(lengths, dtype=torch.int64))


def augmenter(**options: float) -> Augmenter:
    return Augmenter(AugmentConfig(**options), N_MELS, SPAN)


def test_off_draws_nothing_and_changes_nothing() -> None:
    assert not AugmentConfig().active
    assert RunConfig().augment == AugmentConfig()
    assert augmenter_of(RunConfig(), Normalizer([N_MELS, 12], [0.0, 0.0], [1.0, 1.0])) is None
    batch, rng = make_batch(), np.random.default_rng(5)
    out = augmenter()(batch, rng)
    assert rng.random() == np.random.default_rng(5).random()  # no number drawn
    assert all(torch.equal(getattr(out, k), getattr(batch, k))
               for k in ("features", "labels", "mask", "lengths"))


def test_gain_shifts_the_mel_bands_of_real_frames_by_the_level_and_leaves_the_rest() -> None:
    batch = make_batch()
    gain = np.array([6.0, -3.0, 10.0, 0.0])
    out = augmenter(gain_db=6.0).gain(batch.features, batch.lengths, gain)
    shift = gain * NATS_PER_DB / SPAN  # scaled units of the dB offset
    real = np.arange(FRAMES)[None] < batch.lengths.numpy()[:, None]
    before, after = batch.features.numpy(), out.numpy()
    expected = np.clip(before[..., :N_MELS] + shift[:, None, None], 0.0, 1.0)
    np.testing.assert_allclose(after[..., :N_MELS][real], expected[real], atol=1e-6)
    assert (after[..., :N_MELS] == 1.0).any()  # 10 dB pushed some values past the maximum
    assert np.array_equal(after[..., N_MELS:], before[..., N_MELS:])  # chroma: level-free
    assert np.array_equal(after[~real], before[~real])  # padding stays zero
    assert math.isclose(6.0 * NATS_PER_DB, math.log(10 ** 0.6), rel_tol=1e-12)  # power dB


def test_masks_set_their_spans_to_the_window_mean_and_touch_nothing_else() -> None:
    batch = make_batch(lengths=(50, 30, 50, 50))
    time_spans = np.array([[[5, 10], [40, 0]], [[25, 10], [0, 0]], [[0, 0], [0, 0]],
                           [[0, 0], [0, 0]]])  # window 1: 25..34, of which 30.. is padding
    freq_spans = np.array([[[0, 0]], [[0, 0]], [[100, 28]], [[0, 0]]])
    out = mask(batch.features, batch.lengths, time_spans, freq_spans).numpy()
    before = batch.features.numpy()
    np.testing.assert_allclose(out[0, 5:15], np.broadcast_to(
        np.concatenate([before[0, :5], before[0, 15:]]).mean(0), (10, DIMS)), atol=1e-6)
    np.testing.assert_allclose(out[1, 25:30], np.broadcast_to(before[1, :25].mean(0), (5, DIMS)),
                               atol=1e-6)
    np.testing.assert_allclose(out[2, :, 100:128], np.broadcast_to(
        before[2, :, 100:128].mean(0), (FRAMES, 28)), atol=1e-6)
    changed = np.zeros(out.shape, bool)
    changed[0, 5:15], changed[1, 25:30], changed[2, :, 100:128] = True, True, True
    assert np.array_equal(out[~changed], before[~changed])  # padding, chroma of window 2, ...
    # the mean keeps each dimension's window mean: input_norm window standardises masked
    # values to 0 and leaves the other frames as they were
    standard_before = standardise_windows(batch.features, batch.lengths).numpy()
    standard_after = standardise_windows(torch.tensor(out), batch.lengths).numpy()
    assert np.abs(standard_after[0, 5:15]).max() < 1e-3  # in window standard deviations
    assert np.abs(standard_after[2, :, 100:128]).max() < 1e-3  # float rounding of the mean
    np.testing.assert_allclose(standard_after[2, :, :100], standard_before[2, :, :100])


def test_stretch_repeats_or_drops_frames_with_their_labels_and_shortens_a_faster_window():
    batch = make_batch(lengths=(50, 50, 30, 50))
    out = stretch(batch, np.array([1.0, 2.0, 0.5, 1.1]))
    assert out.lengths.tolist() == [50, 25, 50, 46]  # ceil(length / factor), at most 50
    for window, source in ((0, np.arange(50)), (1, np.arange(0, 50, 2)),
                           (2, np.arange(50) // 2), (3, np.floor(np.arange(46) * 1.1))):
        source = source.astype(int)
        real = len(source)
        assert torch.equal(out.features[window, :real], batch.features[window, source])
        assert torch.equal(out.labels[window, :real], batch.labels[window, source])
        assert torch.equal(out.mask[window, :real], batch.mask[window, source])
        assert not out.features[window, real:].any() and not out.mask[window, real:].any()
        assert not out.labels[window, real:].any()


def unscaled(scaled: np.ndarray) -> np.ndarray:
    return -10.0 + SPAN * scaled  # the Mel block's minimum is -10 (cancels in the mix)


def test_mixing_a_window_with_itself_at_0_db_doubles_its_energy() -> None:
    batch = make_batch()
    out = augmenter(mix_prob=1.0).mix(batch, np.array([0]), np.array([0, 0, 0, 0]),
                                      np.zeros(4))
    before, after = batch.features.numpy()[0], out.features.numpy()[0]
    below = before[:, :N_MELS] < 1.0 - math.log(2.0) / SPAN  # not clipped at the maximum
    np.testing.assert_allclose(unscaled(after[:, :N_MELS])[below],
                               unscaled(before[:, :N_MELS])[below] + math.log(2.0), atol=1e-5)
    assert (after[:, :N_MELS][~below] == 1.0).all()
    np.testing.assert_allclose(after[:, N_MELS:], before[:, N_MELS:], atol=1e-6)


def test_mix_adds_energies_averages_chroma_by_energy_and_ors_the_labels() -> None:
    batch = make_batch(lengths=(50, 50, 30, 50))
    level = np.array([-6.0, 0.0, 0.0, 0.0])
    out = augmenter(mix_prob=1.0).mix(batch, np.array([0, 3]), np.array([2, 0, 0, 1]), level)
    a, b = batch.features.numpy()[0], batch.features.numpy()[2]  # window 2 has 30 real frames
    gain = 10 ** (level[0] / 10)
    energy_a, energy_b = np.exp(unscaled(a[:30, :N_MELS])), np.exp(unscaled(b[:30, :N_MELS]))
    exact = np.log(energy_a + gain * energy_b)
    mixed = out.features.numpy()[0]
    fits = exact < unscaled(1.0)
    np.testing.assert_allclose(unscaled(mixed[:30, :N_MELS])[fits], exact[fits], atol=1e-4)
    share = gain * energy_b.sum(1) / (energy_a.sum(1) + gain * energy_b.sum(1))
    chroma_a, chroma_b = a[:30, N_MELS:], b[:30, N_MELS:]
    np.testing.assert_allclose(mixed[:30, N_MELS:],
                               chroma_a + share[:, None] * (chroma_b - chroma_a), atol=1e-5)
    assert np.array_equal(mixed[30:], a[30:])  # where the other window is padding: silence
    labels_a, labels_b = batch.labels.numpy()[0], batch.labels.numpy()[2]
    known_a, known_b = batch.mask.numpy()[0], batch.mask.numpy()[2]
    assert np.array_equal(out.labels.numpy()[0, :30], np.maximum(labels_a, labels_b)[:30])
    assert np.array_equal(out.labels.numpy()[0, 30:], labels_a[30:])
    expected_known = (known_a & known_b) | (known_a & (labels_a == 1)) | (known_b & (labels_b == 1))
    assert np.array_equal(out.mask.numpy()[0, :30], expected_known[:30])
    assert np.array_equal(out.mask.numpy()[0, 30:], known_a[30:])
    for unchanged in (1, 2):  # not chosen (window 2 was only a partner)
        assert torch.equal(out.features[unchanged], batch.features[unchanged])
        assert torch.equal(out.labels[unchanged], batch.labels[unchanged])
        assert torch.equal(out.mask[unchanged], batch.mask[unchanged])
    assert torch.equal(out.lengths, batch.lengths)


def test_mixing_a_padded_window_keeps_its_padding() -> None:
    batch = make_batch(lengths=(30, 50))
    out = augmenter(mix_prob=1.0).mix(batch, np.array([0]), np.array([1, 0]), np.zeros(2))
    assert not out.features[0, 30:].any() and not out.labels[0, 30:].any()
    assert not out.mask[0, 30:].any()
    assert not torch.equal(out.features[0, :30], batch.features[0, :30])


def test_augmentation_is_deterministic_per_seed_and_changes_every_option() -> None:
    batch = make_batch()
    all_on = augmenter(**ALL_ON)
    first = all_on(batch, np.random.default_rng([1, 2, 3]))
    again = all_on(batch, np.random.default_rng([1, 2, 3]))
    other = all_on(batch, np.random.default_rng([1, 2, 4]))
    assert torch.equal(first.features, again.features) and torch.equal(first.mask, again.mask)
    assert not torch.equal(first.features, other.features)
    for option, value in ALL_ON.items():
        if option in ("time_mask_frames", "freq_mask_bins", "mix_level_db"):
            continue
        alone = augmenter(**{option: value})(batch, np.random.default_rng(0))
        assert not torch.equal(alone.features, batch.features), option
        relabels = option in ("mix_prob", "stretch")
        assert torch.equal(alone.labels, batch.labels) != relabels, option


def test_mix_partners_are_other_windows() -> None:
    batch = make_batch(lengths=(50, 50))
    seen = augmenter(mix_prob=1.0)(batch, np.random.default_rng(0))
    assert not torch.equal(seen.features[0], batch.features[0])
    single = make_batch(lengths=(50,))  # no other window to mix with
    assert torch.equal(augmenter(mix_prob=1.0)(single, np.random.default_rng(0)).features,
                       single.features)


@pytest.mark.parametrize(("options", "message"), [
    ({"time_masks": -1}, "augment.time_masks: `time_masks >= 0` must hold, but got -1"),
    ({"freq_masks": 1.5}, "augment.freq_masks: expected int, got float 1.5"),
    ({"gain_db": -2}, "augment.gain_db: `0 <= gain_db <= 60` must hold"),
    ({"mix_prob": 1.5}, "augment.mix_prob: `0 <= mix_prob <= 1` must hold, but got 1.5"),
    ({"mix_level_db": 100}, "augment.mix_level_db: `0 <= mix_level_db <= 60` must hold"),
    ({"time_mask_frames": 0}, "augment.time_mask_frames: `time_mask_frames >= 1` must hold"),
    ({"time_masks": 1, "time_mask_frames": 301}, "augment.time_mask_frames: "
     "`time_mask_frames <= training.sequence_frames` must hold, but got (301, 300)"),
    ({"freq_masks": 1, "freq_mask_bins": 129}, "augment.freq_mask_bins: "
     "`freq_mask_bins <= features.n_mels` must hold"),
    ({"stretch": 0.6}, "augment.stretch: `0 <= stretch <= 0.5` must hold, but got 0.6"),
    ({"shift": 1}, "augment.shift: unknown key; expected one of gain_db,"),
])
def test_bad_options_are_one_line_errors_naming_the_key(options, message) -> None:
    with pytest.raises(ConfigError) as error:
        RunConfig.from_dict({"augment": options})
    assert str(error.value).startswith(message) and len(str(error.value).splitlines()) == 1


def test_gain_and_mixing_need_log_mel() -> None:
    pcen = {"features": {"mel_scaling": "pcen"}}
    with pytest.raises(ConfigError, match=r"^augment.mix_prob: `gain and mixing only with "):
        RunConfig.from_dict({**pcen, "augment": {"mix_prob": 0.5}})
    assert RunConfig.from_dict({**pcen, "augment": {"time_masks": 2}}).augment.active


def handmade_data() -> PreparedData:
    """Random log-Mel-like features of 2 training and 2 validation files, music in blocks."""
    rng = np.random.default_rng(0)

    def example(name: str, frames: int) -> Example:
        labels = (np.arange(frames) // 70 % 2).astype(np.float32)
        features = rng.normal(-5.0, 2.0, (frames, DIMS)).astype(np.float32)
        features[:, :N_MELS] += 3.0 * labels[:, None]
        return Example(name, features, labels, np.ones(frames, bool))

    return PreparedData([example("a", 400), example("b", 300)],
                        [example("c", 200), example("d", 150)])


def tiny_config(**augment: float) -> RunConfig:
    return RunConfig.from_dict({
        "seed": 4, "model": {"hidden_size": 8}, "loss": {"type": "ce"}, "augment": augment,
        "training": {"epochs": 2, "batch_size": 4, "sequence_frames": 60,
                     "sequences_per_epoch": 8},
    })


@pytest.fixture
def model_inputs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[torch.Tensor]]:
    """Every input the detector sees while training ("train") and scoring ("eval")."""
    seen: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}
    forward = BiGRUDetector.forward

    def spy(self: BiGRUDetector, features: torch.Tensor, lengths: torch.Tensor | None = None
            ) -> torch.Tensor:
        seen["train" if self.training else "eval"].append(features.clone())
        return forward(self, features, lengths)

    monkeypatch.setattr(BiGRUDetector, "forward", spy)
    return seen


def expected_batches(config: RunConfig, data: PreparedData, epoch: int) -> list[Batch]:
    """What an epoch draws without augmentation: random_batches of the (seed, epoch) stream."""
    normalizer = Normalizer.fit((e.features for e in data.train), config.features)
    training = config.training
    return list(random_batches(_normalised(data.train, normalizer),
                               training.sequences_per_epoch, training.batch_size,
                               training.sequence_frames,
                               np.random.default_rng([config.seed, epoch])))


def test_training_sees_todays_batches_when_off_and_augmented_ones_only_in_training(
        tmp_path: Path, model_inputs: dict[str, list[torch.Tensor]]) -> None:
    data = handmade_data()
    train(tiny_config(), tmp_path / "off", data=data, progress=False)
    off = {k: list(v) for k, v in model_inputs.items()}
    clean = [b for epoch in (1, 2) for b in expected_batches(tiny_config(), data, epoch)]
    assert len(off["train"]) == len(clean) == 4
    assert all(torch.equal(seen, b.features) for seen, b in zip(off["train"], clean, strict=True))
    for inputs in model_inputs.values():
        inputs.clear()
    config = tiny_config(**ALL_ON)
    train(config, tmp_path / "on", data=data, progress=False)
    normalizer = Normalizer.fit((e.features for e in data.train), config.features)
    augment = augmenter_of(config, normalizer)
    assert augment is not None and augment.span == normalizer.maximum[0] - normalizer.minimum[0]
    for epoch, first in ((1, 0), (2, 2)):
        rng = np.random.default_rng([config.seed, epoch, AUGMENT_STREAM])
        for step, batch in enumerate(expected_batches(config, data, epoch)):
            expected = augment(batch, rng).features
            assert torch.equal(model_inputs["train"][first + step], expected)
            assert not torch.equal(expected, batch.features)
    assert len(model_inputs["eval"]) == len(off["eval"])  # validation: never augmented
    assert all(torch.equal(a, b) for a, b in zip(model_inputs["eval"], off["eval"], strict=True))


def test_augmented_training_resumed_from_its_checkpoint_equals_uninterrupted(tmp_path: Path):
    data, config = handmade_data(), tiny_config(**ALL_ON)
    whole, _ = assert_resumed_run_equals_uninterrupted(config, tmp_path, data)
    first = load_model(whole.model_path)
    assert first.config.augment == config.augment  # the model file records the options
    assert first.describe()["augment"] == (
        "stretch ×1/1.1..1.1, mix p=0.5 at -12..0 dB, gain ±6 dB, 2 time masks ≤ 10 frames, "
        "2 Mel masks ≤ 20 bands")
    plain = tiny_config()
    train(plain, tmp_path / "plain", data=data, progress=False)
    assert "augment" not in load_model(tmp_path / "plain" / "model.pt").describe()


SEARCHED = {"gain_db": {"low": 0.0, "high": 6.0}, "time_masks": {"low": 0, "high": 3},
            "freq_mask_bins": {"choices": [8, 16, 24]}, "mix_prob": 0.25}


def test_a_study_spec_samples_augment_options_into_the_trial_config() -> None:
    spec = parse_spec({"name": "s", "search": {"sampler": "random", "losses": ["ce"],
                                              "augment": SEARCHED}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(8):
        trial = study.ask()
        params = sample(trial, spec.search)
        assert set(trial.params) == {"augment.gain_db", "augment.time_masks",
                                     "augment.freq_mask_bins"}  # mix_prob is fixed
        config = run_config_of(spec.base_config(), params)
        augment = config.augment
        assert 0.0 <= augment.gain_db <= 6.0 and augment.gain_db == params["augment.gain_db"]
        assert isinstance(augment.time_masks, int) and 0 <= augment.time_masks <= 3
        assert augment.freq_mask_bins in (8, 16, 24) and isinstance(augment.freq_mask_bins, int)
        assert augment.mix_prob == 0.25 and augment.mix_level_db == 10.0  # base default
        assert config.loss.type == "ce"
        assert logged_params(params)["augment.time_masks"] == augment.time_masks
        assert describe(params).startswith("ce() augment(gain_db=")
        assert RunConfig.from_dict(config.to_dict()) == config
        seen.append(augment.time_masks)
    assert len(set(seen)) > 1
    plain = parse_spec({"name": "s", "search": {"losses": ["ce"]}})
    trial = optuna.create_study().ask()
    params = sample(trial, plain.search)
    assert "augment" not in describe(params) and set(logged_params(params)) == {
        "loss", "alpha", "beta", "gamma", "lam", "delta"}
    assert run_config_of(plain.base_config(), params).augment == AugmentConfig()


def test_the_commented_augment_block_of_the_joint_study_samples_when_uncommented() -> None:
    text = (Path(__file__).parents[1] / "studies" / "joint.yaml").read_text()
    block = [line for line in text.splitlines() if line.startswith(("  # augment:", "  #   "))]
    assert len(block) == 5
    for line in block:
        text = text.replace(line, line.replace("# ", "", 1))
    spec = parse_spec(yaml.safe_load(text))
    assert set(spec.search.augment) == {"gain_db", "time_masks", "freq_masks", "mix_prob"}
    trial = optuna.create_study().ask()
    augment = run_config_of(spec.base_config(), sample(trial, spec.search)).augment
    assert augment.mix_prob in (0.0, 0.25, 0.5) and 0 <= augment.freq_masks <= 2
    assert {f"augment.{name}" for name in spec.search.augment} <= set(trial.params)


def test_base_augment_options_reach_every_trial() -> None:
    spec = parse_spec({"name": "s", "base": {"augment": {"freq_masks": 2}},
                       "search": {"losses": ["ce"], "augment": {"gain_db": 3.0}}})
    params = sample(optuna.create_study().ask(), spec.search)
    augment = run_config_of(spec.base_config(), params).augment
    assert augment == replace(AugmentConfig(), freq_masks=2, gain_db=3.0)


@pytest.mark.parametrize(("search", "base", "message"), [
    ({"augment": {"shift": 0.1}}, {}, "search.augment.shift: unknown option; expected one"),
    ({"augment": {"time_masks": {"low": 0, "high": 2.5}}}, {},
     "search.augment.time_masks: `integer values` must hold"),
    ({"augment": {"mix_prob": {"low": 0.0, "high": 1.5}}}, {},
     "search.augment.mix_prob: `0 <= mix_prob <= 1` must hold, but got 1.5"),
    ({"augment": {"freq_masks": {"choices": [-1, 2]}}}, {},
     "search.augment.freq_masks: `freq_masks >= 0` must hold, but got -1"),
    ({"augment": {"gain_db": {"low": 0.0, "high": 6.0}}},
     {"features": {"mel_scaling": "pcen"}},
     "search.augment.gain_db: `gain and mixing only with features.mel_scaling log`"),
    ({"sampler": "grid", "grid": [{"type": "ce"}], "augment": {"gain_db": 3.0}}, {},
     "search.augment: `no search.augment in a grid study"),
])
def test_bad_searched_options_are_one_line_errors(tmp_path, search, base, message) -> None:
    with pytest.raises(ConfigError) as error:
        parse_spec({"name": "s", "base": base, "search": search})
    assert str(error.value).startswith(message), str(error.value)
    assert len(str(error.value).splitlines()) == 1
