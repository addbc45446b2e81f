"""Data-parallel training on ``torch.distributed`` (launched with ``torchrun``).

One process per GPU (or per CPU worker with gloo). Each rank runs its own envs and collects its
own rollout shard; the update averages gradients across ranks. The pieces a training loop calls:

==================================  =============================================================
point in the loop                   call
==================================  =============================================================
start                               ``info = init_distributed()``
seeding, envs                       ``seed_everything(rank_seed(cfg.seed, info))``;
                                    ``make_env(..., seed=rank_seed(cfg.seed, info))``
after ``build_policy``              ``trainables = [p for g in bundle.param_groups for p in
                                    g["params"]]``; ``broadcast_parameters(trainables, info)``
advantages (PPO)                    ``loss_fn.advantage_stats_fn = global_advantage_stats(
                                    rollout[ADVANTAGE_KEY])``
advantages (GRPO)                   ``rollout = global_group_relative_advantage(rollout, grpo,
                                    info)``
after ``backward`` (per optimizer   ``sync_gradients(trainables, info)`` then
step, after accumulation)           ``clip_grad_norm_`` and ``optimizer.step()``
logging                             ``metrics = reduce_metrics(metrics, info)``;
                                    ``if info.is_main: logger.log(...)``
checkpointing                       ``if info.is_main: save(...)``; then ``barrier(info)``
end                                 ``destroy_distributed(info)``
==================================  =============================================================

Why the update is equivalent to one process on the concatenated batch
---------------------------------------------------------------------
The PPO loss (Eq. 1), the value loss and the entropy bonus are **means of per-sample terms**,
except for advantage normalisation, which uses batch statistics. So, if

1. every rank holds the same number of samples per optimizer step (equal local batch sizes,
   equal minibatch counts; the loss of an accumulated step is the mean over its minibatches),
2. the loss is the mean over samples (not the sum), and
3. advantages are normalised with **global** statistics (:func:`~vla_torchrl.objectives.global_batch.global_advantage_stats`:
   all-reduced count / sum / sum of squares) and GRPO groups span the global batch
   (:func:`~vla_torchrl.objectives.global_batch.global_group_relative_advantage`),

then the average over ranks of the local gradients equals the gradient of the global mean loss,
and gradient clipping on the averaged (synced) gradient clips the global gradient. GAE (Eq. 2)
is per trajectory and needs no communication. The optimizer step is then identical on every rank
(same parameters, same gradient), so parameters stay in sync without further communication.
``tests/utils/test_distributed.py`` checks this: one PPO update on 2 gloo ranks gives the
parameters of a 1-process update on the concatenated batch within 1e-5.

Gradient synchronisation: :func:`sync_gradients` vs DDP vs FSDP2
----------------------------------------------------------------
The evaluator calls the model's parts (vision, projector, LLM, value head) directly, not one
``forward`` of a single module, so a ``DistributedDataParallel`` wrapper would not see the
calls. :func:`sync_gradients` averages the trainable gradients explicitly, once per optimizer
step (after gradient accumulation, like DDP's ``no_sync``), in flat buckets; with LoRA the
trainables are ~1 % of the model so this is cheap. :func:`wrap_ddp` is offered for modules
whose ``forward`` is the training call. :func:`shard_fsdp2` applies FSDP2's ``fully_shard``
per transformer layer for full fine-tuning of models that do not fit one GPU. **The FSDP2 path
has run on the CPU with gloo only (2 ranks, tiny model); not yet on GPUs with NCCL.**

Checkpoints
-----------
Only rank 0 writes, and it writes the **unsharded** trainable tensors
(``PolicyBundle.save_trainable``: adapters, value head, critic backbone); every rank holds them
whole under DDP / :func:`sync_gradients`, so a checkpoint loads on any number of ranks (1 or N)
without resharding. Under FSDP2 the sharded trainables and their optimizer state are gathered
whole before rank 0 saves them and cut back into shards on load
(:mod:`vla_torchrl.training.data_parallel`), so the format is the same for both strategies.

Launch::

    torchrun --nproc-per-node 8 -m vla_torchrl.recipes.train ...          # one node, 8 GPUs
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 --rdzv-id RUN -m vla_torchrl.recipes.train ...   # each node
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "barrier",
    "broadcast_parameters",
    "destroy_distributed",
    "init_distributed",
    "is_dtensor",
    "rank_seed",
    "reduce_metrics",
    "shard_fsdp2",
    "sync_gradients",
    "wrap_ddp",
]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: this rank's device.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` (no process group).

    Examples:
        >>> info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
        >>> info.is_main, info.enabled
        (True, False)
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when a process group is initialised (collectives do something)."""
        return self.backend is not None


