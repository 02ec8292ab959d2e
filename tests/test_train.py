"""Training end to end on a tiny synthetic corpus: files, schedule, resume, failures, learning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from guarantees import assert_resumed_run_equals_uninterrupted

from musicdet.config import RunConfig, apply_overrides
from musicdet.detect import Smoothing, median_smooth
from musicdet.features import Normalizer
from musicdet.losses import LossConfig, auc_loss
from musicdet.metrics import auc, operating_point
from musicdet.modelfile import load_model
from musicdet.sequences import Example, sequential_batches
from musicdet.train import (
    NonFiniteLossError,
    PreparedData,
    SharedData,
    Validation,
    choose_operating_point,
    learning_rate,
    prepare_data,
    train,
)


def tiny_config(cache: Path, **loss: object) -> RunConfig:
    return RunConfig.from_dict(
        {
            "seed": 1,
            "data": {"synth_hours": 0.05, "cache_dir": str(cache), "validation_fraction": 0.34},
            "model": {"hidden_size": 16, "num_layers": 2},
            "loss": loss or {"type": "ce"},
            "training": {"epochs": 2, "batch_size": 4, "sequences_per_epoch": 8},
        }
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data(cache: Path) -> PreparedData:
    return prepare_data(tiny_config(cache), progress=False)


def test_prepare_data_holds_out_the_corpus_validation_programmes(
        data: PreparedData, cache: Path) -> None:
    """Validation 0.34 on 3 programmes: programme 0 is made from validation material only."""
    corpus = next((cache / "corpus").glob("synth-*"))
    assert json.loads((corpus / "corpus.json").read_text())["validation"] == ["prog-0000"]
    assert data.corpus == json.loads((corpus / "corpus.json").read_text())
    assert [e.name for e in data.validation] == ["prog-0000"]
    assert [e.name for e in data.train] == ["prog-0001", "prog-0002"]
    for example in data.train + data.validation:
        assert example.features.shape == (example.frames, 140)
        assert example.features.dtype == np.float32
        assert set(np.unique(example.labels)) <= {0.0, 1.0}
    for example in data.train + data.validation:
        assert example.features.shape == (example.frames, 140)
        assert example.features.dtype == np.float32
        assert set(np.unique(example.labels)) <= {0.0, 1.0}


def test_learning_rate_decays_from_start_to_end() -> None:
    training = RunConfig.from_dict({"training": {"epochs": 20}}).training
    assert learning_rate(1, training) == pytest.approx(1e-3)
    assert learning_rate(20, training) == pytest.approx(1e-4)
    ratios = [learning_rate(e + 1, training) / learning_rate(e, training) for e in range(1, 20)]
    assert np.allclose(ratios, ratios[0])


def test_train_writes_a_self_contained_model(tmp_path: Path, cache: Path, data: PreparedData):
    reports = []
    result = train(tiny_config(cache), tmp_path, data=data, on_epoch=reports.append,
                   progress=False)
    assert [r.epoch for r in reports] == [1, 2]
    assert reports[0].lr == pytest.approx(1e-3) and reports[1].lr == pytest.approx(1e-4)
    assert result.best.val_auc == max(r.val_auc for r in reports)  # select_metric: val_auc
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    detector = load_model(result.model_path)
    assert detector.config == tiny_config(cache)
    amounts = detector.training_data
    assert (amounts.corpus_hours, amounts.corpus_seed) == (0.05, 0)
    assert amounts.providers == [f"{s['name']} ({s['version']})" for s in data.corpus["sources"]]
    assert amounts.providers and detector.describe()["corpus"].startswith(
        "0.05 h synthetic corpus of seed 0; providers: ")
    assert detector.metrics["val_auc"] == pytest.approx(result.best.val_auc)
    saved = np.load(result.validation_path)  # the kept epoch's raw scores, file after file
    assert auc(saved["labels"], saved["scores"], saved["mask"]) == result.best.val_auc
    first = data.validation[0]
    np.testing.assert_allclose(detector.probabilities(first.features),
                               saved["scores"][: first.frames], rtol=1e-5, atol=1e-6)
    assert saved["labels"][: first.frames].tolist() == first.labels.tolist()


def test_resumed_training_equals_uninterrupted(tmp_path: Path, cache: Path, data: PreparedData):
    config = tiny_config(cache, type="aaucsum", gamma=0.75, lam=0.001)
    assert_resumed_run_equals_uninterrupted(config, tmp_path, data)


def test_training_from_the_shared_cache_equals_training_in_memory(tmp_path: Path, cache: Path,
                                                                   data: PreparedData) -> None:
    """Features memory-mapped from the cache (what a shared_cache trial reads) train the same
    epochs as the same features in memory, and the trial's process copies none of them."""
    config = tiny_config(cache)
    shared = SharedData.of(prepare_data(config, progress=False, mmap=True), config.features)
    opened = shared.open()
    assert all(isinstance(e.features, np.memmap) for e in opened.train + opened.validation)
    assert all(Path(e.path).parent == cache and Path(e.path).suffix == ".npy"
               for e in shared.train + shared.validation)
    assert shared.normalizer == Normalizer.fit((e.features for e in data.train), config.features)
    in_memory = train(config, tmp_path / "memory", data=data, progress=False)
    mapped = train(config, tmp_path / "mapped", data=opened, progress=False)
    assert [r.metrics() | {"seconds": 0} for r in mapped.history] == [
        r.metrics() | {"seconds": 0} for r in in_memory.history]
    np.testing.assert_array_equal(np.load(tmp_path / "mapped/validation.npz")["scores"],
                                  np.load(tmp_path / "memory/validation.npz")["scores"])


