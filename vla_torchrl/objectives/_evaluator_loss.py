"""Shared plumbing of the losses: calling the evaluator (brief's contract) safely."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor
from torchrl.objectives import LossModule

__all__ = ["EvaluatorLossBase", "SupportsReference", "UsesAdvantageStats"]


@runtime_checkable
class SupportsReference(Protocol):
    """An evaluator that can also compute the frozen reference policy."""

    def reference(self):  # pragma: no cover - protocol
        """Context manager inside which the evaluator computes the reference policy."""


@runtime_checkable
class UsesAdvantageStats(Protocol):
    """A loss that wants the advantage statistics of the whole rollout (not of each minibatch).

    The recipes' update (:func:`vla_torchrl.training.update.rl_update`) calls
    ``set_advantage_stats(stats_fn)`` once per rollout, after the advantages are computed, on the
    loss **and on every sub-module** that defines it (so a composed loss holding a
    :class:`~vla_torchrl.objectives.VLAPPOLoss` gets them without doing anything). ``stats_fn``
    is an :data:`~vla_torchrl.objectives.functional.AdvantageStatsFn` returning the rollout's
    (across ranks: the global) mean and std, whatever minibatch it is given.
    """

    def set_advantage_stats(self, stats_fn) -> None:  # pragma: no cover - protocol
        """Use ``stats_fn`` for advantage normalisation until the next call."""


class EvaluatorLossBase(LossModule):
    """A ``LossModule`` driven by one teacher-forced evaluator pass per call.

    The evaluator (a ``TensorDictModuleBase``) reads the observation keys and
    ``ACTION_TOKENS_KEY`` and writes ``EVAL_TOKEN_LOG_PROBS_KEY`` ``[N, 7]``,
    ``EVAL_ENTROPY_KEY`` ``[N, 7]`` and, with a critic, ``VALUE_KEY`` ``[N, 1]``. It is called
    on a **shallow copy** of the input so the rollout's stored entries (e.g. the old
    ``VALUE_KEY`` that value clipping needs) are never overwritten.
    """

    def __init__(self, evaluator: TensorDictModuleBase) -> None:
        super().__init__()
        if not callable(evaluator):
            raise TypeError(
                f"evaluator must be a TensorDictModuleBase, got {type(evaluator).__name__}."
            )
        self.evaluator = evaluator

    def set_keys(self, **kwargs) -> EvaluatorLossBase:
        """Rename input keys (fields of ``_AcceptedKeys``); returns ``self`` for chaining."""
        super().set_keys(**kwargs)
        return self

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        # advantages are computed outside the loss (see .advantages); nothing to forward
        pass

    @staticmethod
    def _flat(tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.ndim == 0:
            raise ValueError("the loss needs a batched tensordict ([N] or [B, T]), got batch [].")
        return tensordict if tensordict.ndim == 1 else tensordict.reshape(-1)

    def _evaluate(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Current-policy pass (with gradients) on a shallow copy."""
        return self.evaluator(tensordict.copy())

    def _reference_token_log_probs(self, tensordict: TensorDictBase, key) -> Tensor:
        """Reference-policy token log-probs, under ``evaluator.reference()`` and ``no_grad``."""
        if not isinstance(self.evaluator, SupportsReference):
            raise TypeError(
                f"{type(self.evaluator).__name__} has no reference() context manager; store "
                "reference log-probs in the input (REF_ACTION_LOG_PROB_KEY) or use an "
                "evaluator that implements reference()."
            )
        with torch.no_grad(), self.evaluator.reference():
            return self._require(self.evaluator(tensordict.copy()), key)

    def _require(self, tensordict: TensorDictBase, key) -> Tensor:
        """``tensordict[key]``, or a KeyError that says how to provide or rename it."""
        value = tensordict.get(key, None)
        if value is None:
            raise KeyError(
                f"{type(self).__name__} needs {key!r} in its input, which has "
                f"{sorted(map(str, tensordict.keys(True, True)))}. Compute it first (advantage "
                "module / rollout) or point the loss at your key with set_keys(...)."
            )
        return value

    @staticmethod
    def _vector(x: Tensor, n: int, name) -> Tensor:
        """``[N]`` or ``[N, 1]`` -> ``[N]``."""
        if x.numel() != n:
            raise ValueError(f"{name!r} has shape {tuple(x.shape)}; expected [N] or [N, 1], N={n}.")
        return x.reshape(n)
