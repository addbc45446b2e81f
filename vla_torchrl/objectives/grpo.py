"""GRPO for token-action VLAs (paper Sec. 4.1, Appendix A.1, Eq. 3-6).

TorchRL's ``torchrl.objectives.llm.GRPOLoss`` works on LLM token sequences and history
objects; here the "sequence" is one 7-token action and the advantages come from
:class:`.advantages.GroupRelativeAdvantage`, so this is :class:`.ppo.VLAPPOLoss` without a
critic plus an optional KL to the reference policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ADVANTAGE_KEY,
    EVAL_ENTROPY_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    REF_ACTION_LOG_PROB_KEY,
)
from vla_torchrl.objectives import functional as F
from vla_torchrl.objectives.ppo import VLAPPOLoss

__all__ = ["VLAGRPOLoss"]


class VLAGRPOLoss(VLAPPOLoss):
    """Clipped surrogate (Eq. 1) with group-relative advantages (Eq. 3-6), no critic.

    Input: as :class:`VLAPPOLoss` without value entries: evaluator inputs,
    ``ACTION_LOG_PROB_KEY`` ``[N]``, ``ADVANTAGE_KEY`` ``[N, 1]`` (from
    :class:`GroupRelativeAdvantage`), and for ``kl_coeff > 0`` optionally
    ``REF_ACTION_LOG_PROB_KEY`` ``[N]`` (else computed by the evaluator inside
    ``evaluator.reference()`` under ``no_grad``).

    Output: ``loss_objective``, ``loss_entropy`` (if ``entropy_coeff``), ``loss_kl`` (if
    ``kl_coeff``), detached ``clip_fraction``, ``kl_approx``, ``ratio_mean``, ``entropy``,
    ``kl_ref``.

    The KL to the reference is GRPO's unbiased estimator on the action log-prob,
    ``exp(ref - logp) - (ref - logp) - 1`` (always >= 0), averaged over the minibatch
    (:func:`.functional.reference_kl`; the same term as ``VLAPPOLoss(kl_coeff=...)``).

    Args:
        evaluator: teacher-forced evaluation module.
        clip_epsilon: ratio clip (0.2).
        entropy_coeff: entropy bonus weight.
        kl_coeff: weight of the KL to the reference policy (0 disables it).
        normalize_advantage: re-standardise over the minibatch (default ``False``: the
            group-relative advantages are already normalised, Eq. 3/5).
        advantage_stats_fn: see :class:`VLAPPOLoss`.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by :class:`VLAGRPOLoss`; rename with :meth:`set_keys`."""

        advantage: NestedKey = ADVANTAGE_KEY
        action_log_prob: NestedKey = ACTION_LOG_PROB_KEY
        ref_action_log_prob: NestedKey = REF_ACTION_LOG_PROB_KEY
        eval_token_log_probs: NestedKey = EVAL_TOKEN_LOG_PROBS_KEY
        eval_entropy: NestedKey = EVAL_ENTROPY_KEY

    def __init__(
        self,
        evaluator: TensorDictModuleBase,
        *,
        clip_epsilon: float = 0.2,
        entropy_coeff: float = 0.0,
        kl_coeff: float = 0.0,
        normalize_advantage: bool = False,
        advantage_stats_fn: F.AdvantageStatsFn | None = None,
    ) -> None:
        super().__init__(
            evaluator,
            clip_epsilon=clip_epsilon,
            critic_coeff=None,
            entropy_coeff=entropy_coeff,
            normalize_advantage=normalize_advantage,
            advantage_stats_fn=advantage_stats_fn,
            kl_coeff=kl_coeff,
        )
