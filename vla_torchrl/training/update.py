"""One policy update on a batch: minibatches, gradient accumulation, clipping, non-finite guard.

The paper's update (FACTS.md): 1 epoch over the rollout, minibatches of 8 transitions, 20
minibatches accumulated per optimizer step, gradients clipped to norm 10. A step whose loss or
gradient is not finite is skipped (gradients dropped, optimizer untouched) and counted, so one
bad batch costs one step rather than the run. With ``verify_steps`` a step whose gradients were
finite but whose result is not (``optim.lr=1e30``: finite gradients, overflowing weights or
logits) is caught too: the step's first minibatch is evaluated again after the step, and if its
loss is no longer finite the parameters and optimizer state go back to their values before the
step, which counts as skipped. So a diverging step never reaches a checkpoint or a rollout, and
the run stays resumable (``optim.max_consecutive_skips`` then stops it with advice).

Data-parallel (``dist_info`` of a ``torchrun`` run): after each step's accumulation the ranks
agree on finiteness (a step is skipped everywhere if it is non-finite anywhere), then the
gradients are averaged over ranks (:func:`~vla_torchrl.utils.distributed.sync_gradients`)
before clipping, so every rank takes the same optimizer step. Every rank must run the same
number of minibatches (equal local batch sizes).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> loss_fn = lambda td: TensorDict({"loss_l2": ((w - td["x"]) ** 2).mean()}, [])
    >>> batch = TensorDict({"x": torch.ones(8, 1)}, [8])
    >>> stats = run_update(batch, loss_fn, torch.optim.SGD([w], lr=0.5), [w],
    ...                    minibatch_size=4, grad_accum_steps=2)
    >>> stats["steps"], stats["skipped"], round(w.item(), 3)
    (1, 0, 1.0)
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.distributed as dist
from tensordict import TensorDictBase

from vla_torchrl.config.train_schema import TrainConfig
from vla_torchrl.envs.episodes import unfinished_step_mask
from vla_torchrl.envs.sim_errors import void_step_mask
from vla_torchrl.keys import ADVANTAGE_KEY, REWARD_KEY, VALID_STEP_KEY, next_key
from vla_torchrl.modules.train_mode import update_mode
from vla_torchrl.objectives import GroupRelativeAdvantage, UsesAdvantageStats, VLATPOLoss
from vla_torchrl.objectives.global_batch import (
    global_advantage_stats,
    global_group_relative_advantage,
)
from vla_torchrl.utils.distributed import DistInfo, is_dtensor, sync_gradients
from vla_torchrl.utils.fake import has_data

__all__ = ["offer_advantage_stats", "rewards_vary", "rl_update", "run_update", "total_loss"]


def total_loss(losses: TensorDictBase) -> torch.Tensor:
    """Sum of every ``loss_*`` entry (TorchRL's convention for composed objectives)."""
    terms = [value for key, value in losses.items() if key.startswith("loss_")]
    if not terms:
        raise ValueError(f"the loss returned no 'loss_*' entry (keys: {list(losses.keys())})")
    return sum(terms)


def run_update(
    batch: TensorDictBase,
    loss_fn: Callable[[TensorDictBase], TensorDictBase],
    optimizer: torch.optim.Optimizer,
    parameters: Sequence[torch.nn.Parameter],
    *,
    minibatch_size: int,
    grad_accum_steps: int,
    epochs: int = 1,
    max_grad_norm: float | None = None,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    dist_info: DistInfo | None = None,
    autocast: Literal["none", "bf16"] = "none",
    verify_steps: bool = False,
) -> dict[str, float]:
    """Run ``epochs`` passes of minibatch SGD over ``batch`` (split along its first dim).

    Each optimizer step accumulates ``grad_accum_steps`` minibatches; each minibatch's loss is
    divided by the number of minibatches in its step, so a step follows the gradient of the mean.

    Args:
        batch: transitions ``[N]`` (or trajectories ``[N, T]`` for trajectory losses).
        loss_fn: maps a minibatch to a TensorDict of ``loss_*`` terms and diagnostics.
        optimizer: the optimizer over ``parameters``.
        parameters: the trained parameters (for clipping and the finiteness check).
        minibatch_size: rows per minibatch.
        grad_accum_steps: minibatches per optimizer step.
        epochs: passes over the batch (paper: 1).
        max_grad_norm: clip the global gradient norm (paper: 10), or None.
        generator: shuffling RNG (default: torch's global RNG).
        shuffle: shuffle rows each epoch.
        dist_info: the data-parallel context; gradients are averaged over its ranks once per
            optimizer step (None or a single process: no communication).
        autocast: ``"bf16"``: compute the loss under ``torch.autocast`` in bfloat16.
        verify_steps: after each optimizer step, evaluate the step's first minibatch again and
            undo the step (parameters and optimizer state) when its loss is not finite. Costs
            one forward per step and a copy of the trained parameters and optimizer state
            (not done on fake / meta tensors).

    Returns:
        mean diagnostics over minibatches (detached scalars), plus ``steps`` (optimizer steps
        taken), ``skipped`` (steps skipped for non-finite values, undone ones included),
        ``undone`` (steps undone by ``verify_steps``) and ``grad_norm``.
    """
    if minibatch_size < 1 or grad_accum_steps < 1 or epochs < 1:
        raise ValueError(
            f"minibatch_size={minibatch_size}, grad_accum_steps={grad_accum_steps} and "
            f"epochs={epochs} must all be >= 1"
        )
    if autocast not in ("none", "bf16"):
        raise ValueError(f"autocast={autocast!r} must be 'none' or 'bf16'")
    params = list(parameters)
    distributed = dist_info is not None and dist_info.enabled and dist_info.world_size > 1
    device_type = params[0].device.type if params else "cpu"
    n = batch.shape[0]
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    steps = skipped = undone = 0
    grad_norms: list[float] = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        minibatches = list(order.split(minibatch_size))
        for start in range(0, len(minibatches), grad_accum_steps):
            group = minibatches[start : start + grad_accum_steps]
            optimizer.zero_grad(set_to_none=True)
            finite = True
            for index in group:
                # training mode for forward and backward: transformers and timm checkpoint
                # activations only then (dropout layers keep their mode; modules.train_mode)
                with update_mode(loss_fn):
                    with _autocast(autocast, device_type):
                        losses = loss_fn(batch[index.to(batch.device)])
                    loss = total_loss(losses).float()
                    # value checks read the data: skipped on fake / meta tensors (planning)
                    real = has_data(loss)
                    if real and not torch.isfinite(loss):
                        finite = False
                        break
                    (loss / len(group)).backward()
                for key, value in losses.items():
                    if isinstance(value, torch.Tensor) and value.numel() == 1 and real:
                        sums[key] += float(value.detach())
                        counts[key] += 1
            if distributed:
                finite = _all_ranks_agree(finite, dist_info)
                if finite:
                    sync_gradients(params, dist_info)
            grads = [p.grad for p in params if p.grad is not None]
            if finite and grads:
                norm = _clip_grad_norm(
                    params, max_grad_norm if max_grad_norm is not None else math.inf
                )
                if has_data(norm):
                    finite = bool(torch.isfinite(norm))
                    if finite:  # a skipped step's NaN norm would log as null
                        grad_norms.append(float(norm))
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            before = _snapshot(params, optimizer) if verify_steps and has_data(params[0]) else None
            optimizer.step()
            if before is not None:
                first = batch[group[0].to(batch.device)]
                kept_finite = _loss_is_finite(loss_fn, first, autocast, device_type)
                if distributed:
                    kept_finite = _all_ranks_agree(kept_finite, dist_info)
                if not kept_finite:
                    _restore(params, optimizer, before)
                    optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                    undone += 1
                    continue
            steps += 1
    stats = {key: sums[key] / counts[key] for key in sums}
    stats.update(steps=steps, skipped=skipped, undone=undone)
    if grad_norms:
        stats["grad_norm"] = sum(grad_norms) / len(grad_norms)
    return stats


def _snapshot(params, optimizer) -> tuple[list[torch.Tensor], dict]:
    """Copies of the parameters and of the optimizer state, to undo one step."""
    return [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict())


def _restore(params, optimizer, snapshot) -> None:
    values, state = snapshot
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    optimizer.load_state_dict(state)


def _loss_is_finite(loss_fn, minibatch: TensorDictBase, autocast: str, device_type: str) -> bool:
    """Is ``loss_fn``'s total loss on ``minibatch`` finite (no gradients)?"""
    with torch.no_grad(), update_mode(loss_fn), _autocast(autocast, device_type):
        return bool(torch.isfinite(total_loss(loss_fn(minibatch)).float()))


def _autocast(mode: str, device_type: str):
    if mode == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _all_ranks_agree(flag: bool, info: DistInfo) -> bool:
    """True iff ``flag`` is true on every rank (one tiny all-reduce)."""
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def _clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_``, also when FSDP2-sharded (DTensor) and plain gradients are mixed
    (torch's helper refuses the mix); returns the total norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if not any(is_dtensor(g) for g in grads):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    squares = []
    for g in grads:
        norm = torch.linalg.vector_norm(g.detach(), dtype=torch.float32)
        if is_dtensor(norm):
            norm = norm.full_tensor()  # the norm of the whole (unsharded) gradient
        squares.append(norm.square().cpu())
    total = torch.stack(squares).sum().sqrt()
    coef = min(1.0, max_norm / (float(total) + 1e-6))  # as torch's clip_grad_norm_
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)
    return total


def rl_update(
    cfg: TrainConfig,
    rollout: TensorDictBase,
    loss_fn,
    advantage,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    info: DistInfo,
    *,
    critic_only: bool = False,
) -> dict[str, float]:
    """Advantages and the minibatch update of one rollout (this rank's ``[B, T]`` shard).

    ``critic_only`` (the critic warm-up, ``algo.critic_warmup``): the advantages are zeroed, so
    the policy term vanishes, and every optimizer group but the critic's (``value``,
    ``critic_backbone``) runs at lr 0 for this update, so the value loss's gradient through a
    shared backbone cannot move the policy either.

    Advantage normalisation statistics and GRPO groups span every rank's rollout; gradients are
    averaged over ranks once per optimizer step. With equal shards, the result equals one process
    updating on the concatenated rollout (``tests/training/test_train_distributed.py``).

    Steps flagged invalid (``VALID_STEP_KEY`` false: an episode void by a simulator error) are
    left out of GRPO groups and advantage statistics; a single process drops them from the
    update batch, several ranks zero their advantages instead (every rank must run the same
    number of synchronised optimizer steps).

    Returns:
        the update's statistics (see :func:`~vla_torchrl.training.update.run_update`).
    """
    valid = ~void_step_mask(rollout)
    # a loss that takes whole [B, T] trajectories (TPO, or a custom one saying so)
    trajectory_loss = bool(getattr(loss_fn, "trajectory_loss", False))
    if isinstance(loss_fn, VLATPOLoss) or isinstance(advantage, GroupRelativeAdvantage):
        # issue 15: a fragment the rollout's end cut off is no finished trajectory: out of
        # GRPO groups and TPO pairs (PPO keeps it: GAE bootstraps it with V(s_T))
        valid &= ~unfinished_step_mask(rollout)
    rollout.set(VALID_STEP_KEY, valid)  # read by the GRPO advantage module / TPO (their mask)
    if advantage is not None:
        with torch.no_grad():
            if isinstance(advantage, GroupRelativeAdvantage):
                # GRPO(s): episode ids are only unique within a rank (its own env seeds)
                rollout = global_group_relative_advantage(
                    rollout, advantage, info, rank_local_groups=advantage.group_key is not None
                )
            else:
                rollout = advantage(rollout)  # GAE (Eq. 2) is per trajectory: no communication
    # A rollout whose rewards are all equal (e.g. all zero: nothing grasped) carries no learning
    # signal; its GAE advantages are critic noise, which normalisation would blow up to unit
    # std and PPO would follow (issue 14: approx KL 1.13 in one such update). Zero them: the
    # policy term vanishes, the critic still learns the (constant) returns.
    degenerate = advantage is not None and not rewards_vary(rollout, valid, info)
    if (degenerate or critic_only) and ADVANTAGE_KEY in rollout.keys():  # noqa: SIM118
        rollout.set(ADVANTAGE_KEY, torch.zeros_like(rollout.get(ADVANTAGE_KEY)))
    if ADVANTAGE_KEY in rollout.keys():  # noqa: SIM118
        # normalise with statistics of the whole (global) rollout, not of each minibatch of 8;
        # (zeroed advantages stay zero: their mean is 0)
        offer_advantage_stats(
            loss_fn, global_advantage_stats(rollout.get(ADVANTAGE_KEY), valid[..., None])
        )
    batch = rollout if trajectory_loss else rollout.reshape(-1)
    # a TPO loss reading VALID_STEP_KEY masks invalid steps itself; whole rows need not go
    masked = trajectory_loss and getattr(loss_fn, "mask_key", None) == VALID_STEP_KEY
    if not valid.all() and not masked:
        keep = valid.all(-1) if trajectory_loss else valid.reshape(-1)
        if info.enabled and info.world_size > 1:
            if ADVANTAGE_KEY in batch.keys():  # noqa: SIM118 (TensorDict has no __contains__)
                adv = batch.get(ADVANTAGE_KEY)
                batch.set(ADVANTAGE_KEY, adv * keep.reshape(-1, *[1] * (adv.ndim - 1)).to(adv))
        else:
            batch = batch[keep]
    with _critic_groups_only(optimizer, critic_only):
        stats = run_update(
            batch,
            loss_fn,
            optimizer,
            params,
            minibatch_size=(
                max(1, cfg.optim.minibatch_size // rollout.shape[1])
                if trajectory_loss
                else cfg.optim.minibatch_size
            ),
            grad_accum_steps=cfg.optim.grad_accum_steps,
            epochs=cfg.algo.epochs,  # paper Sec. 4.2: 1 epoch is enough
            max_grad_norm=cfg.optim.max_grad_norm,  # FACTS: 10
            dist_info=info,
            autocast=cfg.optim.autocast,
            verify_steps=cfg.optim.verify_steps,
        )
    stats["degenerate_batch"] = float(degenerate)
    stats["critic_warmup"] = float(critic_only)
    return stats


#: optimizer groups of the critic (see ``vla_torchrl.modules.factory.build_policy``)
CRITIC_GROUPS = ("value", "critic_backbone")


@contextlib.contextmanager
def _critic_groups_only(optimizer: torch.optim.Optimizer, enabled: bool):
    """Within the block, every group not named in :data:`CRITIC_GROUPS` has lr 0."""
    if not enabled:
        yield
        return
    saved = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        if g.get("name") not in CRITIC_GROUPS:
            g["lr"] = 0.0
    try:
        yield
    finally:
        for g, lr in zip(optimizer.param_groups, saved, strict=True):
            g["lr"] = lr


def offer_advantage_stats(loss_fn, stats_fn) -> int:
    """Hand ``stats_fn`` to ``loss_fn`` and to each of its sub-modules that wants it.

    "Wants it" = defines ``set_advantage_stats`` (:class:`~vla_torchrl.objectives.UsesAdvantageStats`),
    as :class:`~vla_torchrl.objectives.VLAPPOLoss` and :class:`~vla_torchrl.objectives.VLAGRPOLoss`
    do; a custom loss composing them gets the rollout's statistics without code of its own.
    Returns how many modules took them.

    Examples:
        >>> from vla_torchrl.objectives import VLAPPOLoss
        >>> class Composed(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.ppo = VLAPPOLoss(lambda td: td)
        >>> loss, fn = Composed(), (lambda a, m: (a.mean(), a.std()))
        >>> offer_advantage_stats(loss, fn), loss.ppo.advantage_stats_fn is fn
        (1, True)
    """
    candidates = list(loss_fn.modules()) if isinstance(loss_fn, torch.nn.Module) else [loss_fn]
    taken = 0
    for module in candidates:
        if isinstance(module, UsesAdvantageStats):
            module.set_advantage_stats(stats_fn)
            taken += 1
    return taken


def rewards_vary(rollout: TensorDictBase, valid: torch.Tensor, info: DistInfo) -> bool:
    """Whether the valid steps' rewards differ anywhere in the (global, all ranks) rollout.

    Examples:
        >>> from tensordict import TensorDict
        >>> from vla_torchrl.utils.distributed import DistInfo
        >>> info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
        >>> td = TensorDict({"next": {"reward": torch.zeros(2, 3, 1)}}, [2, 3])
        >>> rewards_vary(td, torch.ones(2, 3, dtype=torch.bool), info)
        False
        >>> td["next", "reward"][1, 2] = 0.1
        >>> rewards_vary(td, torch.ones(2, 3, dtype=torch.bool), info)
        True
    """
    reward = rollout.get(next_key(REWARD_KEY)).reshape(*valid.shape, -1)[valid]
    big = torch.finfo(torch.float64).max
    lo = reward.double().min() if reward.numel() else torch.tensor(big, dtype=torch.float64)
    hi = reward.double().max() if reward.numel() else torch.tensor(-big, dtype=torch.float64)
    if info.enabled and info.world_size > 1 and dist.is_initialized():
        buf = torch.stack([-lo, hi]).to(info.device)
        dist.all_reduce(buf, op=dist.ReduceOp.MAX)
        lo, hi = -buf[0].cpu(), buf[1].cpu()
    return bool(hi > lo)
