"""Advantage statistics and GRPO groups over the global batch of a data-parallel run.

The collective side of the advantage maths: :mod:`vla_torchrl.objectives.functional` knows no
collectives (TorchRL's ``objectives/value/functional.py`` style), :mod:`vla_torchrl.utils.distributed`
only the plain ones (process group, barriers, gradient averaging). These functions make advantage
normalisation (PPO) and group-relative advantages (GRPO, Eq. 3-6) span every rank's rollout, so
N ranks update exactly like one process on the concatenated batch. Single process: the local
statistics.
"""

from __future__ import annotations

__all__ = [
    "all_reduce_advantage_stats",
    "global_advantage_stats",
    "global_group_relative_advantage",
]

import torch
import torch.distributed as dist
from tensordict import TensorDict, TensorDictBase
from torch import Tensor, nn

from vla_torchrl.objectives import functional as F
from vla_torchrl.utils.distributed import DistInfo


def all_reduce_advantage_stats(
    advantage: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std over **all ranks** of a ``torch.distributed`` run.

    All-reduces ``(count, sum, sum of squares)`` in float64 (one small collective), so every
    rank normalises with the same global statistics; without an initialised process group it
    equals :func:`batch_advantage_stats`. Every rank must call it (it is a collective).

    Examples:
        >>> all_reduce_advantage_stats(torch.tensor([1.0, 3.0]))  # single process
        (tensor(2.), tensor(1.4142))
    """
    with torch.no_grad():
        x = advantage if mask is None else advantage[mask.expand_as(advantage)]
        x64 = x.double()
        buf = torch.stack([x64.new_tensor(float(x.numel())), x64.sum(), (x64 * x64).sum()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(buf)
        n, total, sq = buf.unbind()
        if n < 2:
            mean = total / n if n > 0 else torch.zeros_like(total)
            return mean.to(advantage.dtype), torch.ones(
                (), dtype=advantage.dtype, device=advantage.device
            )
        mean = total / n
        var = ((sq - n * mean * mean) / (n - 1)).clamp_min(0.0)
        return mean.to(advantage.dtype), var.sqrt().to(advantage.dtype)


def global_advantage_stats(
    advantage: torch.Tensor, mask: torch.Tensor | None = None
) -> F.AdvantageStatsFn:
    """Advantage statistics of the **global** rollout, frozen for all minibatches.

    Collective: every rank calls it once per rollout with its local ``ADVANTAGE_KEY``. Set the
    result as ``VLAPPOLoss.advantage_stats_fn``. Single process: the local rollout's statistics.

    Examples:
        >>> fn = global_advantage_stats(torch.tensor([1.0, 3.0]))
        >>> fn(torch.zeros(1))
        (tensor(2.), tensor(1.4142))
    """
    return F.frozen_advantage_stats(advantage, mask, stats_fn=all_reduce_advantage_stats)


def _all_gather_cat(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def global_group_relative_advantage(
    rollout: TensorDictBase,
    advantage_module: nn.Module,
    info: DistInfo,
    *,
    rank_local_groups: bool = False,
) -> TensorDictBase:
    """Run a ``GroupRelativeAdvantage`` on the global ``[B_total, T]`` batch; keep this rank's rows.

    All-gathers the module's inputs (rewards, dones, group ids, mask) along the env dim
    (collective; every rank must have the same local ``[B, T]``), computes the group-relative
    advantages (Eq. 3-6) over the whole batch, so group means / stds span all ranks, and writes
    this rank's slice ``[rank * B, (rank + 1) * B)`` into ``rollout``.

    Args:
        rollout: local ``[B, T]`` rollout.
        advantage_module: a ``GroupRelativeAdvantage``.
        info: from :func:`init_distributed`; single process: the module is applied directly.
        rank_local_groups: group ids are only unique within a rank (e.g. each rank's env numbers
            its episodes from 0 but ranks have different initial states): offset them by rank so
            groups never span ranks. Leave False when equal ids mean the same initial state on
            every rank (GRPO(s) with shared episode seeds) or with ``group_key=None`` (one group:
            the global batch).

    Returns:
        ``rollout`` with ``ADVANTAGE_KEY`` set.
    """
    if not info.enabled or info.world_size == 1:
        return advantage_module(rollout)
    if rollout.ndim != 2:
        raise ValueError(f"expected a [B, T] rollout, got batch_size {tuple(rollout.batch_size)}.")
    group_key = getattr(advantage_module, "group_key", None)
    local = rollout.select(*advantage_module.in_keys).to_tensordict()
    if rank_local_groups and group_key is not None:
        ids = local.get(group_key)
        span = torch.tensor([int(ids.max()) + 1 if ids.numel() else 0], device=ids.device)
        dist.all_reduce(span, op=dist.ReduceOp.MAX)
        local.set(group_key, ids + info.rank * span.to(ids.dtype))
    b = rollout.batch_size[0]
    gathered = TensorDict({}, batch_size=[b * info.world_size, rollout.batch_size[1]])
    for k, v in local.items(include_nested=True, leaves_only=True):
        gathered.set(k, _all_gather_cat(v, info))
    out = advantage_module(gathered)
    key = advantage_module.tensor_keys.advantage
    rollout.set(key, out.get(key)[info.rank * b : (info.rank + 1) * b].to(rollout.device))
    return rollout
