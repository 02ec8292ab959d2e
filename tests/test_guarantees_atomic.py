"""Guarantees for writes: a process killed (SIGKILL) while writing leaves the final path absent or
complete, never half-written; leftovers are temporary names nothing reads; a damaged cache entry
is recomputed, not trusted; files get the usual permissions."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from musicdet import features
from musicdet.audio import SAMPLE_RATE
from musicdet.features import FeatureCache, FeatureConfig, extract_file
from musicdet.fsutil import save_npy, write_text

WRITER = """
import sys
import numpy as np
from musicdet.fsutil import save_npy, write_text
folder = sys.argv[1]
print("ready", flush=True)
for value in range(1, 1_000_000):
    save_npy(f"{folder}/array.npy", np.full(2_000_000, value, dtype=np.float64))  # 16 MB
    write_text(f"{folder}/text.txt", f"{value}\\n" * 200_000 + "end\\n")
"""


def check_complete(folder: Path) -> None:
    """Each final file is absent or whole: one value throughout and the full length."""
    if (folder / "array.npy").exists():
        array = np.load(folder / "array.npy")
        assert array.shape == (2_000_000,) and np.all(array == array[0])
    if (folder / "text.txt").exists():
        lines = (folder / "text.txt").read_text().splitlines()
        assert len(lines) == 200_001 and lines[-1] == "end" and len(set(lines[:-1])) == 1


def test_writes_killed_at_random_times_leave_absent_or_complete_files(tmp_path):
    rng = np.random.default_rng(0)
    for attempt in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                                  stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.6) if attempt else 0.0)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        check_complete(tmp_path)
    leftovers = [path.name for path in tmp_path.iterdir()
                 if path.name not in {"array.npy", "text.txt"}]
    assert leftovers, "no kill landed during a write"
    assert all(name.startswith((".array.npy.", ".text.txt.")) and name.endswith(".tmp")
               for name in leftovers), leftovers


def test_written_files_get_the_umask_permissions(tmp_path):
    mask = os.umask(0o027)
    os.umask(mask)
    write_text(tmp_path / "a.txt", "x")
    save_npy(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "plain.txt").write_text("x")
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~mask
    assert [(tmp_path / name).stat().st_mode & 0o777 for name in ("a.txt", "a.npy")] == [
        expected, expected]


def test_cache_recomputes_a_truncated_entry_and_ignores_temporary_files(tmp_path, monkeypatch):
    audio = tmp_path / "clip.wav"
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, SAMPLE_RATE).astype(np.float32)
    soundfile.write(audio, noise, SAMPLE_RATE)
    config = FeatureConfig()
    cache = FeatureCache(tmp_path / "cache")
    good = cache.load(audio, config)
    entry = cache.path(audio, config)
    leftover = entry.with_name(f".{entry.name}.abc123.tmp")  # what a killed writer leaves
    leftover.write_bytes(entry.read_bytes()[:1000])
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a damaged entry
    calls = []
    monkeypatch.setattr(features, "extract_file",
                        lambda path, cfg: calls.append(path) or extract_file(path, cfg))
    np.testing.assert_array_equal(cache.load(audio, config), good)
    assert calls == [audio]
    np.testing.assert_array_equal(np.load(entry), good)  # repaired in place


def _build(root: str, audio: list[str]) -> list[str]:
    """Every file's features through the cache at ``root``, memory-mapped: their paths."""
    cache = FeatureCache(root)
    return [str(cache.load(path, FeatureConfig(), mmap=True).filename) for path in audio]


def test_two_processes_building_one_cache_at_once_both_get_complete_entries(tmp_path) -> None:
    """Two drivers filling the shared feature cache at once: each renames complete files into
    place (the same content, by key), so both end with every entry and nothing half-written."""
    rng = np.random.default_rng(2)
    audio = []
    for index in range(4):
        path = tmp_path / f"clip{index}.wav"
        soundfile.write(path, rng.uniform(-0.5, 0.5, 3 * SAMPLE_RATE).astype(np.float32),
                        SAMPLE_RATE)
        audio.append(str(path))
    root = str(tmp_path / "cache")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        first, second = pool.map(_build, [root, root], [audio, audio[::-1]])
    assert first == second[::-1]
    assert sorted(p.name for p in Path(root).iterdir()) == sorted(Path(p).name for p in first)
    for path, entry in zip(audio, first, strict=True):
        np.testing.assert_array_equal(np.load(entry), extract_file(path, FeatureConfig()))
