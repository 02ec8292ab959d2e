"""musicdet.devices: the auto | cpu | cuda choice shared by training and detection."""

from __future__ import annotations

import pytest
import torch

from musicdet.configtools import ConfigError
from musicdet.devices import choose_device


@pytest.mark.parametrize(("gpu", "expected"), [(True, "cuda"), (False, "cpu")])
def test_auto_takes_the_gpu_when_there_is_one(monkeypatch, gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert choose_device("auto") == torch.device(expected)
    assert choose_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_and_unknown_choices_are_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^training\.device: cuda was asked for but no GPU "
                                          r"is available; expected auto or cpu on this machine$"):
        choose_device("cuda", "training.device")
    with pytest.raises(ConfigError, match=r"^device: expected one of auto, cpu, cuda, got 'gpu'$"):
        choose_device("gpu")
