"""Shared test settings and the fixtures of the study tests (helpers: tests/studyutil.py)."""

from collections.abc import Iterator

import pytest
import torch

# Tests use tiny models on a shared 2-core machine: one intra-op thread avoids
# oversubscription (two spinning OpenMP threads were 4× slower under load here).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One feature cache for every study test: the tiny corpus is computed once."""
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance on loopback with 2 CPUs, for studies run in this process."""
    import ray

    from search.runner import connect_ray

    connect_ray(None, 2)
    yield
    ray.shutdown()
