"""Recorded material from files: one provider class for a folder tree or a file list of
recordings of one kind (music, speech or effects), and the user's own pools of them.

Long recordings soundfile reads (wav, flac, ogg, opus, mp3, also inside a zip archive) are
read per excerpt by seeking, so hours of soundtracks cost neither a decoding pass nor cache
space; the rest (short clips, G.722 prompts, samples of an OpenTTD catalogue, formats only
audioread knows) is decoded once (`musicdet.audio.load_audio` or a decoder) and cached as
16-bit .npy under `sources.cache_dir()`, keyed by path, member, size and mtime (memory-mapped
on later use). A recording's split is `split_of` its identity: the file for music and
effects, the speaker for speech, so a voice never serves two splits. A draw takes a random
excerpt of the split's recordings from its first audible frame; when a recording is shorter
than asked, further ones follow (short crossfades for music and effects, pauses of 0.15-0.7 s
for speech), and the result is levelled to -20 dBFS RMS over its active frames.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import soundfile

from musicdet.audio import AudioError, find_audio, load_audio, load_excerpt
from musicdet.configtools import ConfigError
from musicdet.fsutil import atomic_path, save_npy
from musicdet.synth import sources
from musicdet.synth.dsp import SAMPLE_RATE, add_at, db_to_gain, fade, samples
from musicdet.synth.sources import Kind, Source, SourceInfo, Split, register, split_of

FORMAT = 1  # of the cached audio; bump to decode again
FRAME = 320  # samples (20 ms) per frame of the activity measure
SILENT_DBFS = -55.0  # a frame below this RMS is silent
LOOKAHEAD = 3 * SAMPLE_RATE  # samples searched past a silent excerpt for a sound
ACTIVE_DB = -30.0  # frames within this of a draw's loudest frame set its level
LEVEL_DBFS = -20.0
CROSSFADE_S = (0.05, 0.5)  # between chained music or effect recordings, seconds
PAUSE_S = (0.15, 0.7)  # between chained speech recordings, seconds
SEEK_MIN_S = 60.0  # recordings at least this long are read by seeking, shorter ones decoded
MAX_TRIES = 64  # silent recordings skipped in a row before a draw gives up
FULL_SCALE = 32767
POOL_LICENCE = "the user's own recordings (licence not known to musicdet)"


@dataclass(frozen=True)
class Recording:
    """One recording: a file (or ``member``, an entry inside it) and the identity its split
    is drawn by (the file, or the speaker for speech)."""

    path: Path
    identity: str
    member: str = ""


Decoder = Callable[[Recording], np.ndarray]


def decode_file(recording: Recording) -> np.ndarray:
    """A whole file through `load_audio`: float32 mono 16 kHz."""
    return load_audio(recording.path)


def decode_bytes(data: bytes, suffix: str) -> np.ndarray:
    """Encoded audio held in memory, through `load_audio` by way of a temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"member{suffix}"
        path.write_bytes(data)
        return load_audio(path)


def decode_zip_member(recording: Recording) -> np.ndarray:
    """Member ``recording.member`` of a zip archive (e.g. a Quake .pk3)."""
    with zipfile.ZipFile(recording.path) as archive:
        data = archive.read(recording.member)
    return decode_bytes(data, Path(recording.member).suffix)


def ffmpeg_available() -> bool:
    """Whether the ffmpeg binary of ``imageio-ffmpeg`` can be used (for G.722)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def decode_g722(recording: Recording) -> np.ndarray:
    """A raw G.722 file (16 kHz wideband ADPCM, e.g. Asterisk prompts) through ffmpeg."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
               "-f", "g722", "-i", str(recording.path), "-f", "s16le", "-ac", "1",
               "-ar", str(SAMPLE_RATE), "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode or not result.stdout:
        reason = " ".join(result.stderr.decode("utf-8", "replace").split()) or "no samples"
        raise AudioError(recording.path, f"ffmpeg cannot decode it ({reason})",
                         "expected raw G.722 audio")
    return np.frombuffer(result.stdout, "<i2").astype(np.float32) / 32768.0


@dataclass(frozen=True)
class CatalogueEntry:
    """One sample of an OpenTTD sound catalogue: its description and where its RIFF/WAV
    data lies (byte offset and size)."""

    index: int
    description: str
    offset: int
    size: int


