"""Dataset readers: label parsing, validation errors, label maps, frame labels and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import soundfile

from musicdet.configtools import ConfigError
from musicdet.datasets import (
    DEFAULT_LABEL_MAP,
    DatasetError,
    LabelledAudio,
    frame_labels,
    merge_label_map,
    read_dataset,
    summarize,
)

RATE = 16000


def write_audio(path: Path, seconds: float = 3.0) -> Path:
    """Quiet noise, 16 kHz mono, in the format of ``path``'s ending (wav, mp3, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).normal(0, 0.01, round(seconds * RATE)).astype(np.float32)
    soundfile.write(path, noise, RATE)
    return path


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def generic_pair(folder: Path, labels: str, name: str = "a.tsv", seconds: float = 3.0) -> Path:
    """``folder`` holding ``a.wav`` (``seconds`` long) and label file ``name``."""
    write_audio(folder / "a.wav", seconds)
    write_text(folder / name, labels)
    return folder


def read_one(folder: Path, **kwargs) -> LabelledAudio:
    [item] = read_dataset("generic", folder, **kwargs)
    return item


# ---- frame labels ---------------------------------------------------------------------------


def item(segments, duration=2.0) -> LabelledAudio:
    return LabelledAudio(Path("x.wav"), segments, duration)


def test_frame_centre_on_a_boundary_takes_the_later_segment():
    labels, mask = frame_labels(item([(0.0, 1.0, False), (1.0, 2.0, True)]), 201, 0.01)
    assert labels[99] == 0 and labels[100] == 1  # centre of frame 100 is 1.00 s
    assert mask.all()
    assert labels.dtype == np.float32 and mask.dtype == bool


def test_frame_takes_the_segment_covering_its_centre_between_centres():
    labels, _ = frame_labels(item([(0.0, 1.005, True), (1.005, 2.0, False)]), 201, 0.01)
    assert labels[100] == 1 and labels[101] == 0


def test_boundaries_that_are_not_exact_in_binary_still_land_on_their_frame():
    _, mask = frame_labels(item([(0.29, 0.57, True)]), 201, 0.01)  # 29 * 0.01 > 0.29 in floats
    assert np.flatnonzero(mask)[[0, -1]].tolist() == [29, 56]


def test_uncovered_frames_are_masked_and_countable():
    labels, mask = frame_labels(item([(0.5, 1.0, True)]), 201, 0.01)
    assert np.flatnonzero(mask).tolist() == list(range(50, 100))
    assert int((~mask).sum()) == 151
    assert labels[~mask].sum() == 0


def test_segment_reaching_the_end_covers_the_last_centre_and_a_short_one_does_not():
    _, to_end = frame_labels(item([(0.0, 2.0, True)]), 201, 0.01)
    _, short = frame_labels(item([(0.0, 1.995, True)]), 201, 0.01)
    assert to_end[200] and not short[200] and short[199]


def test_frame_count_longer_than_the_audio_is_refused():
    with pytest.raises(ValueError, match="n_frames=300"):
        frame_labels(item([(0.0, 2.0, True)]), 300, 0.01)


def test_summarize_reports_unlabelled_time():
    summary = summarize([item([(0.0, 0.5, True), (0.5, 1.5, False)])])
    assert summary["files"] == 1
    assert summary["music_seconds"] == 0.5
    assert summary["unlabelled_seconds"] == pytest.approx(0.5)


# ---- generic: sidecar files -----------------------------------------------------------------


def test_synthetic_corpus_layout_reads(tmp_path):
    generic_pair(tmp_path, "onset\toffset\tlabel\n0.0\t1.0\tno-music\n1.0\t3.0\tmusic\n")
    result = read_one(tmp_path)
    assert result.audio == tmp_path / "a.wav"
    assert result.duration == pytest.approx(3.0)
    assert result.segments == [(0.0, 1.0, False), (1.0, 3.0, True)]


def test_bom_and_crlf_are_accepted(tmp_path):
    generic_pair(tmp_path, "\ufeffonset\toffset\tlabel\r\n0\t1.5\tmusic\r\n1.5\t3\tspeech\r\n")
    assert read_one(tmp_path).segments == [(0.0, 1.5, True), (1.5, 3.0, False)]


