"""One policy update on a batch: minibatches, gradient accumulation, clipping, non-finite guard.

The paper's update (FACTS.md): 1 epoch over the rollout, minibatches of 8 transitions, 20
minibatches accumulated per optimizer step, gradients clipped to norm 10. A step whose loss or
gradient is not finite is skipped (gradients dropped, optimizer untouched) and counted, so one
bad batch costs one step rather than the run.

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
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.distributed as dist
from tensordict import TensorDictBase

from vla_torchrl.modules.train_mode import update_mode
from vla_torchrl.utils.distributed import DistInfo, is_dtensor, sync_gradients
from vla_torchrl.utils.fake import has_data

__all__ = ["run_update", "total_loss"]


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

    Returns:
        mean diagnostics over minibatches (detached scalars), plus ``steps`` (optimizer steps
        taken), ``skipped`` (steps skipped for non-finite values) and ``grad_norm``.
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
    steps = skipped = 0
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
                    grad_norms.append(float(norm))
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            optimizer.step()
            steps += 1
    stats = {key: sums[key] / counts[key] for key in sums}
    stats.update(steps=steps, skipped=skipped)
    if grad_norms:
        stats["grad_norm"] = sum(grad_norms) / len(grad_norms)
    return stats


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
