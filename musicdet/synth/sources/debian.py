"""Recorded music, speech and effects from Debian packages (`Recordings` providers), each
available when its package's files are present (``make sources-debian`` installs them).

Music: the soundtracks of Wesnoth (orchestral), Warzone 2100 (orchestral and electronic),
Nexuiz (electronic, rock) and SuperTux (chiptune, pop); remixes and "enhanced" or "old"
versions of a track share its split. Speech: the Asterisk prompts of five languages, whose
split is drawn per speaker (Allison Smith speaks both en_US and es_MX). Effects: OpenTTD's
OpenSFX catalogue and SuperTux's sounds, without the jingles and musical stings (chosen by
name; see `SUPERTUX_NOT_EFFECTS`). Licences are those of each package's
/usr/share/doc/PKG/copyright (and the per-album licence.txt of Warzone 2100).
"""

from __future__ import annotations

import functools
import re
import subprocess
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from musicdet.synth.sources import Kind, register
from musicdet.synth.sources.recordings import (
    Decoder,
    Opener,
    Recording,
    Recordings,
    decode_catalogue_member,
    decode_file,
    decode_g722,
    decode_zip_member,
    ffmpeg_available,
    open_path,
    open_zip_member,
    read_catalogue,
)

WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
WARZONE = Path("/usr/share/games/warzone2100/music")
NEXUIZ = Path("/usr/share/games/nexuiz/data/music.pk3")
SUPERTUX = Path("/usr/share/games/supertux2")
ASTERISK = Path("/usr/share/asterisk/sounds")
OPENSFX = Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat")
ASTERISK_VOICES = ("en_US_f_Allison", "es_MX_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo",
                   "ru_RU_f_IvrvoiceRU")
# Asterisk prompts that are not speech: tones, beeps, the monkeys, and the silence/ folder.
ASTERISK_NOT_SPEECH = frozenset({"beep", "beeperr", "ascending-2tone", "descending-2tone",
                                 "tt-monkeys"})
# SuperTux sounds that are musical (jingles, fanfares, bells, power-up arpeggios) or spoken,
# by name (a pyin pitch check at development flagged grow, fire-flower, excellent and
# fireworks as melodic; the rest by listening to the names: we cannot listen), or empty.
SUPERTUX_NOT_EFFECTS = frozenset({
    "tada", "savebell2", "savebell_low", "lifeup", "invincible_start", "excellent", "welldone",
    "coins_cleared", "upgrade", "grow", "fire-flower", "yeti_finish", "empty", "warp",
})
# thunder.ogg is an ambience, not a track (spectral flatness 0.22 against 0.017 for a track,
# onset autocorrelation 0.17 against 0.59); wesnoth's silence.ogg is silence.
NEXUIZ_NOT_MUSIC = frozenset({"thunder"})
# OpenSFX samples that are jingles or empty, by the title their description starts with.
OPENSFX_NOT_EFFECTS = ("Good Year", "Bad Year", "Unused/Nothing")
WARZONE_LICENCE = (
    "GPL-2.0-or-later (original soundtrack, Martin Severn; Debian warzone2100-music "
    "copyright); legacy and aftermath soundtracks (LupusMechanicus): CC-BY-SA-3.0-or-later or "
    "GPL-2.0-or-later (albums/*/license.txt)")
ASTERISK_LICENCE = (
    "CC-BY-SA-3.0 (en_US and es_MX: Allison Smith; fr_CA: June Wallack), CC-BY-3.0 (it_IT: "
    "Carlo Flora; ru_RU: Maxim Topal) per Debian asterisk-core-sounds-*-g722 copyright")
OPENSFX_LICENCE = (
    "CC-BY-SA-3.0 as a collection (samples CC-BY-3.0, CC-BY-SA-3.0 or CC0-1.0, each named in "
    "its description; Debian openttd-opensfx copyright, src/wav/*); build files GPL-2.0-or-"
    "later or CDDL-1.1")


@functools.cache
def package_versions(packages: tuple[str, ...]) -> str:
    """"PKG VERSION" of each installed package (dpkg-query), or the names alone."""
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n",
                                 *packages], capture_output=True, text=True, check=False)
    except OSError:
        return ", ".join(packages)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return ", ".join(lines) if lines else ", ".join(packages)


def family(stem: str, variants: str) -> str:
    """The track ``stem`` names, without the ``variants`` suffix pattern (remix, old, 2)."""
    return re.sub(f"({variants})$", "", stem) or stem