@functools.cache
def read_catalogue(path: Path) -> tuple[CatalogueEntry, ...]:
    """The samples of an OpenTTD .cat file: a table of (offset, size) uint32 LE pairs (bit 31
    of each offset flags the new format), then per sample a length-prefixed description and
    ``size`` bytes of RIFF/WAV data."""
    data = Path(path).read_bytes()
    expected = "expected an OpenTTD sound catalogue (.cat)"
    if len(data) < 8:
        raise AudioError(path, "too short for a sample table", expected)
    count = (struct.unpack_from("<I", data)[0] & 0x7FFFFFFF) // 8
    if not 0 < 8 * count <= len(data):
        raise AudioError(path, f"sample table of {count} entries does not fit", expected)
    entries = []
    for index in range(count):
        offset, size = struct.unpack_from("<II", data, 8 * index)
        offset &= 0x7FFFFFFF
        start = offset + 1 + (data[offset] if offset < len(data) else 0)
        if start + size > len(data) or data[start:start + 4] != b"RIFF":
            raise AudioError(path, f"sample {index} is not RIFF/WAV data", expected)
        description = data[offset + 1:start].rstrip(b"\0").decode("utf-8", "replace")
        entries.append(CatalogueEntry(index, description, start, size))
    return tuple(entries)


def decode_catalogue_member(recording: Recording) -> np.ndarray:
    """Sample number ``recording.member`` of an OpenTTD sound catalogue."""
    entry = read_catalogue(recording.path)[int(recording.member)]
    with open(recording.path, "rb") as handle:
        handle.seek(entry.offset)
        data = handle.read(entry.size)
    return decode_bytes(data, ".wav")


Opener = Callable[[Recording], "str | IO[bytes]"]


def open_path(recording: Recording) -> str:
    """What soundfile opens for a plain file: its path."""
    return str(recording.path)


def open_zip_member(recording: Recording) -> str | IO[bytes]:
    """What soundfile opens for a zip member: a copy extracted once into the cache folder
    (seeking inside the archive would read the member from its start each time), or the
    member itself when there is no cache folder."""
    cache = sources.cache_dir()
    archive = zipfile.ZipFile(recording.path)
    if cache is None:
        return archive.open(recording.member)
    copy = cache / "recordings" / (cache_key(recording, decode_zip_member)
                                   + Path(recording.member).suffix)
    if not copy.is_file():
        with atomic_path(copy) as tmp:
            tmp.write_bytes(archive.read(recording.member))
    return str(copy)