def test_audacity_labels_without_header_and_with_spectral_lines(tmp_path):
    labels = "0.000000\t1.000000\tm\n\\\t100.0\t4000.0\n1.000000\t2.000000\ts\n\n"
    assert read_one(generic_pair(tmp_path, labels, "a.txt")).segments == [
        (0.0, 1.0, True), (1.0, 2.0, False)]


def test_csv_header_may_reorder_and_add_columns(tmp_path):
    labels = "label,confidence,start,end\nbg-music,0.9,0.5,2.0\n"
    assert read_one(generic_pair(tmp_path, labels, "a.csv")).segments == [(0.5, 2.0, True)]


def test_overlapping_same_label_segments_merge(tmp_path):
    generic_pair(tmp_path, "0\t1.5\tmusic\n1.0\t2.0\tfg-music\n2.0\t2.5\tmusic\n")
    assert read_one(tmp_path).segments == [(0.0, 2.5, True)]


def test_offset_within_one_frame_past_the_end_is_clipped(tmp_path):
    generic_pair(tmp_path, "0\t3.009\tmusic\n")
    assert read_one(tmp_path).segments == [(0.0, 3.0, True)]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("0\t1\tmusic\n2\t1.5\tmusic\n", r"a\.tsv: line 2: offset 1\.5 s < onset 2\.0 s"),
        ("-0.5\t1\tmusic\n", r"a\.tsv: line 1: negative time"),
        ("0\t3.02\tmusic\n", r"a\.tsv: line 1: offset 3\.02 s is past the end .* 10 ms"),
        ("0\t2\tmusic\n1\t3\tspeech\n", r"a\.tsv: line 2: no-music segment 1\.0–3\.0 s overlaps "
                                        r"the music segment ending at 2\.0 s \(line 1\)"),
        ("0\t1\tmusic\n1\t2\tjingle\n", r"a\.tsv: line 2: unknown label 'jingle'; expected one "
                                        r"of .*label_map"),
        ("", r"a\.tsv: no labelled segments"),
        ("onset\toffset\tlabel\n", r"a\.tsv: no labelled segments"),
        ("onset,offset,label\n0,1,music\n", r"a\.tsv: line 1: expected 3 tab-separated fields "
                                            r"onset offset label, got 1"),
        ("0\tone\tmusic\n", r"a\.tsv: line 1: offset 'one' is not a number"),
        ("0\tnan\tmusic\n", r"a\.tsv: line 1: offset 'nan' is not a number"),
        ("0\t1\n", r"a\.tsv: line 1: expected 3 tab-separated fields onset offset label, got 2"),
        ("start\tlabel\n0\tmusic\n", r"a\.tsv: line 1: header lacks column 'offset'"),
    ],
    ids=["offset<onset", "negative", "past-end", "overlap", "unknown-label", "empty",
         "header-only", "wrong-delimiter", "non-numeric", "nan", "missing-field", "bad-header"],
)
def test_bad_label_files_fail_with_file_and_line(tmp_path, labels, message):
    generic_pair(tmp_path, labels)
    with pytest.raises(DatasetError, match=message) as error:
        read_dataset("generic", tmp_path)
    assert "\n" not in str(error.value)


def test_non_utf8_label_file_fails_clearly(tmp_path):
    write_audio(tmp_path / "a.wav")
    write_text(tmp_path / "a.tsv", "0\t1\tmúsica\n", encoding="latin-1")
    with pytest.raises(DatasetError, match=r"a\.tsv: not UTF-8 text"):
        read_dataset("generic", tmp_path)


def test_label_file_without_audio_fails(tmp_path):
    generic_pair(tmp_path, "0\t1\tmusic\n")
    write_text(tmp_path / "sub" / "b.tsv", "0\t1\tmusic\n")
    with pytest.raises(DatasetError, match=r"b\.tsv: no audio file with the stem 'b' beside it"):
        read_dataset("generic", tmp_path)


