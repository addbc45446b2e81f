"""Trajectory-wise preference optimisation, TPO/DPO (paper Sec. 4.1, Appendix A.1, Eq. 7).

TorchRL 0.14 has no DPO loss (FACTS.md), so this one is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from vla_torchrl.keys import (
    DONE_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    REF_ACTION_LOG_PROB_KEY,
    REWARD_KEY,
    next_key,
)
from vla_torchrl.objectives import functional as F
from vla_torchrl.objectives._evaluator_loss import EvaluatorLossBase

__all__ = ["VLATPOLoss"]


class VLATPOLoss(EvaluatorLossBase):
    """Eq. (7) on trajectories cut from a ``[B, T]`` rollout, preferences from sparse returns.

    Steps:

    1. trajectories = segments of each row cut at ``("next", done)`` (a row's last segment
       counts even if the rollout stopped before its end; pass complete episodes, as the
       paper's episode-aligned rollouts are);
    2. return of a trajectory = sum of its ``("next", reward)``;
    3. pairs ``(w, l)``: every pair of trajectories of the same group with
       ``return_w > return_l`` (:func:`.functional.preference_pairs`); groups from
       ``group_key`` read at a trajectory's first step (e.g. ``EPISODE_ID_KEY`` to compare only
       trajectories from the same initial state) or one group when ``None``;
    4. ``log pi(z)`` = sum over its steps of the 7 token log-probs from the evaluator;
       ``log pi_ref(z)`` likewise from ``REF_ACTION_LOG_PROB_KEY`` ``[B, T]`` if present, else
       from the evaluator inside ``evaluator.reference()`` under ``no_grad``;
    5. loss = Eq. (7); with no pair (all returns tie) ``loss_tpo`` is 0 and ``has_pairs`` 0.

    Input: ``[B, T]`` with the evaluator's inputs, ``("next", reward)``, ``("next", done)``,
    optional ``mask_key`` (bool ``[B, T]``, real steps; a segment without a real step is not
    a trajectory) and ``group_key``.

    Output: ``loss_tpo`` and detached ``num_pairs``, ``has_pairs``, ``reward_accuracy``,
    ``reward_margin``, ``num_trajectories``.

    Args:
        evaluator: teacher-forced evaluation module (with ``reference()`` unless reference
            log-probs are stored).
        beta: Eq. (7)'s ``beta``.
        group_key: per-step group ids, or ``None``.
        mask_key: per-step validity mask, or ``None``.

    Memory: the whole ``[B, T]`` input goes through the evaluator at once, with gradients; with
    a large model pass a few groups of trajectories per call (the loss is a mean over pairs,
    so accumulate gradients over calls).
    """

    #: the recipes' update hands this loss whole ``[B, T]`` trajectories, not flat transitions
    trajectory_loss = True

    @dataclass
    class _AcceptedKeys:
        """Keys read by :class:`VLATPOLoss`; rename with :meth:`set_keys`."""

        reward: NestedKey = REWARD_KEY
        done: NestedKey = DONE_KEY
        ref_action_log_prob: NestedKey = REF_ACTION_LOG_PROB_KEY
        eval_token_log_probs: NestedKey = EVAL_TOKEN_LOG_PROBS_KEY

    def __init__(
        self,
        evaluator: TensorDictModuleBase,
        *,
        beta: float = 0.1,
        group_key: NestedKey | None = None,
        mask_key: NestedKey | None = None,
    ) -> None:
        super().__init__(evaluator)
        if beta <= 0:
            raise ValueError(f"beta={beta} must be > 0.")
        self.beta = beta
        self.group_key = group_key
        self.mask_key = mask_key

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys = [next_key(k.reward), next_key(k.done), *getattr(self.evaluator, "in_keys", [])]
        return keys + [x for x in (self.group_key, self.mask_key) if x is not None]

    @property
    def out_keys(self) -> list[NestedKey]:
        return ["loss_tpo", "num_pairs", "has_pairs", "reward_accuracy", "reward_margin",
                "num_trajectories"]  # fmt: skip

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        if tensordict.ndim != 2:
            raise ValueError(
                f"VLATPOLoss needs a [B, T] rollout of trajectories, got batch "
                f"{tuple(tensordict.batch_size)}; pass collector output, not a shuffled minibatch."
            )
        b, t = tensordict.batch_size
        n = b * t
        reward = self._vector(self._require(tensordict, next_key(k.reward)), n, next_key(k.reward))
        done = self._vector(self._require(tensordict, next_key(k.done)), n, next_key(k.done))
        seg = F.segment_ids(done.reshape(b, t).bool()).reshape(-1)
        num = int(seg.max()) + 1
        mask = None
        if self.mask_key is not None:
            mask = self._vector(self._require(tensordict, self.mask_key), n, self.mask_key).bool()
        # a trajectory needs at least one real step: a stretch made only of masked (padded)
        # steps is no trajectory (it would tie at return 0 and add spurious pairs)
        real = mask if mask is not None else torch.ones(n, dtype=torch.bool, device=seg.device)
        keep = F.segment_sum(real.long(), seg, num) > 0
        group = None
        if self.group_key is not None:
            step_group = self._vector(self._require(tensordict, self.group_key), n, self.group_key)
            # a trajectory's group = the id at its first real step
            steps = torch.arange(n, device=seg.device)
            first = torch.full((num,), n, dtype=torch.long, device=seg.device)
            first = first.scatter_reduce(0, seg, torch.where(real, steps, n), "amin")
            group = step_group[first.clamp(max=n - 1)][keep]

        flat = tensordict.reshape(-1)
        log_prob = F.action_log_prob(self._require(self._evaluate(flat), k.eval_token_log_probs))
        ref = flat.get(k.ref_action_log_prob, None)
        if ref is None:
            ref = F.action_log_prob(self._reference_token_log_probs(flat, k.eval_token_log_probs))
        ref = self._vector(ref, n, k.ref_action_log_prob)
        if mask is not None:
            reward = torch.where(mask, reward, torch.zeros_like(reward))
            log_prob = torch.where(mask, log_prob, torch.zeros_like(log_prob))
            ref = torch.where(mask, ref, torch.zeros_like(ref))
        returns = F.segment_sum(reward, seg, num)[keep]
        traj_log_prob = F.segment_sum(log_prob, seg, num)[keep]  # sum over steps and tokens
        traj_ref = F.segment_sum(ref, seg, num)[keep]
        w_index, l_index = F.preference_pairs(returns, group)
        loss, info = F.trajectory_preference_loss(
            traj_log_prob, traj_ref, w_index, l_index, beta=self.beta
        )  # Eq. (7)
        out = TensorDict({"loss_tpo": loss, **info})
        num_kept = float(keep.sum())
        out.set("num_trajectories", torch.tensor(num_kept, device=log_prob.device))
        return out
