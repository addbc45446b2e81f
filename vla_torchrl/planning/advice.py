"""From estimates to answers: does it fit a card, per GPU under FSDP2, and what would fit.

- :func:`fits`: a peak fits ``gpu_gib`` when it stays below ``(1 - margin)`` of it; the margin
  (default 10%) covers what ``torch.cuda.max_memory_allocated`` does not count: the CUDA
  context, cuBLAS / NCCL workspaces and allocator fragmentation.
- :func:`fsdp2_per_gpu`: FSDP2 over ``N`` ranks, **analytic** (not run): the LLM decoder layers'
  parameters, gradients and AdamW state are divided by ``N``; two layers' parameters are held
  whole at a time (the one computing and the one prefetched); activations are per rank and do
  not shrink. (The trainer's ``dist.strategy=fsdp2`` shards decoder layers this way, and today
  requires ``model.finetune=full``.)
- :func:`format_table`: the breakdown as a text table.

All sizes in GiB (2**30 bytes); GPU capacities (24, 40, 48, 80, 141) are in GiB as
``nvidia-smi`` reports them. The issue's / FACTS.md's figures are 1e9-byte GB (42.6 GB = 39.7 GiB).

Examples:
    >>> fits(20 * 2**30, 24.0), fits(22 * 2**30, 24.0)
    (True, False)
"""

from __future__ import annotations

from typing import Any

from vla_torchrl.planning.memory import CATEGORIES, MemoryEstimate

__all__ = ["GIB", "fits", "format_table", "fsdp2_per_gpu", "gib"]

GIB = 2**30


def gib(nbytes: float) -> float:
    """Bytes -> GiB, rounded to 0.01."""
    return round(nbytes / GIB, 2)


def fits(peak_bytes: float, gpu_gib: float, *, margin: float = 0.10) -> bool:
    """Whether ``peak_bytes`` stays within ``(1 - margin) * gpu_gib`` GiB."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin={margin} must be in [0, 1)")
    return peak_bytes <= (1.0 - margin) * gpu_gib * GIB


def fsdp2_per_gpu(estimate: MemoryEstimate, world_size: int) -> dict[str, int]:
    """Per-GPU peaks ``{"update": bytes, "rollout": bytes}`` under FSDP2 over ``world_size``.

    Analytic from the single-GPU estimate: the decoder layers' frozen and trainable weights, the
    trainable ones' gradients (1x) and AdamW state (2x) are sharded by ``world_size``, and so
    is ``verify_steps``' snapshot of them (3x) when the estimate counted one; two layers'
    parameters are gathered whole at a time.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    if world_size == 1:
        return {"update": estimate.update_peak, "rollout": estimate.rollout_peak}
    frozen = estimate.decoder.get("frozen_weights", 0)
    trainable = estimate.decoder.get("trainable_weights", 0)
    snapshot = 3 if estimate.update.get("step_snapshot", 0) > 0 else 0  # weights + AdamW state
    sharded = frozen + (4 + snapshot) * trainable  # weights + gradients + exp_avg + exp_avg_sq
    saved = int(sharded * (1.0 - 1.0 / world_size)) - 2 * estimate.largest_layer_bytes
    rollout_sharded = int((frozen + 4 * trainable) * (1.0 - 1.0 / world_size))
    rollout_saved = rollout_sharded - 2 * estimate.largest_layer_bytes
    return {
        "update": estimate.update_peak - max(saved, 0),
        "rollout": estimate.rollout_peak - max(rollout_saved, 0),
    }


def format_table(estimate: MemoryEstimate, *, title: str = "") -> str:
    """The breakdown (GiB) by category for the update and the rollout step."""
    lines = [title] if title else []
    lines.append(f"{'category':<20}{'update step':>14}{'rollout step':>14}")
    for name in CATEGORIES:
        lines.append(
            f"{name.replace('_', ' '):<20}{gib(estimate.update[name]):>14.2f}"
            f"{gib(estimate.rollout[name]):>14.2f}"
        )
    lines.append(
        f"{'peak':<20}{gib(estimate.update_peak):>14.2f}{gib(estimate.rollout_peak):>14.2f}"
    )
    return "\n".join(lines)


def summary(estimate: MemoryEstimate) -> dict[str, Any]:
    """JSON-ready figures in GiB."""
    out = estimate.to_dict()
    for key in ("update", "rollout"):
        out[key] = {k: gib(v) for k, v in out[key].items()}
    for key in ("update_peak", "rollout_peak", "peak", "largest_layer_bytes"):
        out[key if key != "largest_layer_bytes" else "largest_layer"] = gib(out.pop(key))
    out["decoder"] = {k: gib(v) for k, v in out["decoder"].items()}
    out["unit"] = "GiB"
    return out
