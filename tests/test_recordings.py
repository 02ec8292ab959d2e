"""Recorded-material providers: discovery, splits, draws, cache, user pools, the OpenTTD sound
catalogue, and the Debian providers (real data when installed, unavailable when not)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicdet.audio import AudioError, load_audio, load_excerpt
from musicdet.cli import main
from musicdet.configtools import ConfigError
from musicdet.synth import SynthConfig, sources
from musicdet.synth.programme import palette
from musicdet.synth.sources import SPLITS, debian, recordings
from musicdet.synth.sources.recordings import (
    FRAME,
    Recording,
    Recordings,
    decode_catalogue_member,
    decode_g722,
    frame_rms,
    pool_source,
    read_catalogue,
)

SR = 16000
DEBIAN = {  # provider: the files it needs
    "wesnoth-music": debian.WESNOTH, "warzone2100-music": debian.WARZONE,
    "nexuiz-music": debian.NEXUIZ, "supertux-music": debian.SUPERTUX / "music",
    "asterisk-speech": debian.ASTERISK, "opensfx-effects": debian.OPENSFX,
    "supertux-effects": debian.SUPERTUX / "sounds",
}


def tone(seconds: float, hz: float = 440.0, silent_start: float = 0.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.concatenate([np.zeros(round(silent_start * SR)), audio]).astype(np.float32)


def write(path: Path, audio: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR)
    return path


def musan(root: Path, speakers: int = 30) -> Path:
    """A MUSAN-like tree: music/fma/*.wav, speech/corpus/SPEAKER/*.wav, noise/free/*.wav."""
    for i in range(24):
        write(root / "music" / "fma" / f"m{i:02d}.wav", tone(1.0 + i % 3, 220 + 20 * i))
    for s in range(speakers):
        for u in range(2):
            write(root / "speech" / "corpus" / f"spk{s:02d}" / f"u{u}.wav",
                  tone(0.4 + 0.1 * u, 150 + 5 * s))
    rng = np.random.default_rng(0)
    for i in range(12):
        write(root / "noise" / "free" / f"n{i:02d}.wav",
              (0.1 * rng.standard_normal(SR)).astype(np.float32))
    return root


def pool(role: str, kind: str, folder: Path) -> Recordings:
    name = pool_source(role, kind, [str(folder)])
    return sources.registry()[name]


def active_dbfs(audio: np.ndarray) -> float:
    rms = frame_rms(audio)
    active = rms[rms >= rms.max() * 10 ** (-30 / 20)]
    return float(20 * np.log10(np.sqrt(np.mean(active**2))))


@pytest.fixture(autouse=True)
def _no_cache():
    sources.set_cache_dir(None)
    yield
    sources.set_cache_dir(None)


def test_a_pool_finds_its_files_and_splits_them_by_file(tmp_path):
    provider = pool("music", "music", musan(tmp_path) / "music")
    assert provider.available() and len(provider.recordings) == 24
    by_split = {split: {r.path for r in provider._pool(split)} for split in SPLITS}
    assert sum(len(paths) for paths in by_split.values()) == 24
    assert set.union(*by_split.values()) == {r.path for r in provider.recordings}
    assert all(provider.has_material(split) for split in ("train", "validation", "test"))


def test_speech_is_split_by_speaker_folder(tmp_path):
    provider = pool("speech", "speech", musan(tmp_path) / "speech" / "corpus")
    assert {r.identity for r in provider.recordings} == {f"spk{s:02d}" for s in range(30)}
    speakers = {split: {r.identity for r in provider._pool(split)} for split in SPLITS}
    assert speakers["train"] and speakers["validation"] and speakers["test"]
    assert not (speakers["train"] & speakers["validation"] or speakers["train"] & speakers["test"]
                or speakers["validation"] & speakers["test"])


def test_draws_are_deterministic_exact_in_length_and_levelled(tmp_path):
    provider = pool("music", "music", musan(tmp_path) / "music")
    first = provider.draw(np.random.default_rng(5), 3.0, "train")
    again = provider.draw(np.random.default_rng(5), 3.0, "train")
    other = provider.draw(np.random.default_rng(6), 3.0, "train")
    assert first.dtype == np.float32 and len(first) == 3 * SR
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert active_dbfs(first) == pytest.approx(-20.0, abs=0.2)


def test_short_files_are_chained_crossfaded_for_music_and_with_pauses_for_speech(tmp_path):
    for i in range(6):
        write(tmp_path / "short" / f"s{i}.wav", tone(0.5, 300 + 50 * i))
    music = pool("music", "music", tmp_path / "short")
    split = next(s for s in SPLITS if music.has_material(s))
    audio = music.draw(np.random.default_rng(1), 4.0, split)
    silent = frame_rms(audio) < 1e-4
    assert not silent.any()  # crossfaded: no gap anywhere
    speech = pool("speech", "speech", tmp_path / "short")
    voice = speech.draw(np.random.default_rng(1), 6.0, split)
    silent = np.concatenate([[False], frame_rms(voice) < 1e-4, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(int)))
    gaps = (edges[1::2] - edges[::2]) * FRAME / SR
    assert len(gaps) >= 3  # several 0.5 s prompts joined by pauses
    assert np.all((gaps[:-1] > 0.1) & (gaps[:-1] < 0.75))  # the last may be cut by the end


def test_a_draw_skips_a_silent_start(tmp_path):
    write(tmp_path / "late" / "late.wav", tone(1.0, silent_start=2.0))
    provider = pool("music", "music", tmp_path / "late")
    split = next(s for s in SPLITS if provider.has_material(s))
    for seed in range(5):
        audio = provider.draw(np.random.default_rng(seed), 0.5, split)
        assert frame_rms(audio[:FRAME])[0] > 0.01


def test_decoded_audio_is_cached_by_content_and_reused(tmp_path):
    sources.set_cache_dir(tmp_path / "cache")
    files = [write(tmp_path / "in" / f"{i}.wav", tone(1.0, 200 + 40 * i)) for i in range(8)]
    listing = [Recording(f, f.name) for f in files]

    def decode_file(recording: Recording) -> np.ndarray:  # the real decoder's name: same key
        raise AssertionError(f"{recording.path} decoded again")

    cold = Recordings("t-cold", "music", "test", lambda: listing, lambda: "t")  # short: decoded
    warm = Recordings("t-warm", "music", "test", lambda: listing, lambda: "t",
                      decoder=decode_file, namespace="t-cold")
    split = next(s for s in SPLITS if cold.has_material(s))
    expected = cold.draw(np.random.default_rng(2), 2.0, split)
    cached = sorted((tmp_path / "cache" / "recordings").glob("*.npy"))
    assert cached and all(np.load(path).dtype == np.int16 for path in cached)
    np.testing.assert_array_equal(warm.draw(np.random.default_rng(2), 2.0, split), expected)
    key = recordings.cache_key(listing[0], decode_file)
    os.utime(files[0], ns=(1, 1))  # a changed file gets a new key
    assert recordings.cache_key(listing[0], decode_file) != key


def test_seekable_files_are_read_per_excerpt_exactly(tmp_path):
    sources.set_cache_dir(tmp_path / "cache")
    path = write(tmp_path / "in" / "long.wav", tone(recordings.SEEK_MIN_S))
    np.testing.assert_array_equal(load_excerpt(path, 1.5, 1.0), load_audio(path)[24000:40000])
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.write(path, "long.wav")
    member = Recording(tmp_path / "a.zip", "long", "long.wav")
    for cache in (None, tmp_path / "cache"):  # the member itself; a copy extracted once
        sources.set_cache_dir(cache)
        inside = load_excerpt(member.path, 1.5, 1.0, recordings.open_zip_member(member))
        np.testing.assert_array_equal(inside, load_audio(path)[24000:40000])
    assert len(list((tmp_path / "cache" / "recordings").glob("*.wav"))) == 1
    sources.set_cache_dir(tmp_path / "other")
    provider = Recordings("t-seek", "music", "test", lambda: [Recording(path, "long")],
                          lambda: "t", namespace="x")
    split = next(s for s in SPLITS if provider.has_material(s))
    assert len(provider.draw(np.random.default_rng(0), 2.0, split)) == 2 * SR
    assert not (tmp_path / "other").exists()  # nothing decoded ahead, nothing cached


def test_a_role_without_material_in_a_split_is_an_error_naming_the_pool(tmp_path):
    write(tmp_path / "one" / "only.wav", tone(1.0))
    config = SynthConfig(pools={"music": [str(tmp_path / "one")]})
    provider = pool("music", "music", tmp_path / "one")
    empty = next(s for s in SPLITS if not provider.has_material(s))
    with pytest.raises(ConfigError, match=f"pools.music: .*no.*material in the {empty} split"):
        palette(config, empty)


def test_pool_config_rules(tmp_path):
    with pytest.raises(ConfigError, match="pools.jazz: .*a role"):
        SynthConfig(pools={"jazz": [str(tmp_path)]})
    with pytest.raises(ConfigError, match="pools.music: .*no music_sources as well"):
        SynthConfig(pools={"music": [str(tmp_path)]}, music_sources={"additive": 1.0})
    with pytest.raises(ConfigError, match="pools.noise: .*no such folder"):
        palette(SynthConfig(pools={"noise": [str(tmp_path / "gone")]}))


@pytest.mark.parametrize(("value", "message"), [
    ("music={missing}", "no such folder"),
    ("music={empty}", "no audio files"),
    ("jazz={empty}", "unknown role 'jazz'"),
    ("{empty}", "MUSAN layout"),
])
def test_bad_pools_are_one_line_errors(tmp_path, capsys, value, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio\n")
    argument = value.format(missing=tmp_path / "nope", empty=tmp_path / "empty")
    status = main(["synth", "--out", str(tmp_path / "out"), "--quiet", "--sources", argument])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err and err.startswith("musicdet")
    assert not (tmp_path / "out").exists()


def test_a_musan_folder_makes_the_pools_and_corpus_json_records_them(tmp_path):
    root = musan(tmp_path / "musan")
    config = tmp_path / "synth.yaml"
    config.write_text("programme_seconds: 4\nmin_segment_seconds: 1\nmax_segment_seconds: 2\n"
                      "max_transition_seconds: 0.3\nhard_case_rate: 0\nchannel_effects: false\n")
    out = tmp_path / "corpus"
    args = ["synth", "--out", str(out), "--hours", str(12 / 3600), "--config", str(config),
            "--quiet", "--sources", str(root)]
    assert main(args) == 0
    manifest = json.loads((out / "corpus.json").read_text())
    pools = {(p["role"], Path(p["path"]).name): p for p in manifest["pools"]}
    assert pools[("music", "music")]["files"] == 24 and pools[("noise", "noise")]["files"] == 12
    assert pools[("speech", "corpus")]["files"] == 60  # MUSAN's speech corpora each a pool
    assert manifest["config"]["pools"]["music"] == [str(root / "music")]
    names = {s["name"] for s in manifest["sources"]}
    assert any(n.startswith("music-pool-") for n in names)
    assert not names & {"gm-scores", "espeak", "procedural-noise"}  # replaced by the pools
    assert len(list(out.glob("prog-*.wav"))) == 3
    before = pools[("music", "music")]["sha256"]
    write(root / "music" / "fma" / "new.wav", tone(1.0))
    after = recordings.describe_pools({"music": [str(root / "music")]})[0]
    assert after["files"] == 25 and after["sha256"] != before


def catalogue_bytes(samples: list[tuple[str, np.ndarray]]) -> bytes:
    """An OpenTTD .cat: (offset | 1 << 31, size) per sample, then name + RIFF + file name."""
    bodies = []
    for name, audio in samples:
        wav = io.BytesIO()
        sf.write(wav, audio, SR, format="WAV", subtype="PCM_16")
        label = name.encode() + b"\0"
        tail = b"x.wav\0"
        bodies.append((bytes([len(label)]) + label, wav.getvalue(), bytes([len(tail)]) + tail))
    offset = 8 * len(samples)
    table, data = b"", b""
    for head, wav, tail in bodies:
        table += struct.pack("<II", offset | 1 << 31, len(wav))
        data += head + wav + tail
        offset += len(head) + len(wav) + len(tail)
    return table + data


def test_an_openttd_catalogue_is_parsed_and_its_samples_decoded(tmp_path):
    path = tmp_path / "sfx.cat"
    path.write_bytes(catalogue_bytes([('"Horn". By A. License: CC0.', tone(0.5) / 2),
                                      ('"Crash". Original "c.wav" by B.', tone(1.2) / 2)]))
    entries = read_catalogue(path)
    assert [e.description for e in entries] == ['"Horn". By A. License: CC0.',
                                                '"Crash". Original "c.wav" by B.']
    audio = decode_catalogue_member(Recording(path, "c.wav", "1"))
    assert abs(len(audio) - round(1.2 * SR)) <= 2
    assert debian._opensfx_origin(entries[1].description) == "c.wav"
    assert debian._opensfx_origin(entries[0].description) == "Horn"
    (tmp_path / "bad.cat").write_bytes(b"\x10\x00\x00\x80" + b"\0" * 20)
    with pytest.raises(AudioError, match="bad.cat: sample 0 is not RIFF/WAV data"):
        read_catalogue(tmp_path / "bad.cat")


def test_g722_and_zip_members_decode(tmp_path):
    import imageio_ffmpeg

    pcm = (tone(1.0) * 32767).astype("<i2").tobytes()
    g722 = tmp_path / "prompt.g722"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "s16le",
                    "-ar", "16000", "-ac", "1", "-i", "-", "-f", "g722", str(g722)],
                   input=pcm, check=True)
    audio = decode_g722(Recording(g722, "x"))
    assert abs(len(audio) - SR) <= 32 and 0.1 < np.abs(audio).max() < 0.5
    (tmp_path / "junk.g722").write_bytes(b"")
    with pytest.raises(AudioError, match="junk.g722: ffmpeg cannot decode it"):
        decode_g722(Recording(tmp_path / "junk.g722", "x"))
    archive = tmp_path / "music.pk3"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(write(tmp_path / "t.wav", tone(0.7)), "sound/t.wav")
    decoded = recordings.decode_zip_member(Recording(archive, "t", "sound/t.wav"))
    assert len(decoded) == round(0.7 * SR)


def _size(recording: Recording) -> int:
    if recording.path.suffix == ".pk3":
        return zipfile.ZipFile(recording.path).getinfo(recording.member).file_size
    if recording.path.suffix == ".cat":
        return read_catalogue(recording.path)[int(recording.member)].size
    return recording.path.stat().st_size


@pytest.mark.parametrize("name", sorted(DEBIAN))
def test_debian_providers_are_available_exactly_when_installed(name, monkeypatch, tmp_path):
    provider = sources.registry()[name]
    assert isinstance(provider, Recordings)
    if not DEBIAN[name].exists():
        assert not provider.available() and "install Debian" in provider.why_unavailable()
        return
    assert provider.available() and provider.info.version.count("recordings") == 1
    # the real files, kept quick: the two smallest (decoded whole) and the two largest (read
    # by seeking when soundfile reads them)
    by_size = sorted(provider.recordings, key=_size)
    monkeypatch.setitem(provider.__dict__, "recordings", (*by_size[:2], *by_size[-2:]))
    monkeypatch.setattr(provider, "_pools", {})
    sources.set_cache_dir(tmp_path)
    split = next(s for s in SPLITS if provider.has_material(s))
    audio = provider.draw(np.random.default_rng(0), 2.0, split)
    assert len(audio) == 2 * SR and np.isfinite(audio).all()
    assert active_dbfs(audio) == pytest.approx(-20.0, abs=0.5)


def test_debian_material_keeps_variants_and_speakers_in_one_split():
    assert debian.family("track3_enhanced", "_enhanced") == "track3"
    assert debian.family("airship_remix", r"_old|_remix|_2|_map|2|3") == "airship"
    assert debian.family("track17", "_enhanced") == "track17"
    prompts = debian.asterisk_prompts()
    if not prompts:
        assert not sources.registry()["asterisk-speech"].available()
        return
    voices = {r.path.relative_to(debian.ASTERISK).parts[0]: r.identity for r in prompts}
    assert voices["en_US_f_Allison"] == voices["es_MX_f_Allison"] == "Allison"
    assert not any("silence" in r.path.parts or r.path.stem == "beep" for r in prompts)
    assert min(r.path.stat().st_size for r in prompts) > 0
