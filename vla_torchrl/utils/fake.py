"""Whether a tensor holds data: ``False`` for fake tensors (``FakeTensorMode``) and ``meta``.

Memory planning (:mod:`vla_torchrl.planning`) runs the real modules on tensors without data.
Checks that read values (a range check, a host-side ``bool(...)``) are skipped for such tensors
and kept for every real one.

Examples:
    >>> import torch
    >>> has_data(torch.zeros(2)), has_data(torch.zeros(2, device="meta"))
    (True, False)
    >>> from torch._subclasses.fake_tensor import FakeTensorMode
    >>> with FakeTensorMode():
    ...     fake = torch.zeros(2)
    >>> has_data(fake)
    False
"""

from __future__ import annotations

import torch

__all__ = ["has_data"]


def has_data(*tensors: torch.Tensor) -> bool:
    """True iff every tensor is a real tensor with values (not fake, not on ``meta``)."""
    from torch._subclasses.fake_tensor import FakeTensor

    return not any(isinstance(t, FakeTensor) or t.is_meta for t in tensors)
