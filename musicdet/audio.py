"""Audio input: any file soundfile (libsndfile) or audioread decodes → 16 kHz mono float32.

Files are decoded in blocks, mixed down to mono (mean of the channels), checked and resampled
with a streaming soxr resampler, so `stream_audio` holds a bounded amount of audio whatever
the file length, and `load_audio` is exactly the concatenation of its blocks.

What is refused, always with an `AudioError` naming the file: unreadable or undecodable files,
files with no samples, WAV files shorter than their header declares (truncated copies) and
files with NaN or infinite samples. Digital silence (all-zero samples) is valid audio. Float
files may exceed ±1; their samples are kept as they are.
"""

from __future__ import annotations

import contextlib
import glob
import math
import struct
import warnings
import wave
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import audioread
import numpy as np
import soundfile
import soxr

SAMPLE_RATE = 16000
"""The sample rate (Hz) of every signal this package works on."""

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".m4a"}
)
"""File name endings `find_audio` picks up inside directories and globs (case-insensitive)."""

_EXPECTED = "expected an audio file that soundfile (wav, flac, ogg, mp3, ...) or audioread decodes"
_GLOB_CHARACTERS = frozenset("*?[")
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)  # data sizes written by recorders that never finalised
# What libsndfile says of an existing file named .mp3 in which it finds no MPEG frame.
_LIBSNDFILE_NO_FRAMES = "File does not exist or is not a regular file"
_DECODER_ERRORS = (soundfile.SoundFileError, audioread.DecodeError, OSError, EOFError, wave.Error)
"""What soundfile and audioread (ffmpeg, GStreamer, the stdlib wave reader) raise on a file
they cannot read; caught around decoder calls only, so a bug in this module propagates."""


class AudioError(ValueError):
    """An audio file cannot be used; the message reads ``PATH: what is wrong; what is expected``."""

    def __init__(self, path: str | Path, problem: str, expected: str = _EXPECTED) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}; {expected}")


def load_audio(path: str | Path) -> np.ndarray:
    """The whole file as 16 kHz mono float32 samples (the concatenation of `stream_audio`)."""
    return np.concatenate(list(stream_audio(path)))


def stream_audio(path: str | Path, block_seconds: float = 60.0) -> Iterator[np.ndarray]:
    """Consecutive 16 kHz mono float32 blocks of ``path``, ``block_seconds`` long except the last.

    Memory stays flat in the file length. Problems found mid-file (a NaN sample) raise
    `AudioError` after the blocks before them were yielded.
    """
    if not block_seconds > 0:
        raise ValueError(f"block_seconds: `block_seconds > 0` must hold, but got {block_seconds!r}")
    path = Path(path)
    block_samples = max(1, round(block_seconds * SAMPLE_RATE))
    total = 0
    sample_rate, blocks = _open_blocks(path, block_seconds)
    resampled = _resample(_checked_mono(path, blocks, sample_rate), sample_rate)
    for block in _rebuffer(resampled, block_samples):
        total += len(block)
        yield block
    if total == 0:
        raise AudioError(path, "contains no audio samples", "expected at least one sample")


def load_excerpt(path: str | Path, start_s: float, seconds: float, file: Any = None
                 ) -> np.ndarray:
    """``seconds`` of ``path`` from ``start_s`` on (fewer at its end) as 16 kHz mono float32,
    read by seeking, for the formats soundfile reads (wav, flac, ogg, opus, mp3, ...).

    ``file``: what to read instead, an open seekable binary file or another path (e.g. an
    archive member; ``path`` then only names it in errors). Seeking is sample-exact, so the
    same call gives the same samples.
    """
    path = Path(path)
    with _decoder_errors(path):
        sound = soundfile.SoundFile(file if file is not None else str(path))
    with sound:
        rate = sound.samplerate
        with _decoder_errors(path):
            sound.seek(min(max(round(start_s * rate), 0), sound.frames))
            block = sound.read(math.ceil(seconds * rate), dtype="float32", always_2d=True)
    return np.concatenate([np.zeros(0, np.float32),
                           *_resample(_checked_mono(path, [block], rate), rate)])


def audio_duration(path: str | Path) -> float:
    """Duration of ``path`` in seconds, read from its header (no decoding where possible)."""
    path = Path(path)
    with _decoder_errors(path):
        _check_file(path)
        try:
            info = soundfile.info(str(path))
        except soundfile.SoundFileError as error:
            with _audioread_open(path, error) as reader:
                return float(reader.duration)
        if info.format == "WAV":
            _check_wav_complete(path)
        return float(info.duration)