def test_audio_without_label_file_fails(tmp_path):
    generic_pair(tmp_path, "0\t1\tmusic\n")
    write_audio(tmp_path / "b.flac")
    with pytest.raises(DatasetError, match=r"b\.flac: no label file; expected NAME\.tsv"):
        read_dataset("generic", tmp_path)


def test_two_label_files_for_one_audio_fail(tmp_path):
    generic_pair(tmp_path, "0\t1\tmusic\n")
    write_text(tmp_path / "a.csv", "0,1,music\n")
    with pytest.raises(DatasetError, match="share the stem 'a'"):
        read_dataset("generic", tmp_path)


def test_items_are_sorted_and_found_in_subfolders(tmp_path):
    for name in ("z/b", "a"):
        generic_pair(tmp_path, "0\t1\tmusic\n", f"{name}.tsv")
        write_audio(tmp_path / f"{name}.wav")
    audio = [result.audio for result in read_dataset("generic", tmp_path)]
    assert audio == [tmp_path / "a.wav", tmp_path / "z" / "b.wav"]


# ---- generic: manifest ----------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_manifest_in_dcase_layout(tmp_path, delimiter):
    write_audio(tmp_path / "audio" / "x.wav")
    write_audio(tmp_path / "audio" / "y.wav", 2.0)
    rows = [("filename", "onset", "offset", "event_label"), ("audio/y.wav", "0", "2", "speech"),
            ("audio/x.wav", "1", "2", "music"), ("audio/x.wav", "0", "1", "speech")]
    manifest = write_text(tmp_path / "events.csv",
                          "".join(delimiter.join(row) + "\n" for row in rows))
    x, y = read_dataset("generic", manifest)
    assert x.audio == tmp_path / "audio" / "x.wav" and y.duration == pytest.approx(2.0)
    assert x.segments == [(0.0, 1.0, False), (1.0, 2.0, True)]
    assert y.segments == [(0.0, 2.0, False)]


def test_manifest_without_header(tmp_path):
    write_audio(tmp_path / "x.wav")
    manifest = write_text(tmp_path / "events.tsv", "x.wav\t0.5\t1.5\tmusic\n")
    assert read_one(manifest).segments == [(0.5, 1.5, True)]


def test_manifest_naming_missing_audio_fails_at_its_line(tmp_path):
    write_audio(tmp_path / "x.wav")
    manifest = write_text(tmp_path / "events.csv", "x.wav,0,1,music\nnope.wav,0,1,music\n")
    with pytest.raises(DatasetError, match=r"events\.csv: line 2: audio file 'nope\.wav' not"):
        read_dataset("generic", manifest)


def test_manifest_with_unknown_delimiter_fails(tmp_path):
    manifest = write_text(tmp_path / "events.csv", "x.wav|0|1|music\n")
    with pytest.raises(DatasetError, match="separated by tab, semicolon or comma"):
        read_dataset("generic", manifest)


# ---- label maps -----------------------------------------------------------------------------


def test_default_label_map_covers_the_documented_names():
    assert merge_label_map() == {name: target == "music"
                                 for name, target in DEFAULT_LABEL_MAP.items()}
    assert {name for name, is_music in merge_label_map().items() if is_music} == {
        "music", "fg-music", "bg-music", "m"}


def test_label_map_adds_and_overrides_names_without_case(tmp_path):
    generic_pair(tmp_path, "0\t1\tJingle\n1\t2\tM\n2\t3\tMusic\n")
    assert read_one(tmp_path, label_map={"jingle": "music", "m": "no-music"}).segments == [
        (0.0, 1.0, True), (1.0, 2.0, False), (2.0, 3.0, True)]


def test_label_map_target_must_be_music_or_no_music():
    with pytest.raises(ConfigError, match=r"label_map\.jingle: expected 'music' or 'no-music'"):
        merge_label_map({"jingle": "yes"})


# ---- dispatcher -----------------------------------------------------------------------------


def test_unknown_format_and_option_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="format: expected one of generic, openbmat, seyerlehner"):
        read_dataset("rttm", tmp_path)
    with pytest.raises(ConfigError, match="annotator: unknown option for format 'generic'"):
        read_dataset("generic", tmp_path, annotator=1)


