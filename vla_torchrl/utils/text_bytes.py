"""Strings as fixed-width UTF-8 byte tensors, for code that handles tensors only.

Some TorchRL pieces select a module's ``in_keys`` and treat every entry as a tensor (e.g. the
NaN check of TorchRL's value estimators). An instruction stored as bytes ``uint8 [*B, width]``
(zero-padded) passes through them; :func:`decode_strings` gives the strings back exactly.

Examples:
    >>> codes = encode_strings(["put the carrot on the plate", "put é on R"], width=32)
    >>> codes.shape, codes.dtype
    (torch.Size([2, 32]), torch.uint8)
    >>> decode_strings(codes)
    ['put the carrot on the plate', 'put é on R']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["decode_strings", "encode_strings"]


def encode_strings(strings: Sequence[str], width: int) -> torch.Tensor:
    """``uint8 [len(strings), width]``: each string's UTF-8 bytes, zero-padded on the right.

    Raises:
        ValueError: a string is longer than ``width`` bytes or contains a NUL character (the
            padding byte), or ``width`` is not positive.
    """
    if width < 1:
        raise ValueError(f"width={width} must be a positive number of bytes")
    out = torch.zeros(len(strings), width, dtype=torch.uint8)
    for i, text in enumerate(strings):
        if not isinstance(text, str):
            raise TypeError(f"strings[{i}] is a {type(text).__name__}, expected str")
        raw = text.encode("utf-8")
        if b"\x00" in raw:
            raise ValueError(f"strings[{i}]={text!r} contains a NUL character, the padding byte")
        if len(raw) > width:
            raise ValueError(
                f"strings[{i}]={text!r} takes {len(raw)} UTF-8 bytes, more than width={width}; "
                "pass a larger width"
            )
        out[i, : len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return out


def decode_strings(codes: torch.Tensor) -> list[str]:
    """The strings of :func:`encode_strings`, one per row of ``codes [N, width]``."""
    if codes.dtype != torch.uint8 or codes.ndim != 2:
        raise TypeError(
            f"expected uint8 [N, width] byte codes, got {codes.dtype} of shape {tuple(codes.shape)}"
        )
    rows = codes.cpu().numpy()
    return [bytes(row).rstrip(b"\x00").decode("utf-8") for row in rows]
