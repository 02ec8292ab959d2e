"""Security guarantees: model files and checkpoints load without running code (a crafted pickle
is refused and its payload never runs), and no code path deserialises unsafely."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from guarantees import assert_one_error_line, run_cli

from musicdet.modelfile import ModelFileError, load_model

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("musicdet", "search", "bench")


class Payload:
    """Unpickling this object creates the folder ``marker``: code execution made visible."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def crafted_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The payload in a torch zip file and in a legacy (pre-1.6) torch pickle file."""
    folder.mkdir(parents=True, exist_ok=True)
    zipped, plain = folder / "zipped.pt", folder / "plain.pt"
    torch.save({"meta": "{}", "state_dict": {"w": Payload(marker)}}, zipped)
    torch.save({"meta": "{}", "state_dict": Payload(marker)}, plain,
               _use_new_zipfile_serialization=False)
    return {"zipped": zipped, "plain": plain}


@pytest.mark.parametrize("kind", ["zipped", "plain"])
def test_crafted_model_file_is_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "ran"
    path = crafted_files(tmp_path, marker)[kind]
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    assert str(caught.value) == (
        f"{path}: not a readable musicdet model file (truncated, or not one): it holds pickled "
        "Python objects (posix.mkdir), not only tensors: refused, as loading them could run code"
    )
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.is_dir()


@pytest.mark.parametrize("kind", ["zipped", "plain"])
def test_crafted_checkpoint_is_refused_by_train_and_never_runs(tmp_path, capsys, kind):
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    crafted_files(tmp_path, marker)[kind].rename(out.mkdir() or out / "checkpoint.pt")
    outcome = run_cli(capsys, "train", "--out", out)
    assert_one_error_line(outcome, f"{out / 'checkpoint.pt'}: not a readable checkpoint (it "
                          "holds pickled Python objects (posix.mkdir), not only tensors: refused,"
                          " as loading them could run code); delete it or train without resume")
    assert not marker.exists()
    assert not (out / "model.pt").exists()


def test_truncated_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": {"w": torch.zeros(1000)}}, out / "checkpoint.pt")
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    outcome = run_cli(capsys, "train", "--out", out)
    assert_one_error_line(outcome, f"{out / 'checkpoint.pt'}: not a readable checkpoint "
                          "(PytorchStreamReader failed reading zip archive")


def unsafe_loads(tree: ast.AST) -> list[str]:
    """Calls that can run code while reading data: torch.load without weights_only=True,
    yaml.load/unsafe_load/full_load, pickle/dill/joblib loads, numpy loads with pickles."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)):
            continue
        module, name = node.func.value.id, node.func.attr
        keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
        if ((module == "torch" and name == "load" and keywords.get("weights_only") is not True)
                or (module == "yaml" and name in {"load", "load_all", "unsafe_load",
                                                  "full_load", "full_load_all"})
                or (module in {"pickle", "dill", "joblib", "cloudpickle"} and "load" in name)
                or (module == "np" and keywords.get("allow_pickle") is True)):
            found.append(f"line {node.lineno}: {module}.{name}")
    return found


def test_no_unsafe_deserialisation_in_the_code():
    sources = [path for folder in SOURCE_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(sources) > 20
    problems = [f"{path.relative_to(ROOT)} {call}" for path in sources
                for call in unsafe_loads(ast.parse(path.read_text(encoding="utf-8")))]
    assert problems == []


def test_the_scanner_finds_unsafe_calls():
    code = ("torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=True)\n"
            "yaml.load(s)\nyaml.safe_load(s)\npickle.loads(b)\nnp.load(p, allow_pickle=True)\n")
    assert unsafe_loads(ast.parse(code)) == [
        "line 1: torch.load", "line 2: torch.load", "line 4: yaml.load", "line 6: pickle.loads",
        "line 7: np.load",
    ]
