"""What trials get from the driver: features by object store or shared cache (the same
training either way), and the device (a GPU request ignored, or refused, without a GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from studyutil import DRIVER_ENV, start_driver, write_spec

from musicdet.configtools import ConfigError
from musicdet.train import PreparedData, SharedData, prepare_data
from search.resources import TrialDevice, estimated_bytes, trial_data, trial_device
from search.runner import run_study
from search.spec import ResourcesSpec, load_spec
from search.trainable import epoch_history, trial_dir, worker_info

ONE_CE_TRIAL = {"sampler": "grid", "grid": [{"type": "ce"}], "losses": ["ce"], "n_trials": 1}


def test_a_gpu_request_trains_on_cuda_where_ray_has_a_gpu_else_is_ignored_or_refused() -> None:
    assert trial_device(ResourcesSpec(gpus=0.5), 1.0) == TrialDevice(0.5, "cuda")
    assert trial_device(ResourcesSpec(), 4.0).device == "cpu"  # none reserved: none used
    ignored = trial_device(ResourcesSpec(gpus=0.5), 0.0)
    assert (ignored.gpus, ignored.device) == (0.0, "cpu")
    assert ignored.note.startswith("resources.gpus: 0.5 ignored: the Ray cluster has no GPU")
    with pytest.raises(ConfigError, match=r"^resources.require_gpu: true, but the Ray cluster "
                                          r"has no GPU \(resources.gpus: 0.5 asked for\)"):
        trial_device(ResourcesSpec(gpus=0.5, require_gpu=True), 0.0)


def test_auto_sizes_the_features_from_the_audio_and_maps_them_above_half_the_store(
        tmp_path, cache_dir) -> None:
    spec = load_spec(write_spec(tmp_path, cache_dir))
    config = spec.base_config()
    data = prepare_data(config, progress=False)
    size = sum(e.features.nbytes for e in data.train + data.validation)
    assert estimated_bytes(config) == size
    assert isinstance(trial_data(spec, config, False, 2 * size)[0], PreparedData)
    shared, line = trial_data(spec, config, False, 2 * size - 2)
    assert isinstance(shared, SharedData)
    assert f"(storage.features.transport: auto → shared_cache (limit {size / 1e6:.0f} MB))" \
        in line
    assert [Path(e.path).parent for e in shared.train] == [spec.feature_cache] * len(shared.train)


@pytest.mark.slow
def test_a_trial_trains_the_same_from_the_shared_cache_as_through_the_object_store(
        tmp_path, cache_dir, local_ray, capsys) -> None:
    histories, lines = {}, {}
    for transport, gpus in (("object_store", 0.5), ("shared_cache", 0.0)):
        folder = tmp_path / transport
        folder.mkdir()
        spec = load_spec(write_spec(folder, cache_dir, name=transport, search=ONE_CE_TRIAL,
                                    storage={"features": {"transport": transport}},
                                    resources={"cpus": 1, "gpus": gpus}))
        assert run_study(spec, out=sys.stdout).finished == 1  # capsys's stdout
        lines[transport] = capsys.readouterr().out.splitlines()
        out = trial_dir(spec.workdir, 0)
        histories[transport] = [{k: v for k, v in e.items() if k != "seconds"}
                                for e in epoch_history(out)]
        assert worker_info(out)["gpu_ids"] == []
        assert "device: cpu" in (out / "config.yaml").read_text()
    assert len(histories["shared_cache"]) == 2
    assert histories["shared_cache"] == histories["object_store"]  # every metric, bit for bit
    ignored = [line for line in lines["object_store"] if "resources.gpus" in line]
    assert ignored == ["resources.gpus: 0.5 ignored: the Ray cluster has no GPU, so trials "
                       "reserve none and train on cpu (resources.require_gpu: true refuses "
                       "instead)"]
    assert not [line for line in lines["shared_cache"] if "resources.gpus" in line]
    shared = tmp_path / "shared_cache/runs/shared_cache/features"
    said = [line for line in lines["shared_cache"] if line.startswith("features: ")]
    assert len(said) == 1 and f"memory-mapped from {shared} " in said[0], lines
    assert len(list(shared.glob("*.npy"))) == int(said[0].split()[1])  # one file per example
    assert "through Ray's object store" in next(
        line for line in lines["object_store"] if line.startswith("features: "))


@pytest.mark.slow
def test_require_gpu_without_a_gpu_refuses_the_study_in_one_line(tmp_path, cache_dir) -> None:
    path = write_spec(tmp_path, cache_dir, search={"n_trials": 1},
                      resources={"cpus": 1, "gpus": 0.25, "require_gpu": True})
    hidden = {**DRIVER_ENV, "CUDA_VISIBLE_DEVICES": ""}  # a CPU-only Ray even on a GPU machine
    driver = start_driver(path, cwd=tmp_path, env=hidden)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("musicdet-search")]
    assert ours == err.strip().splitlines()[-1:] == [  # above it only Ray's token warning
        "musicdet-search: error: resources.require_gpu: true, but the Ray cluster has no GPU "
        "(resources.gpus: 0.25 asked for); run it where one is, or drop require_gpu to train "
        "on cpu"], err
    assert not (tmp_path / "runs/tiny/trials").exists()  # refused before any trial


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this "
                    "machine): the cuda path of resources.gpus")
def test_a_trial_given_a_gpu_trains_on_cuda(tmp_path, cache_dir, local_ray) -> None:
    spec = load_spec(write_spec(tmp_path, cache_dir, search=ONE_CE_TRIAL,
                                resources={"cpus": 1, "gpus": 0.5, "require_gpu": True}))
    assert run_study(spec).finished == 1
    out = trial_dir(spec.workdir, 0)
    assert worker_info(out)["gpu_ids"]  # Ray handed this trial a GPU
    assert "device: cuda" in (out / "config.yaml").read_text()
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 2.0
