"""Shared test setup.

torch on a small shared machine runs ~30x slower with its default thread count, so every test process (and
every subprocess it starts) uses one thread unless a test says otherwise.
"""

import os

# The Kubernetes fixtures (``k8s_cluster``, ``namespace``) live in tests/k8s/fixtures.py; loading them here
# makes them available to every test folder (sqlctl tests included). Importing them is cheap. So are the real
# database servers' fixtures (``pg_server``, ``mysql_server``: tests/_servers.py), which start only when a test asks.
pytest_plugins = ["tests.k8s.fixtures", "tests._servers"]

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never reach the Hugging Face hub or W&B servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    """GPU tests run where CUDA exists; elsewhere they are reported as skipped with the reason, never hidden."""
    import pytest

    # The marker itself, not `"gpu" in item.keywords`: keywords hold every parent node's name too, so a checkout
    # in a folder named "gpu" would skip every test.
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run `pytest -m gpu` on a GPU machine")
    for item in gpu_items:
        item.add_marker(skip)