def init_distributed(
    *,
    backend: Literal["auto", "nccl", "gloo"] = "auto",
    device: str | torch.device | None = None,
    timeout_s: float = 1800.0,
) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment, or run single-process.

    Without torchrun's variables (``RANK``, ``WORLD_SIZE``, ...) this is a no-op returning rank
    0 of 1. Otherwise it initialises ``torch.distributed`` (``nccl`` when CUDA is available,
    ``gloo`` on the CPU, unless ``backend`` says) and, on CUDA, selects GPU ``LOCAL_RANK``.

    Args:
        backend: ``"auto"``, ``"nccl"`` (GPUs) or ``"gloo"`` (CPU).
        device: force a device (default: ``cuda:LOCAL_RANK`` if CUDA is available, else CPU).
        timeout_s: collective timeout.

    Returns:
        a :class:`DistInfo`.

    Examples:
        >>> init_distributed().world_size  # not launched by torchrun
        1
    """
    if backend not in ("auto", "nccl", "gloo"):
        raise ValueError(f"backend={backend!r} must be 'auto', 'nccl' or 'gloo'.")
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not launched:
        return DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"RANK/WORLD_SIZE are set but {missing} are not: launch with torchrun "
            "(python -m torch.distributed.run) or set all of MASTER_ADDR/MASTER_PORT/LOCAL_RANK."
        )
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"backend='nccl' needs a CUDA device, got device={device}; use 'gloo'.")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=device,
        backend=backend,
    )


def destroy_distributed(info: DistInfo) -> None:
    """Leave the process group (no-op in a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process), e.g. after rank 0 wrote a checkpoint."""
    if info.enabled:
        dist.barrier()


def rank_seed(seed: int, info: DistInfo, *, stride: int = 100_003) -> int:
    """A distinct, reproducible seed per rank for envs and sampling: ``seed + stride * rank``.

    Model initialisation must NOT use it (use the same seed on every rank, or
    :func:`broadcast_parameters`), only envs and action sampling, so ranks explore different
    episodes.

    Examples:
        >>> info = DistInfo(rank=3, world_size=4, local_rank=3, device=torch.device("cpu"))
        >>> rank_seed(7, info)
        300016
    """
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0.")
    return seed + stride * info.rank


@torch.no_grad()
def broadcast_parameters(params: Iterable[torch.Tensor], info: DistInfo, *, src: int = 0) -> None:
    """Copy rank ``src``'s values of ``params`` (e.g. the trainables) to every rank."""
    if not info.enabled:
        return
    for p in params:
        if not is_dtensor(p):  # FSDP2 shards were cut from identical full tensors
            dist.broadcast(p.data, src=src)


