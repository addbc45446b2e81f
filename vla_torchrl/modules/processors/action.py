"""Action tokens <-> continuous actions (OpenVLA's 256-bin vocabulary tail), with q01/q99 stats.

Formulas (FACTS.md): ``bins = linspace(-1, 1, 256)``, ``centers = (bins[:-1] + bins[1:]) / 2``;
encode ``id = 32000 - digitize(clip(a, -1, 1), bins)`` (ids 31744..31999, order reversed);
decode ``centers[clip(32000 - id - 1, 0, 254)]``. Un-normalise where ``mask``:
``a = 0.5 * (a_n + 1) * (q99 - q01) + q01``; normalise: ``2 * (a - q01) / (q99 - q01 + 1e-8) - 1``,
clipped to [-1, 1].

Why not :class:`torchrl.data.vla.VocabTailActionTokenizer` (``full_vocab_size=32000``): its
bin edges are a float32 ``linspace``, while OpenVLA digitizes against NumPy's float64 edges, so
values on (or within float32 rounding of) an edge can land one bin off (32 of the 256 edges
do; ``torch.linspace`` in float64 still differs from NumPy's on some edges); with statistics it adds ``1e-8`` to ``(q99 - q01)`` when un-normalising and decodes via
NumPy on the host (a device round-trip per call). This class computes the formulas above with
float64 edges and centers on the input's device; decoding agrees with torchrl's to float32
rounding and encoding agrees everywhere except at those edges (both tested).

Examples:
    >>> import torch
    >>> tok = ActionTokenizer()
    >>> tok.encode(torch.tensor([-1.0, 0.0, 1.0]))
    tensor([31999, 31872, 31744])
    >>> tok.decode(torch.tensor([31999, 31744]))
    tensor([-0.9961,  0.9961])
    >>> stats = {"bridge": {"action": {"q01": [0.0] * 6 + [0.0], "q99": [2.0] * 6 + [1.0],
    ...                                "mask": [True] * 6 + [False]}}}
    >>> tok = ActionTokenizer.from_norm_stats(stats)
    >>> tok.unnormalize(torch.zeros(7)).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ActionTokenizer", "action_statistics"]


class ActionTokenizer:
    """Map OpenVLA action token ids to env actions and back.

    Args:
        n_bins: bin edges (256). ``base_vocab_size``: 32000 (ids are ``32000 - digitize``).
        q01, q99, mask: per-dimension statistics (``None``: actions stay in [-1, 1]).
    """

    def __init__(
        self,
        *,
        n_bins: int = 256,
        base_vocab_size: int = 32000,
        q01: Sequence[float] | torch.Tensor | None = None,
        q99: Sequence[float] | torch.Tensor | None = None,
        mask: Sequence[bool] | torch.Tensor | None = None,
    ) -> None:
        if (q01 is None) != (q99 is None):
            raise ValueError("ActionTokenizer: q01 and q99 must be given together (or neither).")
        self.n_bins = n_bins
        self.base_vocab_size = base_vocab_size
        self.first_id = base_vocab_size - n_bins
        # NumPy's linspace, not torch's: the two float64 grids differ in the last bit on some
        # edges (torch fills from both ends), which moves values on those edges by one bin
        self.bins = torch.from_numpy(np.linspace(-1.0, 1.0, n_bins))
        self.centers = (self.bins[:-1] + self.bins[1:]) / 2.0
        self.q01 = None if q01 is None else torch.as_tensor(q01, dtype=torch.float32)
        self.q99 = None if q99 is None else torch.as_tensor(q99, dtype=torch.float32)
        if self.q01 is not None:
            if self.q01.shape != self.q99.shape:
                raise ValueError(
                    f"ActionTokenizer: q01 {tuple(self.q01.shape)} and q99 "
                    f"{tuple(self.q99.shape)} differ in shape."
                )
            self.mask = (
                torch.ones_like(self.q01, dtype=torch.bool)
                if mask is None
                else torch.as_tensor(mask, dtype=torch.bool)
            )
        else:
            self.mask = None

    @classmethod
    def from_norm_stats(
        cls, norm_stats: Mapping[str, Any], unnorm_key: str | None = None, **kwargs: Any
    ) -> ActionTokenizer:
        """Use ``norm_stats[unnorm_key]["action"]`` (the only entry when ``unnorm_key`` is None)."""
        if not norm_stats:
            if unnorm_key is not None:
                raise KeyError(
                    f"unnorm_key={unnorm_key!r} is not in norm_stats: the model has no action "
                    "statistics; drop unnorm_key (actions stay in [-1, 1]) or load a checkpoint "
                    "or policy whose norm_stats hold it"
                )
            return cls(**kwargs)
        if unnorm_key is None:
            if len(norm_stats) != 1:
                raise ValueError(
                    f"norm_stats has {len(norm_stats)} datasets ({sorted(norm_stats)}); pass "
                    "unnorm_key to choose the one whose action statistics to use."
                )
            unnorm_key = next(iter(norm_stats))
        if unnorm_key not in norm_stats:
            raise KeyError(
                f"unnorm_key={unnorm_key!r} is not in norm_stats (have {sorted(norm_stats)})."
            )
        action = norm_stats[unnorm_key]["action"]
        return cls(q01=action["q01"], q99=action["q99"], mask=action.get("mask"), **kwargs)

    # -- tokens <-> normalised actions (float64 edges, as NumPy's digitize) ----------------
    def encode(self, normalized: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` actions in [-1, 1] -> ids ``32000 - digitize(clip(a), bins)`` (int64)."""
        values = normalized.detach().to(torch.float64).clamp(-1.0, 1.0)
        # np.digitize(x, bins) = index of the first edge > x = bucketize(..., right=True)
        digitized = torch.bucketize(values, self.bins.to(values.device), right=True)
        return self.base_vocab_size - digitized

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """ids -> bin centers ``centers[clip(32000 - id - 1, 0, 254)]`` (float32)."""
        index = (self.base_vocab_size - tokens.long() - 1).clamp(0, self.n_bins - 2)
        return self.centers.to(tokens.device)[index].to(torch.float32)

    # -- statistics -------------------------------------------------------------------------
    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.q01.to(like.device, like.dtype),
            self.q99.to(like.device, like.dtype),
            self.mask.to(like.device),
        )

    def unnormalize(self, normalized: torch.Tensor) -> torch.Tensor:
        """``0.5 * (a_n + 1) * (q99 - q01) + q01`` on masked dims (identity without stats)."""
        if self.q01 is None:
            return normalized
        q01, q99, mask = self._stats(normalized)
        return torch.where(mask, 0.5 * (normalized + 1.0) * (q99 - q01) + q01, normalized)

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        """``clip(2 * (a - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)`` on masked dims."""
        if self.q01 is None:
            return actions.clamp(-1.0, 1.0)
        q01, q99, mask = self._stats(actions)
        scaled = (2.0 * (actions - q01) / (q99 - q01 + 1e-8) - 1.0).clamp(-1.0, 1.0)
        return torch.where(mask, scaled, actions)

    def tokens_to_actions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Action ids ``[..., D]`` -> env actions (decode, then un-normalise)."""
        return self.unnormalize(self.decode(tokens))

    def actions_to_tokens(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions ``[..., D]`` -> action ids (normalise, then encode); for SFT targets."""
        return self.encode(self.normalize(actions))