def find_audio(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files, directories (searched recursively) and globs into sorted audio files.

    A file named explicitly is kept whatever its ending; directories and globs contribute the
    files whose ending is in `AUDIO_EXTENSIONS`, hidden ones (``.name``, e.g. macOS ``._*``
    resource forks) left out. An input that matches nothing is an error.
    """
    found: set[Path] = set()
    for item in inputs:
        text = str(item)
        if any(char in _GLOB_CHARACTERS for char in text) and not Path(text).exists():
            matches = [Path(match) for match in glob.glob(text, recursive=True)]
            audio = {file for match in matches for file in _audio_files(match)}
        elif not Path(text).exists():
            raise AudioError(text, "no such file or directory", "expected an audio file path")
        else:
            audio = set(_audio_files(Path(text), explicit=True))
        if not audio:
            raise AudioError(
                text,
                "no audio files here",
                "expected an audio file, a directory or a glob "
                f"matching files ending in {', '.join(sorted(AUDIO_EXTENSIONS))}",
            )
        found |= audio
    return sorted(found)


def _audio_files(path: Path, explicit: bool = False) -> list[Path]:
    if path.is_dir():
        return [file for file in path.rglob("*") if file.is_file() and _is_audio_name(file)]
    if path.is_file() and (explicit or _is_audio_name(path)):
        return [path]
    return []


def _is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


@contextlib.contextmanager
def _decoder_errors(path: Path) -> Iterator[None]:
    """Turn a decoder's error (`_DECODER_ERRORS`) into one `AudioError` line naming ``path``."""
    try:
        yield
    except _DECODER_ERRORS as error:
        raise AudioError(path, f"cannot decode ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    """One line saying what went wrong, without the file name libsndfile prefixes."""
    message = getattr(error, "error_string", None) or str(error) or type(error).__name__
    if message.startswith(_LIBSNDFILE_NO_FRAMES):  # the file exists: `_check_file` ran first
        return "no audio frames found"
    return " ".join(message.split())


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory")
    if path.stat().st_size == 0:
        raise AudioError(path, "is empty (0 bytes)")


def _open_blocks(path: Path, block_seconds: float) -> tuple[int, Iterator[np.ndarray]]:
    """Sample rate (Hz) and the (frames, channels) float32 blocks of ``path``."""
    _check_file(path)
    try:
        sound = soundfile.SoundFile(str(path))
    except soundfile.SoundFileError as error:
        return _audioread_blocks(path, error)
    if sound.format == "WAV":
        _check_wav_complete(path)
    frames = math.ceil(block_seconds * sound.samplerate)
    return sound.samplerate, _decoded(path, _soundfile_blocks(sound, frames))


def _soundfile_blocks(sound: soundfile.SoundFile, frames: int) -> Iterator[np.ndarray]:
    with sound:
        while len(block := sound.read(frames, dtype="float32", always_2d=True)):
            yield block


def _decoded(path: Path, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``blocks`` read from a decoder, its errors (only) turned into `AudioError`."""
    while True:
        with _decoder_errors(path):
            block = next(blocks, None)
        if block is None:
            return
        yield block


def _audioread_blocks(path: Path, libsndfile_error: Exception) -> tuple[int, Iterator[np.ndarray]]:
    reader = _audioread_open(path, libsndfile_error)

    def blocks() -> Iterator[np.ndarray]:
        with reader:
            for buffer in _decoded(path, iter(reader)):
                samples = np.frombuffer(buffer, dtype="<i2").astype(np.float32) / 32768.0
                yield samples.reshape(-1, reader.channels)

    return int(reader.samplerate), blocks()


def _audioread_open(path: Path, libsndfile_error: Exception) -> Any:
    """The fallback decoder (ffmpeg, GStreamer, ... through audioread) opened on ``path``.

    Used only for files libsndfile refused; if audioread fails too, the error reports
    libsndfile's reason, the more telling one for the usual formats.
    """
    try:
        with warnings.catch_warnings():  # its stdlib backend imports modules Python 3.13 drops
            warnings.simplefilter("ignore", DeprecationWarning)
            return audioread.audio_open(str(path))
    except _DECODER_ERRORS:
        raise AudioError(path, f"cannot decode ({_reason(libsndfile_error)})") from None


def _check_wav_complete(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header declares."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64, W64, ...: libsndfile's own checks apply
        while len(chunk := handle.read(8)) == 8:
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                present = path.stat().st_size - handle.tell()
                if size not in _UNKNOWN_WAV_SIZES and present < size:
                    raise AudioError(
                        path,
                        f"truncated: the header declares {size} bytes of samples, "
                        f"the file holds {present}",
                        "expected a complete file (copy or re-encode it again)",
                    )
                return
            handle.seek(size + size % 2, 1)


def _checked_mono(
    path: Path, blocks: Iterable[np.ndarray], sample_rate: int
) -> Iterator[np.ndarray]:
    """Mean over channels of each (frames, channels) block; NaN or inf samples raise."""
    start = 0
    for block in blocks:
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            seconds = (start + int(np.argmin(finite))) / sample_rate
            raise AudioError(
                path, f"NaN or infinite sample at {seconds:.3f} s", "expected finite samples"
            )
        start += len(block)
        yield block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


def _resample(blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Blocks at ``sample_rate`` → blocks at `SAMPLE_RATE`, joined without seams (soxr HQ)."""
    if sample_rate == SAMPLE_RATE:
        yield from blocks
        return
    stream = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    for block in blocks:
        yield stream.resample_chunk(block)
    yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _rebuffer(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup ``blocks`` into blocks of exactly ``size`` samples, the last one shorter."""
    pending: list[np.ndarray] = []
    count = 0
    for block in blocks:
        pending.append(block)
        count += len(block)
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, count = [joined[size:]], count - size
    if count:
        yield np.concatenate(pending)
