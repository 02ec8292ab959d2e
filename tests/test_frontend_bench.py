"""bench/transfer.py: trains and scores each loss × front end × seed, reuses finished runs,
and refuses a missing real-audio folder in one line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile

from musicdet.modelfile import load_model

BENCH = Path(__file__).resolve().parent.parent / "bench" / "transfer.py"


def transfer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_transfer", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def real_folder(root: Path) -> Path:
    """Two 6 s files: noise then a chord (labelled music), in the generic format."""
    rng = np.random.default_rng(0)
    time = np.arange(6 * 16000) / 16000
    chord = sum(np.sin(2 * np.pi * f * time) for f in (220.0, 277.2, 329.6)) / 6
    root.mkdir()
    for index in range(2):
        audio = np.where(time < 3, 0.1 * rng.standard_normal(len(time)), chord)
        soundfile.write(root / f"p{index}.wav", audio.astype(np.float32), 16000)
        (root / f"p{index}.csv").write_text("onset,offset,label\n0,3,no-music\n3,6,music\n")
    return root


def run(module: ModuleType, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["transfer.py", *argv])
    module.main()


def test_runs_are_trained_scored_and_reused(tmp_path: Path, monkeypatch, capsys) -> None:
    module = transfer()
    argv = [str(real_folder(tmp_path / "real")), "--hours", "0.05", "--epochs", "1",
            "--seeds", "2", "--corpora", "default", "--losses", "ce",
            "--front-ends", "none", "pcen+window",
            "--hidden", "4", "--bootstrap", "20", "--out", str(tmp_path / "out")]
    run(module, argv, monkeypatch)
    first = capsys.readouterr().out
    folders = sorted(p.name for p in (tmp_path / "out").glob("default-ce-*"))
    assert folders == ["default-ce-none-seed0", "default-ce-none-seed1",
                       "default-ce-pcen+window-seed0", "default-ce-pcen+window-seed1"]
    model = load_model(tmp_path / "out" / "default-ce-pcen+window-seed1" / "model.pt")
    assert (model.config.seed, model.config.features.mel_scaling,
            model.config.model.input_norm, model.config.model.hidden_size) == \
        (1, "pcen", "window", 4)
    assert "default        ce       pcen+window  off         2" in first
    assert "real AUC [CI]" in first
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*-ce-*/model.pt")}
    run(module, argv, monkeypatch)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert capsys.readouterr().out == first


def test_a_missing_real_folder_is_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(transfer(), [str(tmp_path / "absent")], monkeypatch)
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'absent'}: no such folder; expected labelled real audio" in \
        capsys.readouterr().err


def test_ablation_corpora_leave_out_one_family_and_procedural_is_todays() -> None:
    from musicdet.synth import SynthConfig, programme

    module = transfer()
    assert module.corpus_settings("default") is None
    procedural = programme.palette(SynthConfig(**module.corpus_settings("procedural")))
    assert {role: set(weights) for role, weights in procedural.roles.items()} == {
        "music": {"additive"}, "solo": {"additive-sparse"},
        "percussion": {"additive-percussion"}, "singing": set(),
        "speech": {"espeak", "formant-speech"}, "noise": {"procedural-noise"}}
    default = programme.palette(SynthConfig()).providers()
    for family, names in module.FAMILIES.items():
        left = programme.palette(SynthConfig(**module.corpus_settings(f"no-{family}")))
        assert set(left.providers()) == set(default) - set(names), family


def test_an_augmentation_preset_reaches_the_run_config_and_names_the_run(tmp_path) -> None:
    import argparse

    module = transfer()
    args = argparse.Namespace(hours=0.1, epochs=1, hidden=8, out=tmp_path)
    plain, mixed = (module.Run("default", "ce", "window", 0, augment)
                    for augment in ("off", "masks+mix"))
    assert (plain.name, mixed.name) == ("default-ce-window-seed0",
                                        "default-ce-window-masks+mix-seed0")
    assert not module.run_config(plain, args).augment.active
    augment = module.run_config(mixed, args).augment
    assert (augment.time_masks, augment.mix_prob, augment.stretch) == (2, 0.5, 0.1)