def test_path_that_is_neither_folder_nor_manifest_fails(tmp_path):
    with pytest.raises(DatasetError, match="not a folder nor a manifest"):
        read_dataset("generic", tmp_path / "missing")


# ---- OpenBMAT -------------------------------------------------------------------------------

STEMS = ("Spain_Talk_1_22.22_46.26", "France_News_2", "USA_Ads_3")


def openbmat(root: Path, splits: str | None = "file_name,split\n"
             "Spain_Talk_1_22.22_46.26.wav,0\nFrance_News_2.wav,1\nUSA_Ads_3.wav,0\n") -> Path:
    """A 3-file OpenBMAT tree: annotator_a and annotator_b disagree on the first second."""
    for stem in STEMS:
        write_audio(root / "audio" / f"{stem}.wav", 2.0)
        for annotator, first in (("annotator_a", "music"), ("annotator_b", "no-music")):
            write_text(root / "annotations" / "tsv" / "MD_mapping" / annotator / f"{stem}.tsv",
                       f"0.0\t1.0\t{first}\n1.0\t2.0\tno-music\n")
        write_text(root / "annotations" / "tsv" / "LE_mapping" / "annotator_a" / f"{stem}.tsv",
                   "0.0\t1.0\tbg-music\n1.0\t2.0\tfg-music\n")
    if splits is not None:
        write_text(root / "splits.csv", splits)
    return root


def first_labels(items) -> list[bool]:
    return [result.segments[0][2] for result in items]


def test_openbmat_reads_the_first_annotator_by_default(tmp_path):
    items = read_dataset("openbmat", openbmat(tmp_path))
    assert [result.audio.stem for result in items] == sorted(STEMS)
    assert first_labels(items) == [True, True, True]
    assert items[0].segments == [(0.0, 1.0, True), (1.0, 2.0, False)]


@pytest.mark.parametrize("annotator", [2, "annotator_b"])
def test_openbmat_annotator_by_position_or_name(tmp_path, annotator):
    items = read_dataset("openbmat", openbmat(tmp_path), annotator=annotator)
    assert first_labels(items) == [False, False, False]


def test_openbmat_unknown_annotator_lists_the_folders(tmp_path):
    with pytest.raises(ConfigError, match=r"annotator: .*\(annotator_a, annotator_b\), got 3"):
        read_dataset("openbmat", openbmat(tmp_path), annotator=3)


def test_openbmat_loudness_mapping(tmp_path):
    items = read_dataset("openbmat", openbmat(tmp_path), mapping="LE")
    assert items[0].segments == [(0.0, 2.0, True)]


def test_openbmat_folds_select_files(tmp_path):
    root = openbmat(tmp_path)
    assert [r.audio.stem for r in read_dataset("openbmat", root, folds=[0])] == [
        "Spain_Talk_1_22.22_46.26", "USA_Ads_3"]
    assert [r.audio.stem for r in read_dataset("openbmat", root, folds=[1, 2])] == [
        "France_News_2"]


def test_openbmat_splits_file_may_be_given(tmp_path):
    root = openbmat(tmp_path, splits=None)
    splits = write_text(tmp_path / "elsewhere.csv", "file_name,split\nSpain_Talk_1_22.22_46.26,3\n"
                        "France_News_2,3\nUSA_Ads_3,4\n")
    assert len(read_dataset("openbmat", root, folds=[3], splits_file=splits)) == 2


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ("name,fold\n", r"splits\.csv: line 1: expected the header file_name,split"),
        ("file_name,split\nUSA_Ads_3,10\n", r"splits\.csv: line 2: expected file_name,split with "
                                            r"split 0\.\.9"),
        ("file_name,split\nUSA_Ads_3,0\n", r"splits\.csv: no fold for 'France_News_2'"),
        ("file_name,split\nUSA_Ads_3,0\nUSA_Ads_3.wav,1\n", r"splits\.csv: line 3: 'USA_Ads_3' "
                                                            "listed twice"),
    ],
)
def test_openbmat_bad_splits_fail_with_line(tmp_path, splits, message):
    with pytest.raises(DatasetError, match=message):
        read_dataset("openbmat", openbmat(tmp_path, splits), folds=[0])