def folder_state(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_checkpoint_of_another_config_is_refused_and_nothing_is_written(tmp_path, cache, data):
    train(tiny_config(cache), tmp_path, data=data, progress=False)
    before = folder_state(tmp_path)
    other = apply_overrides(tiny_config(cache), ["training.epochs=3"])
    with pytest.raises(ValueError, match="checkpoint of a different config"):
        train(other, tmp_path, data=data, progress=False)
    assert folder_state(tmp_path) == before  # config.yaml still describes model.pt


def test_checkpoint_of_another_musicdet_version_is_refused_in_one_line(tmp_path, cache, data):
    config = tiny_config(cache)
    train(config, tmp_path, data=data, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    epochs = json.loads(state["history"])
    state["history"] = json.dumps([{**e, "best_val_auc": e.pop("best_value")} for e in epochs])
    torch.save(state, tmp_path / "checkpoint.pt")
    before = folder_state(tmp_path)
    with pytest.raises(ValueError, match=r"checkpoint.pt: checkpoint written by another "
                                         r"musicdet version \(its epoch records do not match"):
        train(config, tmp_path, data=data, progress=False)
    assert folder_state(tmp_path) == before


def test_failed_data_preparation_writes_nothing(tmp_path: Path, cache: Path):
    config = apply_overrides(tiny_config(cache), [f"data.path={tmp_path / 'none'}",
                                                  "data.format=generic"])
    with pytest.raises(ValueError, match="not a folder nor a manifest file"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path: Path, cache: Path, data, monkeypatch):
    from musicdet import train as train_module

    real = train_module.build_loss

    def poisoned(config: LossConfig):
        loss = real(config)

        class NaNLoss:
            degenerate_batches = empty_bands = 0

            def __call__(self, scores, labels, mask=None):
                return loss(scores, labels, mask) * float("nan")

        return NaNLoss()

    monkeypatch.setattr(train_module, "build_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1: loss is nan"):
        train(tiny_config(cache), tmp_path, data=data, progress=False)


def test_cli_reports_non_finite_loss_in_one_line(tmp_path: Path, cache: Path, monkeypatch, capsys):
    from musicdet import train as train_module
    from musicdet.cli import main

    def diverge(*args, **kwargs):
        raise NonFiniteLossError("epoch 3, step 7: loss is nan")

    monkeypatch.setattr(train_module, "train", diverge)
    tiny_config(cache).save(tmp_path / "run.yaml")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == \
        "musicdet: error: training failed: epoch 3, step 7: loss is nan\n"


def scripted_metrics(monkeypatch: pytest.MonkeyPatch, script: list[dict]) -> list[np.ndarray]:
    """Override successive epochs' validation metrics with ``script``; returns their scores."""
    from musicdet import train as train_module

    real, pending, scores = train_module.evaluate, list(script), []

    def scripted(labels, epoch_scores, *args, **kwargs):
        scores.append(epoch_scores)
        return real(labels, epoch_scores, *args, **kwargs) | pending.pop(0)

    monkeypatch.setattr(train_module, "evaluate", scripted)
    return scores


@pytest.mark.parametrize("metric, script, kept", [
    ("val_eer", [{"auc": 0.9, "eer": 0.3}, {"auc": 0.7, "eer": 0.1}, {"auc": 0.8, "eer": 0.2}],
     [(1, 0.3), (2, 0.1), (2, 0.1)]),
    ("val_auc", [{"auc": 0.7}, {"auc": 0.9}, {"auc": 0.8}], [(1, 0.7), (2, 0.9), (2, 0.9)]),
    ("val_eer", [{"eer": math.nan}, {"eer": 0.2}, {"eer": math.nan}],  # NaN is never better
     [(1, math.nan), (2, 0.2), (2, 0.2)]),
])
def test_the_kept_epoch_is_the_best_by_select_metric_in_its_direction(
    tmp_path, cache, data, monkeypatch, metric, script, kept
):
    scores = scripted_metrics(monkeypatch, script)
    config = apply_overrides(tiny_config(cache),
                             ["training.epochs=3", f"training.select_metric={metric}"])
    result = train(config, tmp_path, data=data, progress=False)
    assert load_model(result.model_path).metrics["epoch"] == 2
    assert result.best.epoch == 2
    assert [r.best_epoch for r in result.history] == [epoch for epoch, _ in kept]
    assert [r.best_value for r in result.history] == pytest.approx([v for _, v in kept],
                                                                   nan_ok=True)
    saved = np.load(result.validation_path)["scores"]
    assert np.array_equal(saved, scores[1]) and not np.array_equal(saved, scores[2])
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["best_epoch"] for h in history] == [k[0] for k in kept]


UNREACHED = {"threshold": None, "precision": None, "recall": None, "f1": None,
             "accuracy": None, "fpr": None, "target_reached": False}


def test_recall_and_f1_are_zero_where_precision_090_is_never_reached(
    tmp_path, cache, data, monkeypatch
):
    scripted_metrics(monkeypatch, [UNREACHED, UNREACHED])
    config = apply_overrides(tiny_config(cache), ["training.select_metric=val_f1"])
    result = train(config, tmp_path, data=data, progress=False)
    assert [(r.val_recall, r.val_f1, r.val_precision, r.val_threshold, r.best_value)
            for r in result.history] == [(0.0, 0.0, None, None, 0.0)] * 2
    first = json.loads((tmp_path / "history.json").read_text())[0]
    assert first["val_f1"] == first["val_recall"] == 0.0 and "val_precision" not in first


def test_empty_bands_are_counted_per_epoch_and_reported(tmp_path, cache, data):
    # with N⁻ < 10 000 negatives the band [0.5, 0.5001] holds no rank: every minibatch that
    # has both classes zeroes its one term
    config = tiny_config(cache, type="apauc", alpha=0.5, beta=0.5001)
    result = train(config, tmp_path, data=data, progress=False)
    steps = 2  # 8 sequences per epoch, 4 per minibatch
    assert [r.empty_bands + r.degenerate_batches for r in result.history] == [steps, steps]
    assert sum(r.empty_bands for r in result.history) > 0
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["empty_bands"] for h in history] == [r.empty_bands for r in result.history]


