"""The modules' mode during a policy update: training mode, dropout left as it was.

``build_policy`` returns the model in ``eval()`` (rollouts, evaluation). transformers and timm
apply activation checkpointing only to modules in training mode, so an update that keeps the
model in ``eval()`` silently ignores ``gradient_checkpointing=True`` (FACTS.md). The update
therefore runs inside :func:`update_mode`: every module switches to training mode except the
dropout layers (``nn.Dropout*``, timm ``DropPath``), which keep their mode, so the maths of an
update is the same as before (the project's models have no dropout by default: LoRA dropout 0,
timm drop rates 0, Llama ``attention_dropout`` 0). On exit every module gets its previous mode
back.

Examples:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).eval()
    >>> with update_mode(net):
    ...     net.training, net[0].training, net[1].training
    (True, True, False)
    >>> net.training
    False
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["update_mode"]


def _is_dropout(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return True
    return type(module).__name__ == "DropPath"  # timm's stochastic depth


@contextlib.contextmanager
def update_mode(*modules: nn.Module) -> Iterator[None]:
    """Training mode (activation checkpointing on where enabled) for the update, dropout untouched.

    Args:
        modules: the modules the update calls (e.g. the loss, which holds evaluator, model and
            critic); non-``nn.Module`` arguments are ignored.
    """
    saved: dict[int, tuple[nn.Module, bool]] = {}
    for root in modules:
        if not isinstance(root, nn.Module):
            continue
        for module in root.modules():
            saved.setdefault(id(module), (module, module.training))
    try:
        for module, _ in saved.values():
            if not _is_dropout(module):
                module.training = True
        yield
    finally:
        for module, mode in saved.values():
            module.training = mode
