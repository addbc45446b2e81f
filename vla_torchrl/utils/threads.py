"""How many CPU threads torch's own operators use, for a block of code.

On a CPU-rendered simulator (lavapipe) the policy's forward pass and the renderer share the
cores. Torch's intra-op worker threads keep spinning for a while after each operator, and the
renderer's threads then wait for cores: with two collection processes on 2 cores, a policy
forward at torch's default thread count made DAgger collection 4.8x slower than with one
thread (23.1 vs 4.8 s per episode, measured 2026-12-03; ``docs/results/maniskill-cpu``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


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
