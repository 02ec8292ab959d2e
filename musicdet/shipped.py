"""The default detector shipped inside the package: musicdet/models/default.pt.

``make model`` trains it (see the Makefile and README) and installs it with
``python -m musicdet.shipped MODEL [DEST]``, which refuses a file that is not an intact model
file or is larger than `MAX_BYTES`. `detect`, `evaluate` and `info` use it when no model is
given; in a checkout where it has not been made, they say how to make it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import ExitStatus, report
from .fsutil import atomic_path
from .modelfile import ModelFileError, load_model

DEFAULT_MODEL = Path(__file__).parent / "models" / "default.pt"
MAX_BYTES = 5_000_000  # the largest model file the repository may hold (5 MB)
PROG = "python -m musicdet.shipped"


def default_model() -> Path:
    """The shipped model file; `ModelFileError` saying how to make it where it is absent."""
    if not DEFAULT_MODEL.is_file():
        raise ModelFileError(f"{DEFAULT_MODEL}: no default model in this checkout; make it "
                             "with: make model (see README), or name a model file")
    return DEFAULT_MODEL


def ship(source: str | Path, dest: str | Path | None = None) -> Path:
    """Copy model file ``source`` to ``dest`` (default `DEFAULT_MODEL`) atomically, after
    checking that it loads and is at most `MAX_BYTES`; returns ``dest``."""
    source, dest = Path(source), Path(dest or DEFAULT_MODEL)
    load_model(source)
    size = source.stat().st_size
    if size > MAX_BYTES:
        raise ModelFileError(f"{source}: {size} bytes, more than the {MAX_BYTES} bytes (5 MB) "
                             "a shipped model may have; train a smaller model "
                             "(model.hidden_size)")
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """Install a model file as the shipped default; errors are one line, exit status 2."""
    parser = argparse.ArgumentParser(prog=PROG, description=main.__doc__)
    parser.add_argument("model", type=Path, help="model file (model.pt from musicdet train)")
    parser.add_argument("dest", type=Path, nargs="?", help=f"where to (default {DEFAULT_MODEL})")
    args = parser.parse_args(argv)
    try:
        dest = ship(args.model, args.dest)
    except (ValueError, OSError) as error:
        return report(PROG, error, ExitStatus.BAD_INPUT)
    print(f"{args.model} -> {dest} ({dest.stat().st_size} bytes)")
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