def music_files(root: Path, pattern: str, variants: str, leave_out: Sequence[str] = ()
                ) -> list[Recording]:
    """Files matching ``pattern`` under ``root``, each its own split identity up to
    ``variants`` of one track (by file stem: an album's remake lies in another folder)."""
    if not root.is_dir():
        return []
    return [Recording(path, family(path.stem, variants))
            for path in sorted(root.glob(pattern)) if path.stem not in leave_out]


def nexuiz_tracks() -> list[Recording]:
    """The Ogg tracks inside Nexuiz's music.pk3 (a zip archive)."""
    if not NEXUIZ.is_file():
        return []
    with zipfile.ZipFile(NEXUIZ) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".ogg"))
    return [Recording(NEXUIZ, family(Path(n).stem, r"_(revisited)?"), n) for n in names
            if Path(n).stem not in NEXUIZ_NOT_MUSIC]


def asterisk_prompts() -> list[Recording]:
    """The speech prompts of the five voices (not the empty ones: ru_RU is.g722 has 0 bytes),
    split by speaker (the voice folder's last word)."""
    return [Recording(path, voice.rsplit("_", 1)[-1])
            for voice in ASTERISK_VOICES if (ASTERISK / voice).is_dir()
            for path in sorted((ASTERISK / voice).rglob("*.g722"))
            if path.stem not in ASTERISK_NOT_SPEECH and path.stat().st_size > 0
            and path.relative_to(ASTERISK / voice).parts[0] != "silence"]


def opensfx_samples() -> list[Recording]:
    """The OpenSFX samples that are effects, identified by the original recording their
    description names (several samples are edits of one), else by their title."""
    if not OPENSFX.is_file():
        return []
    return [Recording(OPENSFX, _opensfx_origin(e.description), str(e.index))
            for e in read_catalogue(OPENSFX)
            if not e.description.strip('"').startswith(OPENSFX_NOT_EFFECTS)]


def _opensfx_origin(description: str) -> str:
    """'Original "file.wav" by ...' -> file.wav (also the "Orignal" typo); else the title."""
    found = re.search(r'Orig\w* "([^"]+)"', description)
    return found.group(1) if found else description.split('"')[1]


def supertux_effects() -> list[Recording]:
    """SuperTux's sound effects, without `SUPERTUX_NOT_EFFECTS`."""
    root = SUPERTUX / "sounds"
    if not root.is_dir():
        return []
    return [Recording(path, path.stem) for path in sorted(root.iterdir())
            if path.suffix in (".wav", ".ogg") and path.stem not in SUPERTUX_NOT_EFFECTS]


def _debian(name: str, kind: Kind, licence: str, packages: tuple[str, ...],
            find: Callable[[], list[Recording]], decoder: Decoder = decode_file,
            opener: Opener | None = open_path, pause: bool = False,
            usable: Callable[[], bool] = lambda: True) -> None:
    register(Recordings(name, kind, licence, find, lambda: package_versions(packages), decoder,
                        opener, pause=pause, usable=usable,
                        needs=f"install Debian {' '.join(packages)} (make sources-debian)"
                              + ("" if usable() else " and pip imageio-ffmpeg")))


_debian("wesnoth-music", "music",
        "GPL-2.0-or-later (Debian wesnoth-1.16-music copyright: GPL version 2 or any later)",
        ("wesnoth-1.16-music",), lambda: music_files(WESNOTH, "*.ogg", r"-old|2", ("silence",)))
_debian("warzone2100-music", "music", WARZONE_LICENCE, ("warzone2100-music",),
        lambda: music_files(WARZONE, "**/*.opus", r"_enhanced"))
_debian("nexuiz-music", "music",
        "GPL-2.0-or-later (Alientrap; Debian nexuiz-music copyright)", ("nexuiz-music",),
        nexuiz_tracks, decode_zip_member, open_zip_member)
_debian("supertux-music", "music",
        "GPL-2.0-or-later (Debian supertux-data copyright: data/music/*, Marek Moeckel)",
        ("supertux-data",),
        lambda: music_files(SUPERTUX / "music", "**/*.ogg", r"_old|_remix|_2|_map|2|3"))
_debian("asterisk-speech", "speech", ASTERISK_LICENCE,
        tuple(f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "es", "fr", "it", "ru")),
        asterisk_prompts, decode_g722, None, pause=True, usable=ffmpeg_available)
_debian("opensfx-effects", "noise", OPENSFX_LICENCE, ("openttd-opensfx",), opensfx_samples,
        decode_catalogue_member, None)
_debian("supertux-effects", "noise",
        "GPL-3.0-or-later (Debian supertux-data copyright, Files: *)", ("supertux-data",),
        supertux_effects)
