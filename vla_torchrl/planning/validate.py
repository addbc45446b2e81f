"""Check the fake-tensor estimate against the real CPU allocator on a model that fits in RAM.

The same steps (:func:`~vla_torchrl.planning.memory.run_steps`) run on real CPU tensors while
glibc's allocator is read after every operator (``mallinfo2``: bytes in use, heap + mmapped
chunks). Live tensor bytes at any moment = the policy's weights + what the allocator gained
since just before the steps; the maximum over each step is the measured peak. This is
independent of the live-storage counting the estimate uses (it also sees kernels' internal
scratch buffers, which the estimate cannot). Linux / glibc only.

Examples (a few seconds)::

    from vla_torchrl.modules import LoRASettings
    report = compare(policy_kwargs={"lora": LoRASettings(rank=4), "critic": "shared",
                                    "text_tokenizer": "builtin"}, minibatch_size=2)
    report["update"]["error"], report["rollout"]["error"]   # (estimate - measured) / measured
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import torch

from vla_torchrl.modules import build_policy
from vla_torchrl.planning.counter import LiveStorageCounter
from vla_torchrl.planning.memory import estimate_memory, policy_tensors, run_steps

__all__ = ["allocator_bytes_in_use", "compare", "measure_real_peaks"]


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = None


def allocator_bytes_in_use() -> int:
    """Bytes glibc's malloc has handed out and not taken back (heap chunks + mmapped ones)."""
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(lib, "mallinfo2"):
            raise RuntimeError("glibc >= 2.33 (mallinfo2) is needed to read the CPU allocator")
        lib.mallinfo2.restype = _MallInfo2
        _libc = lib
    info = _libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


class _AllocatorSampler(LiveStorageCounter):
    """The steps' counter, also reading the allocator after every op; a ``reset_peak`` (the
    steps call it before each step) starts a new phase."""

    def __init__(self, base_bytes: int) -> None:
        super().__init__(round_to=1)
        self.base_bytes = base_bytes
        self.origin = allocator_bytes_in_use()
        self.phase_peaks: list[int] = []

    def _live(self) -> int:
        return self.base_bytes + allocator_bytes_in_use() - self.origin

    def reset_peak(self) -> None:
        super().reset_peak()
        self.phase_peaks.append(self._live())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if self.phase_peaks:
            self.phase_peaks[-1] = max(self.phase_peaks[-1], self._live())
        return out


def measure_real_peaks(
    *, model_source: str = "tiny", policy_kwargs: dict[str, Any] | None = None, **steps: Any
) -> dict[str, int]:
    """Measured peaks (bytes) of the update and rollout steps on real CPU tensors.

    Args:
        model_source, policy_kwargs: as :func:`~vla_torchrl.planning.memory.estimate_memory`.
        steps: :func:`~vla_torchrl.planning.memory.run_steps` options (minibatch_size, ...).
    """
    torch.manual_seed(0)
    bundle = build_policy(model_source, **{"text_tokenizer": "auto", **(policy_kwargs or {})})
    frozen, trainable = policy_tensors(bundle)
    seen, base = set(), 0
    for t in frozen + trainable:
        key = t.untyped_storage()._cdata
        if key not in seen:
            seen.add(key)
            base += t.untyped_storage().nbytes()
    sampler = _AllocatorSampler(base)
    with sampler:
        run_steps(bundle, sampler, **steps)
    update, rollout = sampler.phase_peaks[:2]
    return {"update": update, "rollout": rollout}


def compare(
    *, model_source: str = "tiny", policy_kwargs: dict[str, Any] | None = None, **steps: Any
) -> dict[str, dict[str, float]]:
    """Fake-tensor estimate (exact byte sizes, ``round_to=1``) vs the measured real peaks.

    Returns:
        ``{"update": {"estimate", "measured", "error"}, "rollout": {...}}`` (bytes; ``error`` is
        ``(estimate - measured) / measured``).
    """
    est = estimate_memory(
        model_source=model_source, policy_kwargs=policy_kwargs, round_to=1, **steps
    )
    real = measure_real_peaks(model_source=model_source, policy_kwargs=policy_kwargs, **steps)
    out = {}
    for name, estimate in (("update", est.update_peak), ("rollout", est.rollout_peak)):
        measured = real[name]
        out[name] = {
            "estimate": estimate,
            "measured": measured,
            "error": (estimate - measured) / measured,
        }
    return out
