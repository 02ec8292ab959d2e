"""The default detector: detect / evaluate / info without a model use the packaged file (or say
how to make it), evaluations recorded in a model file, shipping with its size limit."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from guarantees import assert_one_error_line, run_cli, temp_files
from test_detect import save_tiny_model, write_wav

from musicdet import modelfile, shipped
from musicdet.audio import load_audio
from musicdet.config import DataConfig
from musicdet.configtools import ConfigError
from musicdet.features import extract_features
from musicdet.modelfile import ModelFileError, TrainingData, load_model, record_evaluation
from musicdet.train import PreparedData


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny model file standing in for the packaged default detector."""
    path = save_tiny_model(tmp_path / "package" / "default.pt")
    monkeypatch.setattr(shipped, "DEFAULT_MODEL", path)
    return path


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Two generic-format files, half noise then half chord, labelled so."""
    root = tmp_path / "realset"
    for index, seconds in enumerate((4.0, 3.0)):
        write_wav(root / f"f{index}.wav", seconds, seed=index)
        half = seconds / 2
        (root / f"f{index}.tsv").write_text(
            f"onset\toffset\tlabel\n0\t{half}\tno-music\n{half}\t{seconds}\tmusic\n")
    return root


def evaluate_args(tmp_path: Path, data: Path, *model: Path) -> list[str | Path]:
    return ["evaluate", *model, "--data", data, "--out", tmp_path / "eval",
            "--cache-dir", tmp_path / "cache"]


def test_detect_without_a_model_uses_the_packaged_one(tmp_path, capsys, packaged) -> None:
    audio = write_wav(tmp_path / "a.wav", 3.0)
    forms = {"default": [], "option": ["--model", packaged]}
    for name, model_args in forms.items():
        outcome = run_cli(capsys, "detect", audio, *model_args, "--out", tmp_path / name,
                          "--frame-scores", "npy")
        assert outcome.status == 0, outcome
    outcome = run_cli(capsys, "detect", packaged, audio, "--out", tmp_path / "positional",
                      "--frame-scores", "npy")
    assert outcome.status == 0, outcome
    expected = np.load(tmp_path / "option" / "a.frames.npy")
    for name in ("default", "positional"):
        np.testing.assert_array_equal(np.load(tmp_path / name / "a.frames.npy"), expected)
        assert (tmp_path / name / "a.segments.tsv").read_text() == \
            (tmp_path / "option" / "a.segments.tsv").read_text()


def test_a_model_file_alone_is_not_enough_for_detect(tmp_path, capsys, packaged) -> None:
    assert_one_error_line(run_cli(capsys, "detect", packaged, "--out", tmp_path / "out"),
                          "AUDIO", "no audio inputs after the model file")


@pytest.mark.parametrize("command", ["detect", "evaluate", "info"])
def test_an_absent_default_model_is_one_line_saying_how_to_make_it(
        tmp_path, capsys, monkeypatch, labelled, command) -> None:
    absent = tmp_path / "package" / "default.pt"
    monkeypatch.setattr(shipped, "DEFAULT_MODEL", absent)
    args = {"detect": ["detect", labelled / "f0.wav", "--out", tmp_path / "out"],
            "evaluate": evaluate_args(tmp_path, labelled), "info": ["info"]}[command]
    assert_one_error_line(run_cli(capsys, *args), f"{absent}: no default model",
                          "make model")
    assert not (tmp_path / "out").exists() and not (tmp_path / "eval").exists()


def test_help_says_the_model_is_optional() -> None:
    from musicdet.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("detect", "evaluate", "info"):
        text = " ".join(action.choices[command].format_help().split())
        assert "default: the default detector in the package" in text, command
    detect_help = " ".join(action.choices["detect"].format_help().split())
    assert "--model PATH" in detect_help
    assert "a first one ending in .pt is the model file" in detect_help


def test_record_stores_the_summary_and_info_prints_it(tmp_path, capsys, packaged,
                                                      labelled) -> None:
    outcome = run_cli(capsys, *evaluate_args(tmp_path, labelled), "--record", "realset")
    assert outcome.status == 0 and f"recorded as 'realset' in {packaged}" in outcome.out, outcome
    record = load_model(packaged).evaluations["realset"]
    assert record["data"] == "realset" and record["format"] == "generic"
    assert record["files"] == 2 and record["hours"] == pytest.approx(7.0 / 3600)
    assert len(record["file_list_sha256"]) == 64 and "audio" not in str(record)
    assert 0.0 <= record["auc"] <= 1.0 and record["target_precision"] == 0.9
    assert record["weights_sha256"] == load_model(packaged).weights_sha256()
    outcome = run_cli(capsys, "info")
    assert outcome.status == 0, outcome
    lines = outcome.out.splitlines()
    assert lines[0] == f"model: {packaged}"
    header = lines.index("figures:") + 1
    assert lines[header].split() == ["set", "data", "files", "hours", "AUC", "EER", "P",
                                     "recall", "F1", "F1", "thr"]
    row = lines[header + 1].split()
    assert row[:5] == ["realset", "realset", "2", "0.002", f"{record['auc']:.4f}"]


def test_a_second_record_keeps_the_first_and_the_same_name_replaces(tmp_path, capsys, packaged,
                                                                   labelled) -> None:
    for name in ("first", "second", "second"):
        assert run_cli(capsys, *evaluate_args(tmp_path, labelled), "--record", name).status == 0
    assert list(load_model(packaged).evaluations) == ["first", "second"]


def test_recording_changes_neither_weights_nor_scores(tmp_path, capsys, packaged,
                                                      labelled) -> None:
    before = load_model(packaged)
    features = extract_features(load_audio(labelled / "f0.wav"), before.config.features)
    assert run_cli(capsys, *evaluate_args(tmp_path, labelled), "--record", "realset").status == 0
    after = load_model(packaged)
    assert after.weights_sha256() == before.weights_sha256()
    for key, tensor in before.model.state_dict().items():
        assert torch.equal(after.model.state_dict()[key], tensor), key
    assert after.config == before.config and after.normalizer == before.normalizer
    assert after.describe() == before.describe() and after.threshold == before.threshold
    np.testing.assert_array_equal(after.probabilities(features), before.probabilities(features))


def test_a_failed_record_leaves_the_old_file(tmp_path, packaged, monkeypatch) -> None:
    record = {"weights_sha256": load_model(packaged).weights_sha256(), "auc": 0.5}
    record_evaluation(packaged, "kept", record)
    original = packaged.read_bytes()

    def half_then_fail(payload: object, path: Path) -> None:
        Path(path).write_bytes(original[: len(original) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(modelfile.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        record_evaluation(packaged, "lost", record)
    assert packaged.read_bytes() == original and temp_files(packaged.parent) == []
    assert list(load_model(packaged).evaluations) == ["kept"]


def test_record_refuses_other_weights_and_bad_names(packaged) -> None:
    original = packaged.read_bytes()
    with pytest.raises(ModelFileError, match="measured other weights"):
        record_evaluation(packaged, "x", {"weights_sha256": "0" * 64})
    good = {"weights_sha256": load_model(packaged).weights_sha256()}
    for name in ("", "two words", "-dash", "a/b", "x" * 65):
        with pytest.raises(ConfigError, match="record"):
            record_evaluation(packaged, name, good)
    assert packaged.read_bytes() == original


def test_info_says_when_the_training_data_was_no_synthetic_corpus(packaged) -> None:
    detector = load_model(packaged)
    assert detector.describe()["corpus"] == "not recorded"  # synth, written without providers
    detector.config.data = DataConfig(format="generic", path="somewhere")
    assert detector.describe()["corpus"] == "none (not synthetic)"


def test_a_record_of_other_weights_is_marked_in_the_table(packaged) -> None:
    detector = load_model(packaged)
    detector.evaluations = {"old": {"weights_sha256": "0" * 64, "data": "d", "auc": 0.7}}
    assert detector.figures_table()[1].startswith("old (other weights)  d")


def test_ship_copies_an_intact_model_within_the_size_limit(tmp_path, capsys,
                                                          monkeypatch) -> None:
    source = save_tiny_model(tmp_path / "run" / "model.pt")
    dest = tmp_path / "package" / "default.pt"
    assert shipped.main([str(source), str(dest)]) == 0
    assert dest.read_bytes() == source.read_bytes()
    size = source.stat().st_size
    monkeypatch.setattr(shipped, "MAX_BYTES", size - 1)
    dest.unlink()
    status = shipped.main([str(source), str(dest)])
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1, err
    assert f"{source}: {size} bytes, more than the {size - 1} bytes" in err
    assert not dest.exists() and temp_files(dest.parent) == []
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.pt"):
        shipped.ship(tmp_path / "junk.pt", dest)
    assert not dest.exists()


def test_the_real_limit_is_5_mb_and_the_default_model_lives_in_the_package() -> None:
    assert shipped.MAX_BYTES == 5_000_000
    package = Path(shipped.__file__).parent
    assert package / "models" / "default.pt" == shipped.DEFAULT_MODEL


@pytest.mark.skipif(not shipped.DEFAULT_MODEL.is_file(),
                    reason="no musicdet/models/default.pt in this checkout (make model)")
def test_the_committed_default_model_loads_and_is_within_the_limit() -> None:
    """Runs once the model is committed: it must stay loadable (rerun make model after a
    format change) and within the 5 MB the repository allows."""
    assert shipped.DEFAULT_MODEL.stat().st_size <= shipped.MAX_BYTES
    detector = load_model(shipped.DEFAULT_MODEL)
    assert detector.training_data is not None and detector.training_data.providers
    assert all(r["weights_sha256"] == detector.weights_sha256()
               for r in detector.evaluations.values())


def test_training_data_records_the_corpus_and_its_providers() -> None:
    manifest = {"hours": 0.5, "seed": 3, "validation": [],
                "sources": [{"name": "gm-scores", "kind": "music", "version": "v1",
                             "licence": "x"}, {"name": "espeak", "kind": "speech",
                                               "version": "v2", "licence": "y"}]}
    amounts = PreparedData([], [], manifest).amounts(100.0)
    assert (amounts.corpus_hours, amounts.corpus_seed) == (0.5, 3)
    assert amounts.providers == ["gm-scores (v1)", "espeak (v2)"]
    assert amounts.describe_corpus() == ("0.5 h synthetic corpus of seed 3; providers: "
                                         "gm-scores (v1), espeak (v2)")
    assert PreparedData([], []).amounts(100.0) == TrainingData(0, 0.0, 0, 0.0)