def handmade_data() -> PreparedData:
    """Random features; validation: a 300-frame all-music file, a 150-frame half-music file."""
    rng = np.random.default_rng(0)

    def example(name: str, labels: list[float]) -> Example:
        frames = len(labels)
        return Example(name, rng.normal(size=(frames, 140)).astype(np.float32),
                       np.array(labels, np.float32), np.ones(frames, bool))

    half = [1.0] * 150 + [0.0] * 150
    return PreparedData([example("a", half), example("b", half[::-1])],
                        [example("music", [1.0] * 300), example("mixed", half[75:225])])


@pytest.mark.parametrize("loss", ["ce", "aauc"])
def test_validation_loss_leaves_out_single_class_batches_and_weights_frames(
    tmp_path, cache, loss
):
    data = handmade_data()
    config = apply_overrides(tiny_config(cache, type=loss),
                             ["training.epochs=1", "training.batch_size=1"])
    result = train(config, tmp_path, data=data, progress=False)
    detector = load_model(result.model_path)
    normalised = [Example(e.name, detector.normalizer.apply(e.features), e.labels, e.mask)
                  for e in data.validation]
    music, mixed = sequential_batches(normalised, 1, 300)  # one window per file
    with torch.no_grad():
        if loss == "ce":  # the mean over all 450 validation frames, not of the 2 batch means
            bce = [F.binary_cross_entropy_with_logits(
                       detector.model(b.features, b.lengths)[b.mask], b.labels[b.mask],
                       reduction="sum") for b in (music, mixed)]
            expected = float(sum(bce)) / 450
        else:  # the all-music window has no pair: left out, not averaged in as 0
            expected = auc_loss(detector.model(mixed.features, mixed.lengths), mixed.labels,
                                mask=mixed.mask).item()
    assert result.history[0].val_loss == pytest.approx(expected, rel=1e-5)


