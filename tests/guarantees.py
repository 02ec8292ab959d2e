"""Helpers shared by the tests/test_guarantees_*.py suite (run the CLI as a user would) and
by the training tests (a run stopped after its first epoch, then resumed)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from musicdet.cli import main
from musicdet.modelfile import load_model
from musicdet.train import TrainResult, train

# One torch/BLAS thread in subprocesses too, as tests/conftest.py sets in this one.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Outcome:
    """What a user sees: exit status, stdout and stderr."""

    status: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Outcome:
    """``musicdet ARGS`` in this process (``--quiet`` added after the command)."""
    command, *rest = map(str, args)
    status = main([command, "--quiet", *rest])
    captured = capsys.readouterr()
    return Outcome(status, captured.out, captured.err)


def run_cli_process(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m musicdet.cli ARGS --quiet`` started as a child process."""
    command, *rest = map(str, args)
    return subprocess.Popen(
        [sys.executable, "-m", "musicdet.cli", command, "--quiet", *rest],
        cwd=cwd, env=SUBPROCESS_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def assert_one_error_line(outcome: Outcome, *needles: str | Path) -> str:
    """Exit status 2 and exactly one stderr line ``musicdet: error: …`` holding each needle."""
    lines = outcome.err.splitlines()
    assert outcome.status == 2, outcome
    assert len(lines) == 1 and lines[0].startswith("musicdet: error: "), outcome.err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    """Temporary files `musicdet.fsutil` left under ``folder`` (``.NAME.*.tmp``)."""
    return sorted(folder.rglob(".*.tmp")) if folder.exists() else []


def write_tone(
    path: Path, seconds: float = 1.0, rate: int = 16000, channels: int = 1, **options: object
) -> Path:
    """A 440 Hz tone at half scale on every channel (soundfile options: subtype, format)."""
    time = np.arange(round(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * time)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.repeat(tone[:, None], channels, axis=1), rate, **options)
    return path


class Interrupt(Exception):
    """Raised by `stop_after_first_epoch` to stop a training run."""


def stop_after_first_epoch(report) -> None:
    if report.epoch == 1:
        raise Interrupt


def assert_resumed_run_equals_uninterrupted(config, folder: Path, data
                                            ) -> tuple[TrainResult, TrainResult]:
    """Train ``config`` whole in folder/whole, and in folder/split stopped after epoch 1 then
    resumed; assert equal histories (but for wall time) and equal weights; return both."""
    whole = train(config, folder / "whole", data=data, progress=False)
    with pytest.raises(Interrupt):
        train(config, folder / "split", data=data, on_epoch=stop_after_first_epoch,
              progress=False)
    resumed = train(config, folder / "split", data=data, progress=False)
    assert [r.metrics() | {"seconds": 0} for r in resumed.history] == [
        r.metrics() | {"seconds": 0} for r in whole.history]
    a = load_model(whole.model_path).model.state_dict()
    b = load_model(resumed.model_path).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    return whole, resumed