class Recordings(Source):
    """Recordings of one kind found by ``find`` (see the module docstring).

    Long recordings (`SEEK_MIN_S`) soundfile reads (what ``opener`` gives: the path, or an
    extracted archive member) are read per excerpt by seeking: no decoding ahead, nothing
    cached. The others (short ones, ``opener`` None, formats soundfile refuses) are decoded
    once by ``decoder`` and cached. ``version`` names what the recordings come from (package
    versions, folders); the number of recordings and a hash of their list are added to it.
    ``pause``: chained recordings are separated by pauses (speech) rather than crossfaded.
    ``namespace`` prefixes the identities for `split_of` (default: the name).
    """

    def __init__(self, name: str, kind: Kind, licence: str,
                 find: Callable[[], Sequence[Recording]], version: Callable[[], str],
                 decoder: Decoder = decode_file, opener: Opener | None = open_path,
                 pause: bool = False, namespace: str = "",
                 needs: str = "its recordings are not installed",
                 usable: Callable[[], bool] = lambda: True) -> None:
        self._name, self._kind, self._licence = name, kind, licence
        self._find, self._version = find, version
        self._decoder, self._opener = decoder, opener
        self._pause, self._namespace = pause, namespace or name
        self._needs, self._usable = needs, usable
        self._pools: dict[Split, tuple[Recording, ...]] = {}
        self._lengths: dict[Recording, tuple[int, bool]] = {}
        self._decoded: dict[str, np.ndarray] = {}

    @functools.cached_property
    def recordings(self) -> tuple[Recording, ...]:
        """Every recording, in a stable order."""
        return tuple(self._find())

    @property
    def info(self) -> SourceInfo:
        if not self.available():
            return SourceInfo(self._name, self._kind, "unavailable", self._licence)
        return SourceInfo(self._name, self._kind,
                          f"{self._version()}; {len(self.recordings)} recordings, list sha256 "
                          f"{file_list_hash(self.recordings)}", self._licence)

    def available(self) -> bool:
        return self._usable() and bool(self.recordings)

    def why_unavailable(self) -> str:
        return self._needs

    def has_material(self, split: Split) -> bool:
        return bool(self._pool(split))

    def _pool(self, split: Split) -> tuple[Recording, ...]:
        if split not in self._pools:
            self._pools[split] = tuple(r for r in self.recordings
                                       if split_of(f"{self._namespace}/{r.identity}") == split)
        return self._pools[split]

    def draw(self, rng: np.random.Generator, seconds: float, split: Split) -> np.ndarray:
        pool = self._pool(split)
        if not pool:
            raise ValueError(f"{self._name}: no recordings in the {split} split")
        n = samples(seconds)
        out = np.zeros(n)
        gap = samples(rng.uniform(*(PAUSE_S if self._pause else CROSSFADE_S)))
        position, tries = 0, 0
        while position < n:
            # a crossfaded piece runs a gap past the end, so its fade-out falls outside
            piece = self._excerpt(rng, pool[rng.integers(len(pool))], n - position + 2 * gap)
            if not len(piece):
                tries += 1
                if tries > MAX_TRIES:
                    raise ValueError(f"{self._name}: the {split} recordings are silent")
            elif self._pause:
                add_at(out, piece, position)
                position += len(piece) + gap
            else:  # overlap the previous piece's fade-out (at most half of this piece)
                overlap = min(gap, len(piece) // 2, position)
                add_at(out, fade(piece, overlap / SAMPLE_RATE, gap / SAMPLE_RATE),
                       position - overlap)
                position += len(piece) - overlap
        return level_active(out, LEVEL_DBFS)

    def _excerpt(self, rng: np.random.Generator, recording: Recording, length: int
                 ) -> np.ndarray:
        """Up to ``length`` samples of ``recording`` from its first audible frame after a
        random point; at its end, without the trailing silence."""
        total, _ = self._length(recording)
        offset = int(rng.integers(max(1, total - length + 1)))
        piece = self._read(recording, offset, length)
        start = first_audible(piece)
        if start == len(piece):  # silent throughout: look a little further
            start += first_audible(self._read(recording, offset + len(piece), LOOKAHEAD))
        if start:
            offset += start
            piece = self._read(recording, offset, length)
        return piece[:last_audible(piece)] if offset + length >= total else piece

    def _length(self, recording: Recording) -> tuple[int, bool]:
        """Length of ``recording`` in 16 kHz samples, and whether it is read by seeking."""
        if recording not in self._lengths:
            self._lengths[recording] = self._seekable_length(recording) or (
                len(self._decode(recording)), False)
        return self._lengths[recording]

    def _seekable_length(self, recording: Recording) -> tuple[int, bool] | None:
        if self._opener is None:
            return None
        try:
            with soundfile.SoundFile(self._opener(recording)) as sound:
                length = samples(sound.frames / sound.samplerate)
        except soundfile.SoundFileError:
            return None
        return (length, True) if length >= SEEK_MIN_S * SAMPLE_RATE else None

    def _read(self, recording: Recording, offset: int, count: int) -> np.ndarray:
        """``count`` samples (fewer at the end) from ``offset`` on, float64."""
        if self._length(recording)[1]:
            assert self._opener is not None
            return load_excerpt(recording.path, offset / SAMPLE_RATE, count / SAMPLE_RATE,
                                self._opener(recording)).astype(np.float64)
        return self._decode(recording)[offset:offset + count].astype(np.float64) / FULL_SCALE

    def _decode(self, recording: Recording) -> np.ndarray:
        """The int16 samples of ``recording``, decoded once and cached by content key
        (memory-mapped from the cache folder when there is one)."""
        key = cache_key(recording, self._decoder)
        if key not in self._decoded:
            cache = sources.cache_dir()
            path = cache / "recordings" / f"{key}.npy" if cache else None
            if path is not None and path.is_file():
                audio = np.load(path, mmap_mode="r")
            else:
                audio = to_int16(self._decoder(recording))
                if path is not None:
                    save_npy(path, audio)
            self._decoded[key] = audio
        return self._decoded[key]


def cache_key(recording: Recording, decoder: Decoder) -> str:
    """Content key of a decoded recording: path, member, size, mtime, decoder, format."""
    stat = recording.path.stat()
    text = (f"{FORMAT}|{recording.path.resolve()}|{recording.member}|{stat.st_size}|"
            f"{stat.st_mtime_ns}|{decoder.__name__}")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def file_list_hash(recordings: Sequence[Recording]) -> str:
    """A short hash of the recordings' paths, members and file sizes."""
    digest = hashlib.sha256()
    for recording in recordings:
        digest.update(f"{recording.path}|{recording.member}|{recording.path.stat().st_size}\n"
                      .encode())
    return digest.hexdigest()[:12]


def to_int16(audio: np.ndarray) -> np.ndarray:
    """``audio`` (full scale 1.0) as int16, clipped to full scale."""
    return np.round(np.clip(audio, -1.0, 1.0) * FULL_SCALE).astype(np.int16)


def frame_rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each whole `FRAME` of ``audio``."""
    frames = np.asarray(audio[:len(audio) // FRAME * FRAME], np.float64).reshape(-1, FRAME)
    return np.sqrt(np.mean(np.square(frames), axis=1))


def _audible_frames(audio: np.ndarray) -> np.ndarray:
    return np.flatnonzero(frame_rms(audio) > db_to_gain(SILENT_DBFS))


def first_audible(audio: np.ndarray) -> int:
    """Start of the first frame above `SILENT_DBFS` (``len(audio)`` if none)."""
    loud = _audible_frames(audio)
    return int(loud[0]) * FRAME if len(loud) else len(audio)


def last_audible(audio: np.ndarray) -> int:
    """End of the last frame above `SILENT_DBFS` (0 if none)."""
    loud = _audible_frames(audio)
    return (int(loud[-1]) + 1) * FRAME if len(loud) else 0


def level_active(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """``audio`` scaled so that its frames within `ACTIVE_DB` of the loudest have an RMS of
    ``dbfs`` (silence stays silent); float32."""
    rms = frame_rms(audio) if len(audio) >= FRAME else np.sqrt([np.mean(np.square(audio))])
    if not len(rms) or rms.max() <= 1e-9:
        return audio.astype(np.float32)
    active = rms[rms >= rms.max() * db_to_gain(ACTIVE_DB)]
    return (audio * (db_to_gain(dbfs) / np.sqrt(np.mean(np.square(active))))).astype(np.float32)


# --- the user's own pools -------------------------------------------------------------------

MUSAN_ROLES = ("music", "speech", "noise")


def pool_files(folder: str | Path, key: str) -> list[Path]:
    """The audio files under ``folder``; a `ConfigError` on ``key`` if it is missing or has
    none."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(key, f"{folder}: no such folder; expected a folder of recordings")
    try:
        return find_audio([path])
    except AudioError:
        raise ConfigError(key, f"{folder}: no audio files in it; expected files ending in "
                               "wav, flac, ogg, mp3, ...") from None


def pool_identity(path: Path, folder: Path, speech: bool) -> str:
    """The split identity of ``path`` in the pool ``folder``: its relative path, or for
    speech the speaker folder (the first folder below ``folder``) when it lies in one."""
    relative = path.relative_to(folder)
    return relative.parts[0] if speech and len(relative.parts) > 1 else relative.as_posix()


def pool_source(role: str, kind: Kind, folders: Sequence[str]) -> str:
    """The name of the provider playing the pool ``folders`` for ``role`` (registered on
    first use; the name carries a hash of the folders)."""
    digest = hashlib.sha256("\n".join(str(Path(f).resolve()) for f in folders).encode())
    name = f"{role}-pool-{digest.hexdigest()[:8]}"
    if name not in sources.registry():
        found = [(Path(folder), pool_files(folder, f"pools.{role}")) for folder in folders]
        listing = [Recording(path, pool_identity(path, folder, kind == "speech"))
                   for folder, files in found for path in files if path.stat().st_size > 0]
        register(Recordings(name, kind, POOL_LICENCE, lambda: listing,
                            lambda: f"user pool {', '.join(map(str, folders))}",
                            pause=kind == "speech", namespace="pool"))
    return name


def describe_pools(pools: Mapping[str, Sequence[str]] | None) -> list[dict[str, object]]:
    """Per pool folder: role, path, number of audio files, hash of their list (corpus.json)."""
    described: list[dict[str, object]] = []
    for role, folders in sorted((pools or {}).items()):
        for folder in folders:
            files = pool_files(folder, f"pools.{role}")
            listing = "\n".join(f"{f.relative_to(folder)}|{f.stat().st_size}" for f in files)
            described.append({"role": role, "path": str(folder), "files": len(files),
                              "sha256": hashlib.sha256(listing.encode()).hexdigest()[:16]})
    return described


def parse_pool_args(items: Sequence[str], roles: Sequence[str]) -> dict[str, list[str]]:
    """``--sources`` values (``ROLE=DIR``, or a MUSAN-style ``DIR`` whose music/, speech/
    and noise/ subfolders become those roles' pools, MUSAN's speech corpora each its own
    folder) as folders per role; a `ConfigError` naming the bad value."""
    pools: dict[str, list[str]] = {}
    for item in items:
        role, sep, folder = item.partition("=")
        if sep:
            if role not in roles:
                raise ConfigError(f"--sources {item}",
                                  f"unknown role {role!r}; expected one of {', '.join(roles)}")
            pool_files(folder, f"--sources {item}")
            pools.setdefault(role, []).append(folder)
            continue
        root = Path(item)
        found = [r for r in MUSAN_ROLES if (root / r).is_dir()]
        if not found:
            raise ConfigError(f"--sources {item}", "expected ROLE=DIR, or a folder with music/, "
                                                   "speech/ or noise/ subfolders (MUSAN layout)")
        for role in found:
            subfolders = sorted(p for p in (root / role).iterdir() if p.is_dir())
            folders = [str(p) for p in subfolders] if role == "speech" and subfolders else [
                str(root / role)]
            for folder in folders:
                pool_files(folder, f"--sources {item}")
            pools.setdefault(role, []).extend(folders)
    return pools