def test_default_threshold_is_chosen_on_the_scores_detect_thresholds() -> None:
    """Isolated one-frame spikes on no-music frames keep raw scores from ever reaching
    precision 0.90; the median filter detect applies removes them, so the point exists."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.tile([0.0, 1.0], 10), 200)  # 20 blocks of 2 s at 100 frames/s
    probabilities = np.where(labels == 1, 0.7, 0.2) + rng.uniform(-0.05, 0.05, len(labels))
    spikes = rng.choice(np.flatnonzero(labels == 0)[1:-1:3], 600, replace=False)
    probabilities[spikes] = 0.99
    val = Validation(0.0, {}, [probabilities], labels, np.ones(len(labels), bool), ["a"])
    assert not operating_point(labels, probabilities)["target_reached"]
    point = choose_operating_point(val, frames_per_second=100)
    frames = round(Smoothing().median_seconds * 100)
    expected = operating_point(labels, median_smooth(probabilities, frames))
    assert expected["target_reached"] and point.threshold == pytest.approx(expected["threshold"])
    assert point.rule == ("precision 0.90, highest recall, on validation scores "
                          "median-filtered over 0.5 s")
    assert point.median_seconds == Smoothing().median_seconds


def test_a_trained_model_keeps_the_point_chosen_on_its_validation_scores(
        tmp_path, cache, data) -> None:
    result = train(tiny_config(cache), tmp_path, data=data, progress=False)
    detector = load_model(result.model_path)
    probabilities = [detector.probabilities(e.features) for e in data.validation]
    val = Validation(0.0, {}, probabilities,
                     np.concatenate([e.labels for e in data.validation]),
                     np.concatenate([e.mask for e in data.validation]),
                     [e.name for e in data.validation])
    point = choose_operating_point(val, frames_per_second=100)
    assert detector.threshold == pytest.approx(point.threshold, abs=1e-6)
    assert detector.describe()["threshold"] == f"{point.threshold:.4f} ({point.rule})"
