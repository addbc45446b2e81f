"""Shared pytest setup: deterministic torch, a small thread budget for 2-core CI."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    """Skip, with the reason shown in the summary, tests whose hardware or files are absent.

    This keeps ``-m`` free for users (``-m 'not slow'``) without un-deselecting GPU tests.
    """
    has_cuda = torch.cuda.is_available()
    checkpoint = os.environ.get("VLA_TORCHRL_CHECKPOINT")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device (marker: gpu)"))
        if "real_checkpoint" in item.keywords and not checkpoint:
            item.add_marker(
                pytest.mark.skip(
                    reason="needs a real OpenVLA checkpoint: set VLA_TORCHRL_CHECKPOINT=<dir>"
                )
            )
