"""Shared pytest set-up: keep CPU runs small and deterministic on two-core machines, and keep
every run's feature store out of the user's home."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trainers.feature_store import ENV_VAR


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run only where CUDA is present."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def feature_store_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One feature store for the session (runs in subprocesses inherit the variable)."""
    path = tmp_path_factory.mktemp("feature_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(path))
        yield path
