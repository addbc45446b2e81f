"""Helpers shared by the OOD transforms: which envs a reset touches, reading and writing strings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict import NonTensorData, NonTensorStack, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.envs.transforms import Transform

__all__ = ["read_strings", "reset_mask", "write_strings"]


def reset_mask(
    transform: Transform, tensordict: TensorDictBase | None, num_envs: int
) -> torch.Tensor:
    """Which of the ``num_envs`` (flattened) envs a reset call touches.

    TorchRL signals a partial reset with a boolean ``"_reset"`` entry (one per reset key of the
    parent env) in the tensordict given to ``env.reset``; without one, every env resets.

    Args:
        transform: the transform asking (its parent env gives the reset keys, if attached).
        tensordict: the input of ``TransformedEnv._reset`` (may be ``None``).
        num_envs: the number of envs, i.e. the product of the batch dims.

    Returns:
        A bool tensor ``[num_envs]``, ``True`` where the env is reset.
    """
    if tensordict is None:
        return torch.ones(num_envs, dtype=torch.bool)
    parent = transform.parent
    keys: Sequence[NestedKey] = parent.reset_keys if parent is not None else ["_reset"]
    mask = None
    for key in keys:
        value = tensordict.get(key, None)
        if value is None:
            continue
        value = value.reshape(num_envs, -1).any(-1).cpu()
        mask = value if mask is None else mask | value
    return torch.ones(num_envs, dtype=torch.bool) if mask is None else mask


def _flatten(value) -> list:
    if isinstance(value, str):
        return [value]
    out: list = []
    for item in value:
        out.extend(_flatten(item))
    return out


def read_strings(tensordict: TensorDictBase, key: NestedKey) -> tuple[list[str], torch.Size]:
    """The strings stored under ``key``, flattened over the batch dims, and those batch dims.

    Raises:
        KeyError: when ``key`` is missing.
        TypeError: when the entry does not hold strings.
    """
    value = tensordict.get(key, None)
    if value is None:
        raise KeyError(f"no entry {key!r} in the tensordict (keys: {list(tensordict.keys(True))})")
    batch = tensordict.batch_size
    num = math.prod(batch)
    if isinstance(value, NonTensorStack):
        strings = _flatten(value.tolist())
    elif isinstance(value, NonTensorData):
        data = value.data
        strings = [data] * num if isinstance(data, str) else _flatten(data)
    else:
        raise TypeError(
            f"entry {key!r} holds a {type(value).__name__}, expected strings (a NonTensorStack)"
        )
    if len(strings) != num or not all(isinstance(s, str) for s in strings):
        raise TypeError(
            f"entry {key!r} should hold one string per env ({num} for batch {tuple(batch)}), "
            f"got {strings!r}"
        )
    return strings, batch


def write_strings(tensordict: TensorDictBase, key: NestedKey, strings: list[str]) -> None:
    """Store one string per env under ``key``, shaped like the tensordict's batch dims."""
    batch = tensordict.batch_size
    nested: list = list(strings)
    for dim in reversed(batch[1:]):
        nested = [nested[i : i + dim] for i in range(0, len(nested), dim)]
    if len(batch) == 0:
        tensordict.set(key, NonTensorData(strings[0]))
    else:
        tensordict.set(key, NonTensorStack.from_list(nested))
