"""The training loop's side of data-parallel runs: global metric records, FSDP2 sharding.

``vla-torchrl-train`` launched by ``torchrun`` runs one process per rank (see
:mod:`vla_torchrl.utils.distributed` for the collectives and why the update equals one process
on the concatenated batch). This module holds what the recipe adds on top:

- :func:`combine_records`: one metric record for the whole run from each rank's record
  (episode metrics weighted by episode counts, throughputs summed, times maxed, losses averaged).
- ``dist.strategy=fsdp2``: :func:`shard_policy` shards the decoder layers with FSDP2;
  :func:`full_trainables` / :func:`full_optimizer_state` gather whole tensors for checkpoints
  (the same format as a replicated run, so a checkpoint resumes under either strategy and on
  any number of ranks) and :func:`load_trainables` / :func:`optimizer_state_for` cut them back
  into this run's shards.

Starting or resuming the run on every rank is :func:`~vla_torchrl.training.run.start_run`'s job
(rank 0 owns the run directory; the other ranks load the checkpoint it chose).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vla_torchrl.errors import UserError
from vla_torchrl.utils.distributed import DistInfo, is_dtensor, shard_fsdp2

__all__ = [
    "combine_records",
    "full_optimizer_state",
    "full_trainables",
    "gather_record",
    "load_trainables",
    "optimizer_state_for",
    "shard_policy",
]

_log = logging.getLogger("vla_torchrl.training.data_parallel")


def gather_record(record: Mapping[str, float], info: DistInfo) -> list[dict[str, float]] | None:
    """Every rank's record on rank 0 (collective); None on the other ranks.

    Single process: ``[record]``.
    """
    if not info.enabled:
        return [dict(record)]
    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(dict(record), out, dst=0)
    return out


def combine_records(
    records: Sequence[Mapping[str, float]],
    *,
    episode_keys: Collection[str],
    count_key: str,
) -> dict[str, float]:
    """Merge the ranks' metric records into one record of the whole (global) batch.

    - ``count_key`` (episodes that ended) and keys ending in ``_per_s`` (throughputs): summed;
    - ``episode_keys`` (per-episode means such as return and success): averaged with the
      ranks' episode counts as weights (ranks without an ended episode lack them);
    - keys ending in ``_s`` (durations): the maximum (the slowest rank sets the pace);
    - everything else (losses, counters equal on every rank): the mean over the ranks that have it.

    Args:
        records: one record per rank.
        episode_keys: keys averaged per episode.
        count_key: the key holding each rank's episode count.

    Returns:
        the merged record.

    Examples:
        >>> combine_records(
        ...     [{"n": 1, "ret": 1.0, "loss": 0.5, "perf/steps_per_s": 10.0, "perf/update_s": 2.0},
        ...      {"n": 3, "ret": 0.0, "loss": 1.5, "perf/steps_per_s": 30.0, "perf/update_s": 3.0}],
        ...     episode_keys={"ret"}, count_key="n")
        {'n': 4, 'ret': 0.25, 'loss': 1.0, 'perf/steps_per_s': 40.0, 'perf/update_s': 3.0}
    """
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    out: dict[str, float] = {}
    for key in keys:
        present = [r for r in records if key in r]
        values = [r[key] for r in present]
        if key == count_key or key.endswith("_per_s"):
            out[key] = sum(values)
        elif key in episode_keys:
            weights = [r.get(count_key, 0) for r in present]
            total = sum(weights)
            if total > 0:
                out[key] = sum(w * v for w, v in zip(weights, values, strict=True)) / total
        elif key.endswith("_s"):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out


# -- FSDP2 ---------------------------------------------------------------------------------------
def shard_policy(bundle, info: DistInfo) -> None:
    """Shard the policy's decoder layers over the ranks with FSDP2 (``dist.strategy=fsdp2``).

    The LLM's decoder layers (and those of a separate critic's backbone) become FSDP2 units;
    the rest (vision backbone, projector, embeddings, head, value head) stays replicated and
    its gradients are averaged by :func:`~vla_torchrl.utils.distributed.sync_gradients`. The
    bundle's optimizer groups are rebuilt with the sharded parameters: build the optimizer
    after this call.

    Raises:
        UserError: not launched by ``torchrun`` (nothing to shard over).
    """
    if not info.enabled:
        raise UserError(
            "dist.strategy=fsdp2 shards the model over the ranks of a torchrun launch, but this "
            "process is not one; launch with torchrun --nproc-per-node N, or use dist.strategy=ddp"
        )
    names = {id(p): name for name, p in bundle.trainable_named_parameters().items()}
    owners = [bundle.model]
    if bundle.critic is not None and any(
        isinstance(m, nn.ModuleList) for m in bundle.critic.modules()
    ):
        owners.append(bundle.critic)  # a separate critic has its own decoder layers
    for owner in owners:
        shard_fsdp2(owner, info, mixed_precision=None, shard_root=False)
    sharded = bundle.trainable_named_parameters()
    bundle.param_groups = [
        {**group, "params": [sharded[names[id(p)]] for p in group["params"]]}
        for group in bundle.param_groups
    ]


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if is_dtensor(t) else t


def full_trainables(trainables: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole (unsharded, detached) trainable tensors; collective under FSDP2 (every rank calls)."""
    return {name: _full(p.detach()) for name, p in trainables.items()}


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with sharded state tensors gathered whole (collective)."""
    state = optimizer.state_dict()
    return {
        **state,
        "state": {
            idx: {k: _full(v) if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
            for idx, entry in state["state"].items()
        },
    }


@torch.no_grad()
def load_trainables(
    trainables: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]
) -> None:
    """Copy whole saved tensors into this run's trainables (sharded ones: this rank's shard)."""
    for name, param in trainables.items():
        value = tensors[name].to(param.device, param.dtype)
        param.copy_(_like(param, value))


def _like(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    if not is_dtensor(param):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.detach(), param.device_mesh, param.placements)


def optimizer_state_for(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> dict:
    """A saved (whole-tensor) optimizer state cut into this run's shards, for ``load_state_dict``.

    Unchanged when no parameter is sharded.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(is_dtensor(p) for p in params):
        return dict(state)
    out = {}
    for idx, entry in state["state"].items():
        param = params[int(idx)]
        out[idx] = {
            k: _like(param, v.to(param.device))
            if isinstance(v, torch.Tensor) and v.shape == param.shape
            else v
            for k, v in entry.items()
        }
    return {**state, "state": out}