def action_statistics(
    actions: torch.Tensor,
    *,
    mask: Sequence[bool] | None = None,
    min_range: float = 1e-6,
) -> dict[str, Any]:
    """Per-dimension action statistics of a dataset, in OpenVLA's ``norm_stats`` format.

    OpenVLA's fine-tuning derives these from its training data (``dataset_statistics.json``:
    ``mean``, ``std``, ``max``, ``min``, ``q01``, ``q99``, ``mask``) and un-normalises its
    predictions with ``q01`` / ``q99`` where ``mask`` (the gripper stays as it is). Without them
    the small deltas of a 5 Hz expert (a few cm per step) use a handful of the 256 bins.

    Args:
        actions: ``[N, D]`` env-unit actions (e.g. every step of a demonstration set).
        mask: which dims to normalise; default all but the last (the gripper, as OpenVLA).
        min_range: a dim whose ``q99 - q01`` is below this is left un-normalised (mask false):
            a constant dim would otherwise be divided by ~0.

    Returns:
        ``{"action": {...}, "num_transitions": N}``: lists of floats / bools, JSON-ready; store
        it as ``norm_stats[name]``.

    Examples:
        >>> a = torch.stack([torch.linspace(-0.02, 0.02, 101)] * 6
        ...                 + [torch.ones(101)], dim=-1)
        >>> s = action_statistics(a)
        >>> [round(v, 4) for v in s["action"]["q01"][:2]], s["action"]["mask"]
        ([-0.0196, -0.0196], [True, True, True, True, True, True, False])
    """
    if actions.ndim != 2 or actions.shape[0] < 1:
        raise ValueError(
            f"action_statistics: actions of shape {tuple(actions.shape)}; expected [N >= 1, D]"
        )
    x = actions.detach().to(torch.float64).cpu()
    dims = x.shape[1]
    keep = [True] * (dims - 1) + [False] if mask is None else [bool(m) for m in mask]
    if len(keep) != dims:
        raise ValueError(f"action_statistics: mask has {len(keep)} entries for {dims} dims")
    q01 = torch.quantile(x, 0.01, dim=0)
    q99 = torch.quantile(x, 0.99, dim=0)
    keep = [k and float(q99[j] - q01[j]) >= min_range for j, k in enumerate(keep)]

    def floats(t: torch.Tensor) -> list[float]:
        return [float(v) for v in t]

    return {
        "action": {
            "mean": floats(x.mean(0)),
            "std": floats(x.std(0) if x.shape[0] > 1 else torch.zeros(dims)),
            "max": floats(x.max(0).values),
            "min": floats(x.min(0).values),
            "q01": floats(q01),
            "q99": floats(q99),
            "mask": keep,
        },
        "num_transitions": int(x.shape[0]),
    }