def _buckets(tensors: list[torch.Tensor], bucket_numel: int) -> Iterable[list[torch.Tensor]]:
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (size + t.numel() > bucket_numel or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


@torch.no_grad()
def sync_gradients(
    params: Iterable[torch.Tensor], info: DistInfo, *, bucket_numel: int = 2**24
) -> None:
    """Average ``p.grad`` over ranks (call once per optimizer step, before clipping).

    Parameters without a gradient on this rank but with one on another rank get a zero
    gradient first, so all ranks take part in the same collectives (a rank whose minibatch did
    not touch a parameter still contributes its zero to the mean, as DDP does); parameters no
    rank touched keep ``grad=None``. Gradients are flattened into buckets of at
    most ``bucket_numel`` elements (one all-reduce each). Parameters sharded by FSDP2 (DTensors)
    are skipped: FSDP2 already reduce-scattered (averaged) their gradients.

    Args:
        params: the trainable parameters (the same list, in the same order, on every rank).
        info: from :func:`init_distributed`; single process: no-op.
        bucket_numel: elements per all-reduce.
    """
    if not info.enabled or info.world_size == 1:
        return
    params = [p for p in params if p.requires_grad and not is_dtensor(p)]
    # parameters no rank touched (e.g. a ViT block whose output is unused) keep grad None, as in
    # a single process: the optimizer then leaves their state alone
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=info.device)
    dist.all_reduce(used, op=dist.ReduceOp.MAX)
    params = [p for p, u in zip(params, used.tolist(), strict=True) if u]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    for bucket in _buckets(grads, bucket_numel):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= info.world_size
        offset = 0
        for g in bucket:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def is_dtensor(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``DTensor`` (e.g. a parameter or gradient sharded by FSDP2).

    Examples:
        >>> is_dtensor(torch.zeros(2))
        False
    """
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed tensors
        return False
    return isinstance(t, DTensor)


def wrap_ddp(module: nn.Module, info: DistInfo, **ddp_kwargs) -> nn.Module:
    """``DistributedDataParallel`` around a module whose ``forward`` is the training call.

    Only for such modules: the evaluator calls the OpenVLA's parts directly, so for it use
    :func:`sync_gradients` instead. Single process: returns ``module`` unchanged.
    """
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, **ddp_kwargs)


def shard_fsdp2(
    model: nn.Module,
    info: DistInfo,
    *,
    layer_types: tuple[type[nn.Module], ...] | None = None,
    reshard_after_forward: bool = True,
    mixed_precision: torch.dtype | None = torch.bfloat16,
    shard_root: bool = True,
) -> nn.Module:
    """Shard ``model`` with FSDP2 (``fully_shard``) per layer, then the root (full fine-tuning).

    Tested on the CPU with gloo (2 ranks, the tiny model, through the training recipe's update:
    ``tests/training/test_train_distributed.py``); not yet run on GPUs with NCCL.

    Each module of ``layer_types`` (default: the children of every outermost ``nn.ModuleList``,
    i.e. the LLM's decoder layers) becomes one FSDP unit; with ``shard_root`` the root unit holds
    the rest (embeddings, projector, value head). The training recipe passes
    ``shard_root=False``: the actor and evaluator call the model's parts directly, not the
    root's ``forward``, so the root's parameters stay replicated (synchronised by
    :func:`sync_gradients`) and only the layer units are sharded. Parameters are sharded over all ranks; the
    forward all-gathers a unit's parameters just in time and the backward reduce-scatters
    gradients, so no :func:`sync_gradients` call is needed. Clip with
    ``torch.nn.utils.clip_grad_norm_`` on the DTensor parameters (it computes the global norm).
    The optimizer must be built **after** sharding, from ``model.parameters()``.

    Args:
        model: the module to shard in place.
        info: from :func:`init_distributed` (must be enabled, on CUDA).
        layer_types: module classes that form one unit each.
        reshard_after_forward: free gathered parameters after the forward (ZeRO-3) or keep
            them until the backward (ZeRO-2-like, faster, more memory).
        mixed_precision: parameter dtype for compute (gradients reduced in float32), or None.
        shard_root: also make ``model`` itself a unit (its ``forward`` must be the call).

    Returns:
        the sharded model (the same object).
    """
    if not info.enabled:
        raise RuntimeError("shard_fsdp2 needs an initialised process group (launch with torchrun).")
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=mixed_precision, reduce_dtype=torch.float32)
        if mixed_precision is not None
        else MixedPrecisionPolicy()
    )
    units: list[nn.Module] = []
    inside: set[int] = set()  # modules under a chosen unit: a unit is never nested in another
    for module in model.modules():
        if id(module) in inside:
            continue
        if layer_types is None:
            chosen = list(module) if isinstance(module, nn.ModuleList) else []
        else:
            chosen = [module] if isinstance(module, layer_types) else []
        for unit in chosen:
            units.append(unit)
            inside.update(id(m) for m in unit.modules())
    if not units:
        raise ValueError("shard_fsdp2 found no layer to shard; pass layer_types")
    for unit in units:
        fully_shard(unit, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    if shard_root:
        fully_shard(model, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    return model


def reduce_metrics(metrics: Mapping[str, float | torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Mean of each scalar metric over ranks (collective; same keys on every rank).

    Examples:
        >>> reduce_metrics({"loss": torch.tensor(2.0)}, init_distributed())
        {'loss': 2.0}
    """
    names = sorted(metrics)
    values = torch.tensor(
        [float(metrics[n]) for n in names], dtype=torch.float64, device=info.device
    )
    if info.enabled:
        dist.all_reduce(values)
        values /= info.world_size
    return dict(zip(names, values.tolist(), strict=True))
