"""Helpers shared by the OOD transforms: the image check, which envs a reset touches, strings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict import NonTensorData, NonTensorStack, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.envs.transforms import Transform

__all__ = [
    "check_hwc_image",
    "draw_per_episode",
    "not_for_stored_data",
    "read_strings",
    "reset_mask",
    "write_strings",
]

#: Fix suggested when an image is channels first (a stock TorchRL image transform ran before).
_CHW_HINT = (
    "; channels first? a stock TorchRL image transform (Resize, CenterCrop, ...) takes CHW: wrap it "
    "as PermuteTransform((-1, -3, -2)), <transform>, PermuteTransform((-2, -1, -3)) (README, "
    "TorchRL interop)"
)


def check_hwc_image(who: str, key: NestedKey, shape: Sequence[int], dtype: torch.dtype) -> None:
    """Raise a one-line ``ValueError`` unless ``shape`` / ``dtype`` are an HWC uint8 image.

    The toolkit's envs declare (and write) ``IMAGE_KEY`` as uint8 ``[*B, H, W, 3]``; the
    transforms check their input (a tensor, or a spec at construction of the transformed env)
    with this, so a channels-first image is an error naming the key and the shape seen.

    Args:
        who: the caller's name, first in the message.
        key: the image entry.
        shape: the shape seen (a tensor's or a spec's).
        dtype: the dtype seen.

    Examples:
        >>> check_hwc_image("T", "image", (2, 8, 8, 3), torch.uint8)  # fine
        >>> check_hwc_image("T", "image", (2, 3, 8, 8), torch.uint8)
        Traceback (most recent call last):
        ...
        ValueError: T: 'image' should be HWC uint8 [*B, H, W, 3], got torch.uint8 (2, 3, 8, 8); channels first? ...
    """
    shape = tuple(shape)
    if dtype == torch.uint8 and len(shape) >= 3 and shape[-1] == 3:
        return
    hint = _CHW_HINT if len(shape) >= 3 and shape[-3] == 3 else ""
    raise ValueError(f"{who}: {key!r} should be HWC uint8 [*B, H, W, 3], got {dtype} {shape}{hint}")


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


def draw_per_episode(
    current: torch.Tensor | None,
    mask: torch.Tensor,
    num_choices: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Per-env choice indices, drawn anew for the envs a reset touches and kept for the others.

    The OOD variants choose once per episode (paper, Appendix A.4: a texture or an instruction
    template is drawn at reset and held for the whole episode), so a partial reset redraws only
    the envs in ``mask``. One index is drawn per env at every call, whatever the mask, so the
    generator's stream does not depend on which envs reset.

    Args:
        current: the indices held so far (``None`` before the first reset); a different env
            count (the transform moved to another env) draws all of them anew.
        mask: bool ``[num_envs]`` from :func:`reset_mask`.
        num_choices: indices are drawn from ``range(num_choices)``.
        generator: the transform's generator (``None``: torch's global one).

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> held = torch.tensor([7, 7, 7])
        >>> new = draw_per_episode(held, torch.tensor([False, True, False]), 5, g)
        >>> new[0].item(), new[2].item(), 0 <= new[1].item() < 5
        (7, 7, True)
    """
    drawn = torch.randint(num_choices, (mask.numel(),), generator=generator)
    if current is None or current.numel() != mask.numel():
        return drawn
    return torch.where(mask, drawn, current)


def not_for_stored_data(transform: Transform) -> RuntimeError:
    """The error of a per-episode env transform called on stored data (``forward``)."""
    return RuntimeError(
        f"{type(transform).__name__} is an env transform with per-episode state; append it to a "
        "TransformedEnv instead of calling it on stored data"
    )


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
