"""Tests marked `cuda` run only where torch sees a CUDA device; elsewhere they are skipped
with the reason shown (`pytest -ra`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in cuda:
        item.add_marker(skip)
