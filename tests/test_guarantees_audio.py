"""Guarantees for audio input, as `musicdet features` users meet them: every bad file gives one
line naming it, exit status ≠ 0 and no output for it; every odd but valid file is read; memory
stays flat on a 4-hour file."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from guarantees import assert_one_error_line, run_cli, run_cli_process, temp_files, write_tone

from musicdet.audio import SAMPLE_RATE, stream_audio
from musicdet.features import FeatureConfig, num_frames

FRAME_DIMS = 140


def truncated(path: Path) -> None:
    data = write_tone(path, 1.0).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def wrong_header(path: Path) -> None:
    data = bytearray(write_tone(path, 1.0).read_bytes())
    data[20:36] = b"\xff" * 16  # the fmt chunk: format tag, channels, rate, ...
    path.write_bytes(bytes(data))


def with_sample(value: float) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        samples = np.zeros(SAMPLE_RATE, dtype=np.float32)
        samples[4000] = value
        soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")

    return make


BAD_FILES = {
    "truncated.wav": (truncated, "truncated: the header declares"),
    "wrong-header.wav": (wrong_header, "cannot decode"),
    "text.mp3": (lambda path: path.write_text("not audio\n" * 50), "(no audio frames found)"),
    "zero-bytes.wav": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "zero-samples.wav": (
        lambda path: soundfile.write(path, np.zeros((0, 1)), SAMPLE_RATE),
        "contains no audio samples",
    ),
    "nan.wav": (with_sample(np.nan), "NaN or infinite sample at 0.250 s"),
    "inf.wav": (with_sample(np.inf), "NaN or infinite sample at 0.250 s"),
    "minus-inf.flac.wav": (with_sample(-np.inf), "NaN or infinite sample at 0.250 s"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_audio_file_is_one_line_exit_2_and_no_output(tmp_path, capsys, name):
    make, message = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    out = tmp_path / "features"
    outcome = run_cli(capsys, "features", path, "--out", out)
    assert_one_error_line(outcome, path, message, "; expected")
    assert not out.exists() or not any(out.iterdir())
    assert temp_files(tmp_path) == []


# name → (sample rate Hz, channels, soundfile options); all-zero samples are documented valid.
VALID_FILES = {
    "silence.wav": (16000, 1, {"subtype": "PCM_16"}),
    "narrowband.wav": (8000, 1, {"subtype": "PCM_16"}),
    "studio.wav": (48000, 1, {"subtype": "PCM_16"}),
    "stereo.wav": (44100, 2, {"subtype": "PCM_16"}),
    "surround.wav": (48000, 6, {"subtype": "PCM_16"}),
    "pcm24.wav": (22050, 1, {"subtype": "PCM_24"}),
    "float.wav": (16000, 2, {"subtype": "FLOAT"}),
    "lossless.flac": (44100, 2, {"subtype": "PCM_16"}),
    "vorbis.ogg": (48000, 2, {"subtype": "VORBIS"}),
    "mpeg.mp3": (44100, 2, {"format": "MP3"}),
}


def test_every_rate_channel_layout_and_codec_gives_features(tmp_path, capsys):
    for name, (rate, channels, options) in VALID_FILES.items():
        write_tone(tmp_path / "audio" / name, 1.5, rate, channels, **options)
    silence = tmp_path / "audio" / "silence.wav"
    soundfile.write(silence, np.zeros(24000, dtype=np.int16), SAMPLE_RATE)
    outcome = run_cli(capsys, "features", tmp_path / "audio", "--out", tmp_path / "out")
    assert (outcome.status, outcome.err) == (0, "")
    expected = num_frames(round(1.5 * SAMPLE_RATE), FeatureConfig())
    for name in VALID_FILES:
        features = np.load(tmp_path / "out" / f"{Path(name).stem}.npy")
        assert features.dtype == np.float32 and features.shape[1] == FRAME_DIMS, name
        assert np.isfinite(features).all(), name
        slack = 0.1 * expected if name.endswith(".mp3") else 1  # MP3 adds encoder padding
        assert abs(len(features) - expected) <= slack, (name, len(features), expected)
    assert np.all(np.load(tmp_path / "out" / "silence.npy")[:, -12:] == 0)  # no chroma energy


@pytest.fixture
def folder_with_one_bad_file(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "audio"
    write_tone(folder / "a.wav")
    truncated(folder / "b.wav")
    write_tone(folder / "c.flac", rate=44100)
    return folder, folder / "b.wav"


def test_bad_file_in_a_folder_stops_the_run_at_it(tmp_path, capsys, folder_with_one_bad_file):
    folder, bad = folder_with_one_bad_file
    out = tmp_path / "out"
    assert_one_error_line(run_cli(capsys, "features", folder, "--out", out), bad, "truncated")
    assert sorted(p.name for p in out.iterdir()) == ["a.npy"]  # files after b.wav not reached


def test_skip_bad_writes_the_good_files_reports_the_bad_one_and_fails(
    tmp_path, capsys, folder_with_one_bad_file
):
    folder, bad = folder_with_one_bad_file
    out = tmp_path / "out"
    outcome = run_cli(capsys, "features", folder, "--out", out, "--skip-bad")
    assert outcome.status == 1 and outcome.out == ""
    assert outcome.err.splitlines() == [
        f"musicdet: skipped {bad}: truncated: the header declares 32000 bytes of samples, "
        "the file holds 15978; expected a complete file (copy or re-encode it again)",
        "musicdet: error: 1 file(s) failed",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "c.npy"]
    assert temp_files(tmp_path) == []


def test_feature_outputs_stay_inside_out(tmp_path, capsys, monkeypatch):
    """Odd names and ``..`` in input paths never put an output outside --out."""
    monkeypatch.chdir(tmp_path)
    write_tone(tmp_path / "in" / "deep" / "...wav", format="WAV")
    write_tone(tmp_path / "in" / "x y.wav")
    before = {p for p in tmp_path.rglob("*")}
    inputs = ["in/deep/...wav", "in/deep/../x y.wav"]
    assert run_cli(capsys, "features", *inputs, "--out", "out").status == 0
    created = {p for p in tmp_path.rglob("*")} - before
    assert created == {tmp_path / "out", tmp_path / "out" / "...npy", tmp_path / "out" / "x y.npy"}


def test_undecodable_mp3_ends_with_the_one_error_line(tmp_path):
    """libmpg123 (inside libsndfile) prints its own notes on fd 2 first; the last line is ours."""
    path = tmp_path / "zeros.mp3"
    path.write_bytes(bytes(5000))
    child = run_cli_process("features", path, "--out", tmp_path / "out")
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2
    assert err.decode().splitlines()[-1] == (
        f"musicdet: error: {path}: cannot decode (no audio frames found); expected an audio file "
        "that soundfile (wav, flac, ogg, mp3, ...) or audioread decodes"
    )
    assert not (tmp_path / "out").exists()


def write_near_silence(path: Path, hours: float, rate: int) -> None:
    """±1 LSB noise written block by block: 4 h at 8 kHz is a 29 MB FLAC."""
    block = np.random.default_rng(0).integers(-1, 2, size=600 * rate).astype(np.int16)
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16", format="FLAC") as sound:
        for _ in range(round(hours * 3600 / 600)):
            sound.write(block)


def test_four_hour_file_streams_with_flat_memory(tmp_path):
    path = tmp_path / "four-hours.flac"
    write_near_silence(path, 4.0, 8000)  # 8 kHz: the resampler streams too
    tracemalloc.start()
    try:
        total = sum(len(block) for block in stream_audio(path, block_seconds=60.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(total - 4 * 3600 * SAMPLE_RATE) <= 1
    whole_file = 4 * 3600 * SAMPLE_RATE * 4  # bytes of float32 samples
    assert peak < 32e6, f"peak {peak / 1e6:.1f} MB while streaming a {whole_file / 1e6:.0f} MB file"
