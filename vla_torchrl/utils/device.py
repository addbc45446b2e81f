"""Device selection with an error that says what is missing."""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["select_device"]

DeviceRequest = Literal["auto", "cpu", "cuda"] | str


def select_device(request: DeviceRequest = "auto") -> torch.device:
    """Return the torch device for ``request``.

    Args:
        request: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.

    Raises:
        ValueError: for an unknown request, or a CUDA request on a machine without CUDA.

    Examples:
        >>> select_device("cpu")
        device(type='cpu')
        >>> select_device("auto").type in ("cpu", "cuda")
        True
    """
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(request)
    except RuntimeError as err:
        raise ValueError(
            f"device={request!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={request!r} was requested but this machine has no CUDA device; "
                "use device=cpu (or device=auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={request!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif device.type != "cpu":
        raise ValueError(f"device={request!r} is not supported; use 'auto', 'cpu' or 'cuda[:N]'")
    return device
