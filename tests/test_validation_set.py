"""Training validated on another labelled set (the run config's ``validation:`` section): val_*
on that set, the data's own split as train_val_*, one feature cache, one line per bad set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from musicdet.cli import main
from musicdet.config import RunConfig
from musicdet.metrics import auc
from musicdet.modelfile import load_model
from musicdet.train import PreparedData, SharedData, prepare_data, train

OTHER_SEED = 7  # the validation corpus: another synthetic corpus than the training one


def run_config(cache: Path, validation: dict | None) -> dict:
    """A tiny run on the 0.05 h corpus of seed 0; ``validation``: the run's validation set."""
    config = {
        "seed": 1,
        "data": {"synth_hours": 0.05, "cache_dir": str(cache), "validation_fraction": 0.34},
        "model": {"hidden_size": 16, "num_layers": 1},
        "loss": {"type": "ce"},
        "training": {"epochs": 2, "batch_size": 4, "sequences_per_epoch": 8},
    }
    return config | ({"validation": validation} if validation is not None else {})


def other_corpus(cache: Path) -> dict:
    return {"synth_hours": 0.02, "synth_seed": OTHER_SEED, "validation_fraction": 0.34,
            "cache_dir": str(cache)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data(cache: Path) -> PreparedData:
    return prepare_data(RunConfig.from_dict(run_config(cache, other_corpus(cache))),
                        progress=False)


def test_the_validation_set_travels_with_the_shared_cache_and_trains_the_same(
        tmp_path: Path, cache: Path, data: PreparedData) -> None:
    """A shared_cache trial (`SharedData`) gets the validation: set memory-mapped too, and
    trains the same epochs as the same data in memory."""
    config = RunConfig.from_dict(run_config(cache, other_corpus(cache)))
    shared = SharedData.of(prepare_data(config, progress=False, mmap=True), config.features)
    opened = shared.open()
    assert opened.external is not None and all(
        isinstance(e.features, np.memmap) for e in opened.external)
    assert [e.name for e in opened.external] == [e.name for e in data.external]
    in_memory = train(config, tmp_path / "memory", data=data, progress=False)
    mapped = train(config, tmp_path / "mapped", data=opened, progress=False)
    assert [r.metrics() | {"seconds": 0} for r in mapped.history] == [
        r.metrics() | {"seconds": 0} for r in in_memory.history]

def test_epochs_are_validated_on_the_other_set_and_the_split_is_train_val(
        tmp_path: Path, cache: Path, data: PreparedData) -> None:
    config = RunConfig.from_dict(run_config(cache, other_corpus(cache)))
    assert [e.name for e in data.external] == ["prog-0000"]  # the seed-7 corpus's validation
    assert not np.array_equal(data.external[0].features, data.validation[0].features)
    result = train(config, tmp_path, data=data, progress=False)
    with np.load(result.validation_path) as saved:
        assert saved["files"].tolist() == ["prog-0000"]
        assert len(saved["labels"]) == data.external[0].frames
        assert (saved["groups"] == 0).all()
        assert result.best.val_auc == pytest.approx(
            auc(saved["labels"], saved["scores"], saved["mask"]), abs=1e-12)
    detector = load_model(result.model_path)
    split = data.validation
    expected = auc(np.concatenate([e.labels for e in split]),
                   np.concatenate([detector.probabilities(e.features) for e in split]),
                   np.concatenate([e.mask for e in split]))
    assert result.best.train_val_auc == pytest.approx(expected, abs=1e-5)
    assert result.best.train_val_auc != pytest.approx(result.best.val_auc, abs=1e-6)
    described = detector.describe()["validation"]
    assert described.startswith(f"AUC {result.best.val_auc:.4f}, EER {result.best.val_eer:.4f} "
                                f"on synth, 0.02 h corpus of seed {OTHER_SEED}; ")
    assert described.endswith(f"; held-out split of the data: AUC {expected:.4f}, "
                              f"EER {result.best.train_val_eer:.4f}")
    history = json.loads((tmp_path / "history.json").read_text())
    for epoch in history:
        assert {"train_val_auc", "train_val_eer", "train_val_loss", "train_val_recall",
                "train_val_f1"} <= set(epoch)


def test_the_kept_epoch_can_be_chosen_on_the_split(tmp_path, cache, data) -> None:
    config = RunConfig.from_dict(run_config(cache, other_corpus(cache)) | {
        "training": {"epochs": 2, "batch_size": 4, "sequences_per_epoch": 8,
                     "select_metric": "train_val_eer"}})
    result = train(config, tmp_path, data=data, progress=False)
    assert result.best.train_val_eer == min(r.train_val_eer for r in result.history)


def test_a_generic_folder_reads_its_features_from_the_same_cache(tmp_path, cache, data) -> None:
    """The seed-7 programme copied into a generic folder: same features, no new cache file."""
    corpus = next((cache / "corpus").glob(f"synth-*seed{OTHER_SEED}*"))
    folder = tmp_path / "broadcasts"
    folder.mkdir()
    for suffix in (".wav", ".tsv"):
        shutil.copy(corpus / f"prog-0000{suffix}", folder / f"prog-0000{suffix}")
    cached = sorted(cache.rglob("*.npy"))
    generic = prepare_data(RunConfig.from_dict(run_config(
        cache, {"format": "generic", "path": str(folder), "cache_dir": str(cache)})),
        progress=False)
    assert sorted(cache.rglob("*.npy")) == cached
    [example] = generic.external
    assert np.array_equal(example.features, data.external[0].features)
    assert np.array_equal(example.labels, data.external[0].labels)


def test_without_a_validation_set_the_config_and_history_are_as_before(tmp_path, cache) -> None:
    config = RunConfig.from_dict(run_config(cache, None))
    assert "validation" not in config.to_dict()
    assert "validation" not in yaml.safe_load(config.to_yaml())


def write_generic(folder: Path, corpus: Path, label: str) -> Path:
    """A generic folder with one programme of ``corpus`` labelled ``label`` throughout."""
    folder.mkdir()
    shutil.copy(corpus / "prog-0000.wav", folder / "a.wav")
    (folder / "a.tsv").write_text(f"onset\toffset\tlabel\n0\t60\t{label}\n")  # 60 s programme
    return folder


@pytest.mark.parametrize(("validation", "message"), [
    ("music", "validation: no frames labelled no-music in {path}; the validation set needs "
              "both classes"),
    ("no-music", "validation: no frames labelled music in {path}; the validation set needs "
                 "both classes"),
    ({"format": "generic", "path": "{tmp}/nowhere"},
     "validation.path: {tmp}/nowhere does not exist; expected the validation set's generic "
     "dataset"),
    ({"format": "mp3", "path": "x"}, "{tmp}/run.yaml: validation.format: expected one of "
                                     "synth, generic, openbmat, seyerlehner, got 'mp3'"),
])
def test_a_bad_validation_set_is_one_line_and_writes_nothing(
        tmp_path, cache, data, capsys, validation, message) -> None:
    path = tmp_path / "broadcasts"
    if isinstance(validation, str):
        corpus = next((cache / "corpus").glob(f"synth-*seed{OTHER_SEED}*"))
        validation = {"format": "generic", "path": str(write_generic(path, corpus, validation)),
                      "cache_dir": str(cache)}
    validation = {k: v.format(tmp=tmp_path) for k, v in validation.items()}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(cache, validation)))
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicdet: error: " + message.format(path=path, tmp=tmp_path))
    assert err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())
