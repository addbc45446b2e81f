"""How many CPU threads torch's own operators use, for a block of code.

On a CPU-rendered simulator (lavapipe) the policy's forward pass and the renderer share the
cores. Torch's intra-op worker threads keep spinning for a while after each operator, and the
renderer's threads then wait for cores: with two collection processes on 2 cores, a policy
forward at torch's default thread count made DAgger collection 4.8x slower than with one
thread (23.1 vs 4.8 s per episode, measured 2026-12-03; ``docs/results/maniskill-cpu``).

TorchRL's ``ParallelEnv`` sets its process to ``max(1, threads - workers)`` threads when its
workers start (right for the rollout, whose work is in the workers) and keeps that until it is
closed. A run that keeps such an env open (the collector's, the periodic evaluation's) then
trained on 1 thread too: SFT on 2 cores went from 58 to 35 samples/s after its first
in-simulator evaluation. :func:`keep_torch_threads` puts the count back after such a block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["keep_torch_threads", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    ``None`` leaves torch's setting alone.

    Examples:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"torch_threads={n} must be >= 1 (or None for torch's default)")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Run the block, then put torch's thread count back to what it was before it.

    Examples:
        >>> before = torch.get_num_threads()
        >>> with keep_torch_threads():
        ...     torch.set_num_threads(1)  # what starting a TorchRL ParallelEnv does
        >>> torch.get_num_threads() == before
        True
    """
    with torch_threads(torch.get_num_threads()):
        yield