def test_openbmat_folds_are_checked_and_need_a_splits_file(tmp_path):
    with pytest.raises(ConfigError, match=r"folds: expected folds among 0\.\.9"):
        read_dataset("openbmat", openbmat(tmp_path), folds=[10])
    with pytest.raises(DatasetError, match="splits file not found"):
        read_dataset("openbmat", openbmat(tmp_path / "bare", splits=None), folds=[0])


def test_openbmat_audio_without_annotation_fails(tmp_path):
    root = openbmat(tmp_path)
    write_audio(root / "audio" / "Extra_4.wav", 1.0)
    with pytest.raises(DatasetError, match=r"Extra_4\.wav: no label file; expected an annotation"):
        read_dataset("openbmat", root)


def test_openbmat_wrong_layout_and_mapping_fail(tmp_path):
    with pytest.raises(DatasetError, match="folder not found; expected the OpenBMAT layout"):
        read_dataset("openbmat", tmp_path)
    with pytest.raises(ConfigError, match="mapping: expected one of MD, LE"):
        read_dataset("openbmat", openbmat(tmp_path), mapping="XX")


# ---- Seyerlehner ----------------------------------------------------------------------------


def test_seyerlehner_matlab_frame_labels_with_mp3(tmp_path):
    write_audio(tmp_path / "show 1.mp3", 3.0)  # libsndfile ≥ 1.1 writes MP3
    data = np.r_[np.zeros(100), np.ones(150), np.zeros(50)].astype(np.uint8)
    scipy.io.savemat(tmp_path / "show 1.wav.ref.label", {"fs": 100.0, "data": data})
    [result] = read_dataset("seyerlehner", tmp_path)
    assert result.audio.name == "show 1.mp3"
    assert result.segments == [(0.0, 1.0, False), (1.0, 2.5, True), (2.5, 3.0, False)]


def test_seyerlehner_text_labels(tmp_path):
    write_audio(tmp_path / "b.mp3", 3.0)
    write_text(tmp_path / "b.label", "0.0   1.5 music\r\n1.5 3.0  speech\r\n")
    [result] = read_dataset("seyerlehner", tmp_path)
    assert result.segments == [(0.0, 1.5, True), (1.5, 3.0, False)]


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ({"fs": 100.0, "data": np.array([0, 1, 2])}, r"x\.label: frame 2: value 2; expected 0"),
        ({"rate": 100.0, "data": np.array([0, 1])}, r"x\.label: MATLAB variables rate, data; "
                                                    "expected fs and data"),
        ({"fs": 0.0, "data": np.array([0, 1])}, r"x\.label: fs=.*expected one positive"),
        ({"fs": 100.0, "data": np.ones(400)}, r"x\.label: frame 0: offset 4\.0 s is past the end"),
        ({"fs": 100.0, "data": np.zeros(0)}, r"x\.label: no labelled segments"),
    ],
)
def test_seyerlehner_bad_matlab_files_fail(tmp_path, contents, message):
    write_audio(tmp_path / "x.wav", 3.0)
    scipy.io.savemat(tmp_path / "x.label", contents)
    with pytest.raises(DatasetError, match=message):
        read_dataset("seyerlehner", tmp_path)


def test_seyerlehner_bad_text_line_and_orphan_label_fail(tmp_path):
    write_audio(tmp_path / "x.wav", 3.0)
    write_text(tmp_path / "x.label", "0 1 music\n1 2\n")
    with pytest.raises(DatasetError, match=r"x\.label: line 2: expected 3 whitespace-separated"):
        read_dataset("seyerlehner", tmp_path)
    write_text(tmp_path / "x.label", "0 1 music\n")
    write_text(tmp_path / "y.wav.ref.label", "0 1 music\n")
    with pytest.raises(DatasetError, match=r"y\.wav\.ref\.label: no audio file with the stem 'y'"):
        read_dataset("seyerlehner", tmp_path)
