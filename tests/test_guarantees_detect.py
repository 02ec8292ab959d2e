"""Guarantees for `musicdet detect` and `musicdet evaluate` on bad model files: one line naming
the file, exit status 2, no output written, a crafted pickle's payload never runs; and
`musicdet detect`'s peak memory does not grow with the length of the recording."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from guarantees import SUBPROCESS_ENV, assert_one_error_line, run_cli, write_tone
from test_guarantees_modelfile import DAMAGED, tiny_model_file
from test_guarantees_security import crafted_files


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt")


def labelled_folder(root: Path) -> Path:
    for name in ("a", "b"):
        write_tone(root / f"{name}.wav", 2.0)
        (root / f"{name}.tsv").write_text("onset\toffset\tlabel\n0\t1\tmusic\n1\t2\tno-music\n")
    return root


def commands(model: Path, tmp_path: Path) -> dict[str, list[str | Path]]:
    data = labelled_folder(tmp_path / "data")
    return {
        "detect": ["detect", model, data, "--out", tmp_path / "out"],
        "evaluate": ["evaluate", model, "--data", data, "--out", tmp_path / "out",
                     "--cache-dir", tmp_path / "cache"],
    }


@pytest.mark.parametrize("command", ["detect", "evaluate"])
@pytest.mark.parametrize("case", ["truncated-half", "empty", "zip", "newer-version", "no-config",
                                  "other-weights"])
def test_bad_model_file_is_one_line_exit_2_and_no_output(tmp_path, capsys, good, command, case):
    make, message = DAMAGED[case]
    model = tmp_path / "model.pt"
    make(model, good)
    outcome = run_cli(capsys, *commands(model, tmp_path)[command])
    assert_one_error_line(outcome, f"{model}: ", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["detect", "evaluate"])
@pytest.mark.parametrize("kind", ["zipped", "plain"])
def test_crafted_model_file_is_refused_and_never_runs(tmp_path, capsys, command, kind):
    marker = tmp_path / "ran"
    model = crafted_files(tmp_path / "crafted", marker)[kind]
    outcome = run_cli(capsys, *commands(model, tmp_path)[command])
    assert_one_error_line(outcome, f"{model}: ", "refused, as loading them could run code")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["detect", "evaluate"])
def test_missing_model_file_is_one_line(tmp_path, capsys, command):
    model = tmp_path / "absent.pt"
    assert_one_error_line(run_cli(capsys, *commands(model, tmp_path)[command]),
                          f"{model}: no such model file")


# The child runs `musicdet detect` and prints its own peak resident set size (KiB on Linux).
PEAK_RSS_CHILD = """
import resource, sys
from musicdet.cli import main
status = main(["detect", *sys.argv[1:], "--frame-scores", "npy", "--quiet"])
print(status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_programme(path: Path, minutes: int) -> Path:
    """A tone over noise, 16 kHz PCM, written a minute at a time (1.9 MB a minute)."""
    time = np.arange(60 * 16000) / 16000
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(time))
    minute = (0.3 * np.sin(2 * np.pi * 440.0 * time) + noise).astype(np.float32)
    with soundfile.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as sound:
        for _ in range(minutes):
            sound.write(minute)
    return path


def detect_peak_rss(model: Path, audio: Path, out: Path) -> float:
    """Peak resident memory (MB) of a fresh process running ``musicdet detect`` on ``audio``."""
    child = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, str(model), str(audio),
                            "--out", str(out)], env=SUBPROCESS_ENV, capture_output=True,
                           text=True, timeout=600, check=True)
    status, peak_kib = child.stdout.splitlines()[-1].split()  # after detect's summary line
    assert status == "0", child.stderr
    return int(peak_kib) / 1024


@pytest.mark.slow
def test_detect_peak_memory_does_not_grow_with_the_recording(tmp_path, good):
    """10 min vs 40 min (~40 s here): the peak may grow by the per-frame decisions only
    (`Decider`: 1-2 bytes a frame, < 1 MB over the 30 extra minutes; frame scores are written
    as they come) and allocator noise, well under the 100 MB that holding every feature
    frame, or 115 MB that holding the audio, adds."""
    peaks = {minutes: detect_peak_rss(good, write_programme(tmp_path / f"{minutes}.wav", minutes),
                                      tmp_path / "out")
             for minutes in (10, 40)}
    assert peaks[40] - peaks[10] < 20, f"peak RSS {peaks} MB for a 10 and a 40 minute recording"
