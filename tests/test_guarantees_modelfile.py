"""Guarantees for model files: anything but an intact model file of this format version is
refused with one `ModelFileError` line naming the file — never a traceback, never a crash."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from musicdet.config import RunConfig
from musicdet.features import Normalizer
from musicdet.model import BiGRUDetector
from musicdet.modelfile import FORMAT_VERSION, ModelFileError, load_model, save_model


def tiny_model_file(path: Path, hidden_size: int = 8) -> Path:
    config = RunConfig.from_dict({"model": {"hidden_size": hidden_size}})
    torch.manual_seed(0)
    features = np.random.default_rng(0).normal(size=(50, 140)).astype(np.float32)
    return save_model(path, BiGRUDetector(config.model), config, Normalizer.fit([features]),
                      {"val_threshold": 0.4})


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt")


def payload(good: Path) -> dict:
    return torch.load(good, weights_only=True)


def with_meta(change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    """A model file whose JSON metadata went through ``change`` (returns the new metadata)."""
    def make(path: Path, good: Path) -> None:
        content = payload(good)
        content["meta"] = json.dumps(change(json.loads(content["meta"])))
        torch.save(content, path)

    return make


def zip_file(path: Path, good: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"not a pickle")


def other_weights(path: Path, good: Path) -> None:
    content = payload(good)
    content["state_dict"] = payload(tiny_model_file(path.with_name("big.pt"), 16))["state_dict"]
    torch.save(content, path)


def tensor_weights(path: Path, good: Path) -> None:
    torch.save({**payload(good), "state_dict": torch.zeros(3)}, path)


DAMAGED = {
    "truncated-half": (lambda path, good: path.write_bytes(good.read_bytes()[:20000]),
                       "not a readable musicdet model file (truncated, or not one)"),
    "truncated-tail": (lambda path, good: path.write_bytes(good.read_bytes()[:-100]),
                       "not a readable musicdet model file (truncated, or not one)"),
    "empty": (lambda path, good: path.write_bytes(b""), "not a readable musicdet model file"),
    "random-bytes": (lambda path, good: path.write_bytes(np.random.default_rng(0).bytes(4096)),
                     "not a readable musicdet model file"),
    "text": (lambda path, good: path.write_text("hello\n"), "not a readable musicdet model file"),
    "zip": (zip_file, "not a readable musicdet model file"),
    "plain-tensors": (lambda path, good: torch.save({"w": torch.zeros(2)}, path),
                      "not a musicdet model file (no meta/state_dict)"),
    "meta-not-json": (lambda path, good: torch.save({**payload(good), "meta": "{"}, path),
                      "not a musicdet model file (unreadable metadata)"),
    "meta-a-list": (with_meta(lambda meta: [meta]), "metadata or weights of the wrong type"),
    "other-format": (with_meta(lambda meta: {**meta, "format": "onnx"}),
                     "not a musicdet model file (format 'onnx')"),
    "newer-version": (with_meta(lambda meta: {**meta, "format_version": FORMAT_VERSION + 1}),
                      f"model file format version {FORMAT_VERSION + 1}, this musicdet"),
    "older-version": (with_meta(lambda meta: {**meta, "format_version": 0}),
                      "model file format version 0"),
    "no-config": (with_meta(lambda meta: {k: v for k, v in meta.items() if k != "config"}),
                  "damaged model metadata ('config')"),
    "bad-config": (with_meta(lambda meta: {**meta, "config": {"model": {"hidden_size": -1}}}),
                   "damaged model metadata (model.hidden_size: `hidden_size > 0` must hold"),
    "bad-normalizer": (with_meta(lambda meta: {**meta, "normalizer": {"block_sizes": []}}),
                       "damaged model metadata"),
    "bad-operating-point": (
        with_meta(lambda meta: {**meta, "operating_point": {"threshold": 2.0, "rule": "r",
                                                            "median_seconds": 0.5}}),
        "damaged model metadata (operating_point.threshold: `0 <= threshold <= 1` must hold"),
    "operating-point-a-list": (with_meta(lambda meta: {**meta, "operating_point": [0.5]}),
                               "damaged model metadata (operating_point: expected a mapping"),
    "training-data-incomplete": (
        with_meta(lambda meta: {**meta, "training_data": {"train_files": 3}}),
        "damaged model metadata"),
    "other-weights": (other_weights, "weights do not match the stored model config"),
    "tensor-weights": (tensor_weights, "metadata or weights of the wrong type"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_or_foreign_model_file_is_one_clear_error(tmp_path, good, case):
    make, message = DAMAGED[case]
    path = tmp_path / "model.pt"
    make(path, good)
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and len(text.splitlines()) == 1, text


@pytest.mark.parametrize("make", [lambda path: None, lambda path: path.mkdir()],
                         ids=["missing", "directory"])
def test_missing_model_file_is_one_clear_error(tmp_path, make):
    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(ModelFileError, match=f"^{path}: no such model file$"):
        load_model(path)


def test_intact_model_file_loads(good):
    assert good.stat().st_size > 40000  # the truncated cases above cut it
    detector = load_model(good)
    assert detector.threshold == pytest.approx(0.4)
    buffer = io.BytesIO(good.read_bytes())
    assert torch.load(buffer, weights_only=True).keys() == {"meta", "state_dict"}
