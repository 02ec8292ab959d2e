"""One convention for both CLIs: --version, exit statuses in --help, one error-line prefix,
plain help text; musicdet's features --config/--set, info, and --device."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from guarantees import assert_one_error_line, run_cli, write_tone
from test_detect import THRESHOLD, save_tiny_model, write_wav

from musicdet import __version__
from musicdet import cli as musicdet_cli
from musicdet.cli import format_sections
from musicdet.config import RunConfig
from musicdet.errors import EPILOG, MEANINGS, ExitStatus
from search import cli as search_cli

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *(p for action in subs for p in action.choices.values())]


@pytest.mark.parametrize("cli", [musicdet_cli, search_cli])
def test_version(cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"{cli.PROG} {__version__}\n"


@pytest.mark.parametrize("cli", [musicdet_cli, search_cli])
def test_every_help_lists_the_exit_statuses_and_shows_no_markup(cli) -> None:
    for parser in parsers(cli.build_parser()):
        text = parser.format_help()
        assert EPILOG in text, parser.prog
        assert "`" not in text, (parser.prog, text)
    assert [int(s) for s in MEANINGS] == [0, 1, 2, 3, 4, 130]
    assert "\n    2  bad input or usage" in EPILOG


def test_both_clis_report_bad_input_as_prog_error_and_status_2(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.yaml"
    assert musicdet_cli.main(["train", "--config", str(missing), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"musicdet: error: {missing}: cannot read: " \
                                      "No such file or directory\n"
    assert search_cli.main(["status", str(missing)]) == 2
    assert capsys.readouterr().err == f"musicdet-search: error: {missing}: cannot read: " \
                                      "No such file or directory\n"


def test_a_diverged_training_is_status_1_with_the_error_prefix(tmp_path, monkeypatch, capsys):
    from musicdet import train as train_module

    def diverge(*args, **kwargs):
        raise train_module.NonFiniteLossError("epoch 3, step 7: loss is nan")

    monkeypatch.setattr(train_module, "train", diverge)
    assert musicdet_cli.main(["train", "--out", str(tmp_path)]) == ExitStatus.FAILED
    assert capsys.readouterr().err == \
        "musicdet: error: training failed: epoch 3, step 7: loss is nan\n"


def test_an_interruption_is_status_130(tmp_path, monkeypatch, capsys) -> None:
    from musicdet import train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    assert musicdet_cli.main(["train", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "musicdet: error: interrupted\n"


# --------------------------------------------------------------------------- features


def test_features_take_the_run_configs_feature_section(tmp_path: Path, capsys) -> None:
    tone = write_tone(tmp_path / "tone.wav", seconds=1.0)
    config = RunConfig.from_dict({"features": {"hop_length": 320}})
    config.save(tmp_path / "run.yaml")
    outcome = run_cli(capsys, "features", tone, "--out", tmp_path / "a",
                      "--config", tmp_path / "run.yaml")
    assert outcome.status == 0, outcome
    outcome = run_cli(capsys, "features", tone, "--out", tmp_path / "b",
                      "--set", "features.hop_length=320", "--set", "features.n_mels=64")
    assert outcome.status == 0, outcome
    outcome = run_cli(capsys, "features", tone, "--out", tmp_path / "c")
    assert outcome.status == 0, outcome
    # frames centred at t * hop: 1 + 16000 // hop of them
    assert np.load(tmp_path / "a" / "tone.npy").shape == (51, 140)
    assert np.load(tmp_path / "b" / "tone.npy").shape == (51, 76)
    assert np.load(tmp_path / "c" / "tone.npy").shape == (101, 140)


def test_features_refuse_an_override_outside_the_features_section(tmp_path, capsys) -> None:
    tone = write_tone(tmp_path / "tone.wav")
    outcome = run_cli(capsys, "features", tone, "--out", tmp_path / "out",
                      "--set", "training.epochs=5")
    assert_one_error_line(outcome, "--set", "features.KEY=VALUE", "training.epochs=5")
    outcome = run_cli(capsys, "features", tone, "--out", tmp_path / "out",
                      "--set", "features.hop_length=0")
    assert_one_error_line(outcome, "features.hop_length", "0 < hop_length <= win_length")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- info


def test_info_prints_the_model_description_with_its_threshold(tmp_path: Path, capsys) -> None:
    model = save_tiny_model(tmp_path / "model.pt")
    outcome = run_cli(capsys, "info", model)
    assert outcome.status == 0 and outcome.err == "", outcome
    threshold_line = next(line for line in outcome.out.splitlines()
                          if line.startswith("threshold:"))
    assert f"{THRESHOLD:.4f}" in threshold_line and "precision 0.90" in threshold_line
    assert_one_error_line(run_cli(capsys, "info", tmp_path / "none.pt"), "none.pt")


def test_sections_print_as_indented_key_value_lines() -> None:
    sections = {"trained on": {"data": "runs/corpus", "files": 12, "bands": [0.0, 0.25]},
                "threshold": {"value": 0.123456789, "rule": None}, "label_map": {}}
    assert format_sections(sections) == [
        "trained on:", "  data: runs/corpus", "  files: 12", "  bands: 0, 0.25",
        "threshold:", "  value: 0.123457", "  rule: none", "label_map: none"]


# --------------------------------------------------------------------------- --device


@NO_GPU
@pytest.mark.parametrize("command", ["detect", "evaluate"])
def test_cuda_without_a_gpu_is_one_line(tmp_path: Path, capsys, command: str) -> None:
    model = save_tiny_model(tmp_path / "model.pt")
    write_wav(tmp_path / "data" / "a.wav", 2.0)
    (tmp_path / "data" / "a.tsv").write_text("onset\toffset\tlabel\n0\t1\tno-music\n1\t2\tmusic\n")
    where = [tmp_path / "data" / "a.wav"] if command == "detect" else ["--data", tmp_path / "data"]
    outcome = run_cli(capsys, command, model, *where, "--out", tmp_path / "out",
                      "--device", "cuda")
    assert_one_error_line(outcome, "device", "cuda was asked for but no GPU is available")
    assert not (tmp_path / "out").exists()


def test_detect_and_evaluate_run_on_auto_and_cpu_alike(tmp_path: Path, capsys) -> None:
    model = save_tiny_model(tmp_path / "model.pt")
    audio = write_wav(tmp_path / "data" / "a.wav", 2.0)
    (tmp_path / "data" / "a.tsv").write_text("onset\toffset\tlabel\n0\t1\tno-music\n1\t2\tmusic\n")
    for device in ("cpu", "auto"):
        assert run_cli(capsys, "detect", model, audio, "--out", tmp_path / device,
                       "--device", device).status == 0
        assert run_cli(capsys, "evaluate", model, "--data", tmp_path / "data", "--out",
                       tmp_path / device, "--cache-dir", tmp_path / "cache",
                       "--device", device).status == 0
    for name in ("a.segments.tsv", "metrics.json"):
        assert (tmp_path / "auto" / name).read_text() == (tmp_path / "cpu" / name).read_text()
