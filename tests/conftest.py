"""Shared pytest setup: deterministic torch, a small thread budget for 2-core CI."""

from __future__ import annotations

import logging
import os

# MKL keeps the packing buffers of its matmuls in a private cache (its "fast memory manager").
# On CPUs with AVX-512 / AMX that cache held ~38 MB at the peak of the planner's validation
# step, memory no tensor trace sees (tests/planning/test_validate.py measured the estimate
# 29% under the allocator's peak; within 1.1% with the cache off). MKL reads this once, at its
# first call, so it is set before any test runs a matmul.
os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _isolate_logging():
    """Entry points run in-process configure the ``vla_torchrl`` logger (and Hydra the root one);
    undo that after each test so that no test sees another's handlers or levels (pytest's own
    capture handlers, which it adds and removes per test phase, are left to pytest)."""
    package = logging.getLogger("vla_torchrl")
    saved = (list(package.handlers), package.level, package.propagate)
    root_before = set(logging.getLogger().handlers)
    yield
    package.handlers[:] = saved[0]
    package.setLevel(saved[1])
    package.propagate = saved[2]
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in root_before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)


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
