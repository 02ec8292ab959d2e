"""The error types commands report, and the exit statuses both CLIs share.

Library code raises; only a CLI turns an error into one stderr line ``PROG: error: message``
and an exit status from `ExitStatus`, the same table for ``musicdet`` and ``musicdet-search``.
"""

from __future__ import annotations

import sys
from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit statuses of both CLIs (listed in their --help and the README)."""

    OK = 0
    FAILED = 1  # the work failed: files that could not be processed, a diverged training, ...
    BAD_INPUT = 2  # bad input or usage: a file, key or value; the error line names it
    UNFINISHED = 3  # the study is not finished: fewer trials than asked, or none completed
    LOST_DATABASE = 4  # the connection to the study's database was lost mid-run
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


MEANINGS = {
    ExitStatus.OK: "done",
    ExitStatus.FAILED: "the work failed (some files, a diverged training, the UI server)",
    ExitStatus.BAD_INPUT: "bad input or usage (the line names the file, key or value)",
    ExitStatus.UNFINISHED: "the study is not finished (fewer trials than asked, or none "
                           "completed)",
    ExitStatus.LOST_DATABASE: "lost the study's database connection (continue with --resume)",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}

EPILOG = "exit status:\n" + "\n".join(
    f"  {int(status):>3}  {meaning}" for status, meaning in MEANINGS.items())


class CommandError(Exception):
    """An error a command reports as one line; ``status`` is the exit status it means."""

    status = ExitStatus.FAILED

    def __init__(self, message: str, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class UnfinishedError(CommandError):
    """What was asked needs a study that has not got that far (e.g. no completed trial)."""

    status = ExitStatus.UNFINISHED


def report(prog: str, message: object, status: ExitStatus) -> int:
    """Print ``PROG: error: message`` to stderr (one line); return ``status``."""
    line = " ".join(str(message).split()) or type(message).__name__
    print(f"{prog}: error: {line}", file=sys.stderr)
    return int(status)
