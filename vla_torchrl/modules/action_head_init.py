"""Initialise the action rows of a random-init OpenVLA's ``lm_head`` smoothly over the bin index.

Why: the action head scores 256 bins (token ids 31744..31999) with one ``lm_head`` row each. In a
trained VLA, neighbouring bins stand for neighbouring action values and have similar rows, so a
policy-gradient step that raises one sampled bin also raises its neighbours. Random-init rows are
independent: every bin must then be learned from its own samples (about 1/256 of them), and RL on
a random-init model (the tiny CPU model) barely moves in a CPU budget. This init gives the rows the
structure a trained head has, without any data:

    row_b = sum_k phi_k(t_b) v_k + noise * row_b(random),   t_b = -1 + 2 b / 255,

with ``phi`` = ``t``, ``t^2 - 1/3`` and ``cos / sin(pi k t)`` for ``k = 1..num_frequencies``
and ``v_k ~ N(0, scale^2 / d)``. The logits of one action dimension are then
``sum_k phi_k(t_b) (v_k . h)``: a smooth, low-dimensional family over the bins (a discretised
exponential family; the quadratic term makes Gaussian-like peaks), steered by the hidden state
``h``. ``scale`` keeps the initial distributions close to uniform (entropy near ``log 256``).
Real checkpoints are never touched by this (their weights are loaded).

Examples:
    >>> import torch
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> from vla_torchrl.modules.openvla import OpenVLA
    >>> _ = torch.manual_seed(0)
    >>> model = OpenVLA(OpenVLAConfig.tiny())
    >>> smooth_action_head_(model)
    >>> rows = action_head_rows(model)
    >>> rows.shape
    torch.Size([256, 64])
    >>> near = torch.cosine_similarity(rows[100], rows[101], dim=0)
    >>> far = torch.cosine_similarity(rows[0], rows[255], dim=0)
    >>> bool(near > 0.9 and far < near)
    True
"""

from __future__ import annotations

import math

import torch

from vla_torchrl.modules.openvla import OpenVLA

__all__ = ["action_head_rows", "smooth_action_head_", "smooth_bin_basis"]


def smooth_bin_basis(num_bins: int, *, num_frequencies: int = 2) -> torch.Tensor:
    """Smooth features of the bin index: ``[num_bins, 2 + 2 * num_frequencies]``.

    Columns: ``t``, ``t^2 - 1/3`` and ``cos(pi k t)``, ``sin(pi k t)`` for
    ``k = 1..num_frequencies``, with ``t = linspace(-1, 1, num_bins)``.

    Examples:
        >>> basis = smooth_bin_basis(5, num_frequencies=1)
        >>> basis.shape
        torch.Size([5, 4])
        >>> basis[:, 0].tolist()
        [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    if num_bins < 2:
        raise ValueError(f"num_bins={num_bins} should be >= 2")
    if num_frequencies < 0:
        raise ValueError(f"num_frequencies={num_frequencies} should be >= 0")
    t = torch.linspace(-1.0, 1.0, num_bins, dtype=torch.float64)
    columns = [t, t**2 - 1.0 / 3.0]
    for k in range(1, num_frequencies + 1):
        columns += [torch.cos(math.pi * k * t), torch.sin(math.pi * k * t)]
    return torch.stack(columns, dim=1).float()


def action_head_rows(model: OpenVLA) -> torch.Tensor:
    """The ``lm_head`` rows of the action tokens (a view: ``[n_action_bins, hidden]``)."""
    start, stop = model.config.action_token_ids  # [start, stop)
    return model.language_model.lm_head.weight[start:stop]


@torch.no_grad()
def smooth_action_head_(
    model: OpenVLA,
    *,
    scale: float = 0.1,
    noise: float = 0.1,
    num_frequencies: int = 2,
    generator: torch.Generator | None = None,
) -> None:
    """Overwrite the action rows of ``model.lm_head`` in place (see the module docstring).

    Args:
        model: a random-init :class:`OpenVLA` (tiny or 7B layout).
        scale: standard deviation of each ``v_k . h`` for a unit-RMS ``h``; small keeps the
            initial action distributions near uniform.
        noise: weight of the original random rows kept on top (bins stay distinguishable).
        num_frequencies: Fourier frequencies in the basis.
        generator: random source of ``v_k`` (default: torch's global RNG).
    """
    if scale <= 0:
        raise ValueError(f"scale={scale} should be > 0")
    if noise < 0:
        raise ValueError(f"noise={noise} should be >= 0")
    rows = action_head_rows(model)
    num_bins, hidden = rows.shape
    basis = smooth_bin_basis(num_bins, num_frequencies=num_frequencies)
    directions = torch.randn(basis.shape[1], hidden, generator=generator) * (
        scale / math.sqrt(hidden)
    )
    smooth = (basis @ directions).to(device=rows.device, dtype=rows.dtype)
    rows.copy_(smooth + noise * rows)
