"""The torch device a model runs on, chosen the same way for training and detection."""

from __future__ import annotations

from typing import Literal, get_args

import torch

from .configtools import ConfigError

DeviceChoice = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = get_args(DeviceChoice)


def choose_device(choice: str, key: str = "device") -> torch.device:
    """``auto``: cuda where a GPU is available, else cpu; ``cpu`` / ``cuda`` as asked.

    cuda asked for without a GPU, or any other choice, is a `ConfigError` naming ``key``.
    """
    if choice not in DEVICE_CHOICES:
        raise ConfigError(key, f"expected one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(key, "cuda was asked for but no GPU is available; expected auto or cpu "
                               "on this machine")
    return torch.device(choice)
