"""What each trial gets from the driver besides its loss: its features and its device.

Features reach trials one of two ways (``storage.features.transport``):

- ``object_store``: the driver loads them and `tune.with_parameters` puts them into Ray's
  object store once; every node holds a copy in its store. Simple, and fine for hours of audio.
- ``shared_cache``: the driver makes sure the content-keyed feature cache at
  ``storage.features.cache_dir`` (default ``<workdir>/features``, which several nodes already
  share) holds every file's features, one .npy each (written atomically, so drivers building
  it at once each rename complete files into place); trials get the paths, the labels and the
  normaliser (`SharedData`) and memory-map the files, reading only the windows they draw.
- ``auto`` (the default): shared_cache when the features would exceed `AUTO_LIMIT_BYTES` or
  half the smallest node's object store, estimated from the audio's duration before any
  feature is computed, else object_store.

Devices: a trial reserves ``resources.gpus`` of a GPU and trains on cuda (Ray sets its
CUDA_VISIBLE_DEVICES); with ``gpus: 0`` it trains on cpu. Where the Ray cluster has no GPU, the
request is ignored with one line (the trials reserve none and train on cpu), or refused if
``resources.require_gpu``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import ray

from musicdet.audio import audio_duration
from musicdet.config import RunConfig
from musicdet.configtools import ConfigError
from musicdet.examples import labelled_audio
from musicdet.features import num_frames
from musicdet.train import PreparedData, SharedData, prepare_data

from .spec import ResourcesSpec, StudySpec

AUTO_LIMIT_BYTES = 1 << 30
"""``auto`` sends features through the object store up to 1 GiB (≈ 5.3 h of audio at 140
float32 per 10 ms frame: 56 kB/s), well inside the store Ray sizes by default (30 % of a
node's memory) with room for the trials' checkpoints; above it, through the shared cache."""
FEATURE_BYTES = 4  # float32


def estimated_bytes(config: RunConfig) -> int:
    """The raw features of ``config``'s labelled files, in bytes, from the audio's duration."""
    features = config.features
    frames = sum(num_frames(round(audio_duration(item.audio) * features.sample_rate), features)
                 for item in labelled_audio(config.data, progress=False))
    return frames * features.dims * FEATURE_BYTES


def smallest_object_store() -> float:
    """Bytes of the smallest object store among the live nodes of the connected Ray cluster."""
    return min((node["Resources"].get("object_store_memory", math.inf)
                for node in ray.nodes() if node["Alive"]), default=math.inf)


def trial_data(spec: StudySpec, config: RunConfig, progress: bool,
               store_bytes: float = math.inf) -> tuple[PreparedData | SharedData, str]:
    """The features the trials of ``spec`` get (as `run_trial`'s ``data``), and one line
    saying how much, which way and how long they took to get ready; ``store_bytes``: the
    smallest node's object store (`smallest_object_store`), for ``auto``."""
    asked = transport = spec.storage.features.transport
    started = time.perf_counter()
    if asked == "auto":
        limit = min(AUTO_LIMIT_BYTES, store_bytes / 2)
        transport = "shared_cache" if estimated_bytes(config) > limit else "object_store"
        asked = f"auto → {transport} (limit {limit / 1e6:.0f} MB)"
    if transport == "object_store":
        data = prepare_data(config, progress)
        how = "through Ray's object store"
    else:
        data = prepare_data(config, progress, cache_dir=spec.feature_cache, mmap=True)
        how = f"memory-mapped from {spec.feature_cache}"
    how += f" (storage.features.transport: {asked})"
    examples = data.train + data.validation + (data.external or [])
    size = sum(e.features.nbytes for e in examples) / 1e6
    shared = SharedData.of(data, config.features) if transport == "shared_cache" else data
    return shared, (f"features: {len(examples)} files, {size:.1f} MB, {how}; ready in "
                    f"{time.perf_counter() - started:.1f} s")


@dataclass
class TrialDevice:
    """What a trial reserves and trains on, and the line saying a GPU request was ignored."""

    gpus: float  # of a GPU, reserved from Ray per trial
    device: str  # training.device
    note: str | None = None


def trial_device(resources: ResourcesSpec, cluster_gpus: float) -> TrialDevice:
    """Where trials train, given the GPUs the Ray cluster has (`ray.cluster_resources`)."""
    if resources.gpus == 0:  # never a GPU that Ray did not hand out
        return TrialDevice(0.0, "cpu")
    if cluster_gpus > 0:
        return TrialDevice(resources.gpus, "cuda")
    asked = f"resources.gpus: {resources.gpus:g}"
    if resources.require_gpu:
        raise ConfigError("resources.require_gpu", f"true, but the Ray cluster has no GPU "
                          f"({asked} asked for); run it where one is, or drop require_gpu "
                          "to train on cpu")
    return TrialDevice(0.0, "cpu", f"{asked} ignored: the Ray cluster has no GPU, so trials "
                                   "reserve none and train on cpu (resources.require_gpu: true "
                                   "refuses instead)")


def on_device(config: RunConfig, device: TrialDevice) -> RunConfig:
    """``config`` training on ``device``."""
    return replace(config, training=replace(config.training, device=device.device))
