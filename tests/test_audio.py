"""musicdet.audio: decoding, resampling, streaming, refusal of bad files, find_audio."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from musicdet import audio
from musicdet.audio import (
    SAMPLE_RATE,
    AudioError,
    audio_duration,
    find_audio,
    load_audio,
    stream_audio,
)
from musicdet.features import write_features


def sine(seconds: float, rate: int, frequency: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)).astype(
        np.float32
    )


def write(path: Path, rate: int, channels: int = 1, seconds: float = 1.0, **options) -> Path:
    """A 440 Hz sine, the same on every channel, so the mono mix is that sine."""
    samples = np.repeat(sine(seconds, rate)[:, None], channels, axis=1)
    soundfile.write(path, samples, rate, **options)
    return path


@pytest.mark.parametrize(
    ("name", "rate", "channels", "options", "tolerance"),
    [
        ("pcm16.wav", 16000, 1, {"subtype": "PCM_16"}, 1e-4),
        ("narrow.wav", 8000, 1, {"subtype": "PCM_16"}, 2e-3),
        ("cd.wav", 44100, 2, {"subtype": "PCM_24"}, 2e-3),
        ("surround.wav", 48000, 6, {"subtype": "FLOAT"}, 2e-3),
        ("lossless.flac", 44100, 2, {"subtype": "PCM_16"}, 2e-3),
        ("lossy.ogg", 48000, 2, {"subtype": "VORBIS"}, 5e-2),
        ("lossy.mp3", 44100, 2, {"format": "MP3"}, 5e-2),
    ],
)
def test_formats_decode_to_16k_mono_float32(tmp_path, name, rate, channels, options, tolerance):
    path = write(tmp_path / name, rate, channels, **options)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    if "mp3" not in name:  # MP3 adds encoder delay and padding
        assert abs(len(audio) - SAMPLE_RATE) <= 1
    # away from the edges the 16 kHz mono mix is the same 440 Hz sine
    middle = slice(800, 15000)
    reference = sine(1.0, SAMPLE_RATE)[middle]
    if "mp3" in name:  # align the encoder delay before comparing
        lag = int(np.argmax(np.correlate(audio[:4000], reference[:2000], mode="valid")))
        middle = slice(lag, lag + len(reference))
        audio = audio[: middle.stop]
    assert np.sqrt(np.mean((audio[middle] - reference) ** 2)) < tolerance
    assert audio_duration(path) == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (16000, 1)])
def test_stream_equals_whole_file(tmp_path, rate, channels):
    path = write(tmp_path / "long.wav", rate, channels, seconds=3.3)
    blocks = list(stream_audio(path, block_seconds=0.7))
    assert [len(block) for block in blocks[:-1]] == [11200] * (len(blocks) - 1)
    assert 0 < len(blocks[-1]) <= 11200
    assert np.array_equal(np.concatenate(blocks), load_audio(path))


def test_digital_silence_is_valid(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(8000, dtype=np.int16), SAMPLE_RATE)
    audio = load_audio(path)
    assert len(audio) == 8000 and not audio.any()


def test_float_samples_beyond_full_scale_are_kept(tmp_path):
    path = tmp_path / "loud.wav"
    soundfile.write(path, np.full(100, 1.5, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    assert np.all(load_audio(path) == 1.5)


def wav_bytes(tmp_path: Path) -> bytes:
    return write(tmp_path / "good.wav", SAMPLE_RATE, 2, subtype="PCM_16").read_bytes()


def nan_file(path: Path) -> None:
    samples = sine(1.0, SAMPLE_RATE)
    samples[8000] = np.nan
    soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")


def inf_file(path: Path) -> None:
    samples = sine(1.0, SAMPLE_RATE)
    samples[12345] = np.inf
    soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path, good: path.write_bytes(good[: len(good) // 2]), "truncated"),
        (lambda path, good: path.write_bytes(good[:30]), "No 'data' chunk"),
        (lambda path, good: path.write_bytes(b"RIFF" + b"\x00" * 100), "cannot decode"),
        (lambda path, good: path.write_text("not audio at all\n" * 20), "cannot decode"),
        (lambda path, good: path.write_bytes(b""), "empty (0 bytes)"),
        (lambda path, good: soundfile.write(path, np.zeros((0, 1)), SAMPLE_RATE), "no audio"),
        (lambda path, good: nan_file(path), "NaN or infinite sample at 0.500 s"),
        (lambda path, good: inf_file(path), "NaN or infinite sample at 0.772 s"),
    ],
    ids=[
        "truncated",
        "header-only",
        "wrong-header",
        "text",
        "zero-bytes",
        "zero-samples",
        "nan",
        "inf",
    ],
)
def test_bad_files_raise_one_clear_line(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path, wav_bytes(tmp_path))
    with pytest.raises(AudioError, match=re.escape(message)) as caught:
        load_audio(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "; expected" in text and "\n" not in text
    assert caught.value.path == path


class BrokenResampler:
    """A soxr stream whose second chunk hits a bug (here, not in the decoder)."""

    def __init__(self, *args, **kwargs) -> None:
        self.chunks = 0

    def resample_chunk(self, block, last=False):
        self.chunks += 1
        if self.chunks > 1:
            raise ZeroDivisionError("a bug in resampling")
        return block


def broken_rebuffer(blocks, size):
    yield next(iter(blocks))
    raise TypeError("a bug in rebuffering")


@pytest.mark.parametrize(
    ("patch", "error"),
    [(("soxr", "ResampleStream", BrokenResampler), ZeroDivisionError),
     ((None, "_rebuffer", broken_rebuffer), TypeError)],
    ids=["resampler", "rebuffer"],
)
def test_a_bug_of_ours_propagates_and_is_not_cannot_decode(tmp_path, monkeypatch, patch, error):
    module, name, replacement = patch
    monkeypatch.setattr(getattr(audio, module) if module else audio, name, replacement)
    path = write(tmp_path / "cd.wav", 44100, 2, seconds=3.0)
    with pytest.raises(error, match="a bug"):
        list(stream_audio(path, block_seconds=1.0))


def test_skip_bad_does_not_skip_a_bug_of_ours(tmp_path, monkeypatch):
    monkeypatch.setattr(audio.soxr, "ResampleStream", BrokenResampler)
    path = write(tmp_path / "cd.wav", 44100, seconds=70.0)  # two 60 s decoder blocks
    with pytest.raises(ZeroDivisionError):
        write_features([path], tmp_path / "out", skip_bad=True, progress=False)
    assert not (tmp_path / "out").exists()


def test_truncated_wav_duration_is_refused_too(tmp_path):
    path = tmp_path / "cut.wav"
    good = wav_bytes(tmp_path)
    path.write_bytes(good[: len(good) - 1000])
    with pytest.raises(AudioError, match="truncated"):
        audio_duration(path)


def test_missing_file_and_directory_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "absent.wav")
    with pytest.raises(AudioError, match="is a directory"):
        audio_duration(tmp_path)


def test_block_seconds_must_be_positive(tmp_path):
    path = write(tmp_path / "a.wav", SAMPLE_RATE)
    with pytest.raises(ValueError, match="block_seconds > 0"):
        next(stream_audio(path, block_seconds=0))


def test_find_audio_expands_files_directories_and_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    wav = write(tmp_path / "b.wav", SAMPLE_RATE)
    upper = write(tmp_path / "sub" / "c.WAV", SAMPLE_RATE)
    flac = write(tmp_path / "sub" / "a.flac", SAMPLE_RATE)
    (tmp_path / "b.tsv").write_text("onset\toffset\tlabel\n")
    assert find_audio([tmp_path]) == sorted([wav, upper, flac])
    assert find_audio([str(tmp_path / "**" / "*.flac"), wav, wav]) == sorted([flac, wav])
    assert find_audio([str(tmp_path / "b.*")]) == [wav]  # the .tsv beside it is not audio
    labels = tmp_path / "b.tsv"
    assert find_audio([labels]) == [labels]  # a file named explicitly is taken as given


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("absent.wav", "no such file or directory"),
        ("*.mp3", "no audio files here"),
        ("empty", "no audio files here"),
    ],
)
def test_find_audio_refuses_inputs_matching_nothing(tmp_path, item, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "._resource_fork.wav").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(AudioError, match=message):
        find_audio([tmp_path / item])
