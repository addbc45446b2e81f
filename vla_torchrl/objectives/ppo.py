"""PPO for token-action VLAs (paper Appendix A.1, Eq. 1; recipe in FACTS.md).

Why not TorchRL's ``ClipPPOLoss`` directly: it builds the action distribution from an actor
and calls a separate critic, whereas a VLA scores the 7 action tokens, their entropies and the
value in ONE teacher-forced forward (the evaluator contract), and the value loss here is a
Huber of width 10, which TorchRL's ``smooth_l1`` (width 1) does not offer. The maths is the same;
``tests/objectives/test_ppo.py`` checks equal loss values against ``ClipPPOLoss`` on a
categorical actor where both apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ADVANTAGE_KEY,
    EVAL_ENTROPY_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    REF_ACTION_LOG_PROB_KEY,
    VALUE_KEY,
    VALUE_TARGET_KEY,
)
from vla_torchrl.objectives import functional as F
from vla_torchrl.objectives._evaluator_loss import EvaluatorLossBase

__all__ = ["VLAPPOLoss"]


class VLAPPOLoss(EvaluatorLossBase):
    """Clipped PPO (Eq. 1) with a clipped Huber value loss and an entropy bonus.

    Input: a minibatch ``[N]`` (or ``[B, T]``, flattened) holding the evaluator's inputs
    (observation keys, ``ACTION_TOKENS_KEY`` ``[N, 7]``) and, from the rollout and the advantage
    module, ``ACTION_LOG_PROB_KEY`` ``[N]`` (behaviour log-prob, sum of 7 token log-probs),
    ``ADVANTAGE_KEY`` ``[N, 1]``, and with a critic ``VALUE_KEY`` ``[N, 1]`` (old value, for
    clipping) and ``VALUE_TARGET_KEY`` ``[N, 1]``; for ``kl_coeff > 0`` optionally
    ``REF_ACTION_LOG_PROB_KEY`` ``[N]`` (else computed by the evaluator inside
    ``evaluator.reference()`` under ``no_grad``).

    Output: ``loss_objective``, ``loss_critic`` (if ``critic_coeff``), ``loss_entropy`` (if
    ``entropy_coeff``), ``loss_kl`` (if ``kl_coeff``), detached ``clip_fraction``,
    ``kl_approx``, ``ratio_mean``, ``entropy`` (joint entropy of the 7 token distributions,
    summed), ``value_clip_fraction``, ``explained_variance``, ``kl_ref`` (if ``kl_coeff``), and
    ``EVAL_TOKEN_LOG_PROBS_KEY`` ``[N, 7]``: the current policy's token log-probs of this call's
    forward, **with** their graph, so that a composed loss adds terms on them without a second
    evaluator pass (it is not a ``loss_*`` entry, so it is not summed). The training loss is the
    sum of the ``loss_*`` entries.

    The KL to the reference is :func:`.functional.reference_kl` (the k3 estimator of GRPO's KL
    term, Shao et al. 2024 Eq. 4, the same as :class:`~vla_torchrl.objectives.VLAGRPOLoss`):
    ``loss_kl = kl_coeff * mean(exp(ref - logp) - (ref - logp) - 1)``.

    Args:
        evaluator: teacher-forced evaluation module (see :class:`EvaluatorLossBase`).
        clip_epsilon: ratio clip (0.2).
        clip_value: value clip around the old value (0.2), ``None`` to disable.
        huber_delta: Huber width of the value loss (10), ``None`` for the squared error.
        critic_coeff: weight of the value loss; ``None`` or 0 for no critic (GRPO).
        entropy_coeff: weight of the entropy bonus (``loss_entropy = -coeff * entropy``).
        normalize_advantage: standardise advantages before Eq. (1) (FACTS.md: over the batch).
        advantage_stats_fn: ``(advantage, mask) -> (mean, std)``; default: this call's
            (minibatch) statistics, :func:`.functional.batch_advantage_stats`, as TorchRL's
            ``normalize_advantage``. To normalise over the whole rollout (and across ranks), set
            it once per rollout to ``functional.frozen_advantage_stats(rollout[ADVANTAGE_KEY],
            stats_fn=functional.all_reduce_advantage_stats)``; the attribute can be reassigned.
        advantage_eps: lower bound on the std.
        kl_coeff: weight of the KL to the frozen reference policy (0 disables it; the recipe's
            ``algo.kl_coef`` with ``algo.reference=initial``).

    PPO-ORZ is this loss with advantages from ``GAEAdvantage(gamma=1.0, lmbda=1.0)``.

    Examples (needs an evaluator; run in ``tests/objectives/test_examples.py``)::

        rollout = GAEAdvantage(gamma=0.99, lmbda=0.95)(rollout)
        loss_fn = VLAPPOLoss(evaluator, entropy_coeff=0.0)
        loss_fn.advantage_stats_fn = functional.frozen_advantage_stats(rollout[ADVANTAGE_KEY])
        for minibatch in rollout.reshape(-1).split(8):
            losses = loss_fn(minibatch)
            sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by :class:`VLAPPOLoss`; rename with :meth:`set_keys`."""

        advantage: NestedKey = ADVANTAGE_KEY
        value_target: NestedKey = VALUE_TARGET_KEY
        value: NestedKey = VALUE_KEY
        action_log_prob: NestedKey = ACTION_LOG_PROB_KEY
        ref_action_log_prob: NestedKey = REF_ACTION_LOG_PROB_KEY
        eval_token_log_probs: NestedKey = EVAL_TOKEN_LOG_PROBS_KEY
        eval_entropy: NestedKey = EVAL_ENTROPY_KEY

    def __init__(
        self,
        evaluator: TensorDictModuleBase,
        *,
        clip_epsilon: float = 0.2,
        clip_value: float | None = 0.2,
        huber_delta: float | None = 10.0,
        critic_coeff: float | None = 1.0,
        entropy_coeff: float = 0.0,
        normalize_advantage: bool = True,
        advantage_stats_fn: F.AdvantageStatsFn | None = None,
        advantage_eps: float = 1e-6,
        kl_coeff: float = 0.0,
    ) -> None:
        super().__init__(evaluator)
        if clip_epsilon <= 0:
            raise ValueError(f"clip_epsilon={clip_epsilon} must be > 0 (paper: 0.2).")
        if clip_value is not None and clip_value <= 0:
            raise ValueError(f"clip_value={clip_value} must be > 0 or None (FACTS.md: 0.2).")
        if huber_delta is not None and huber_delta <= 0:
            raise ValueError(f"huber_delta={huber_delta} must be > 0 or None (FACTS.md: 10).")
        if entropy_coeff < 0:
            raise ValueError(f"entropy_coeff={entropy_coeff} must be >= 0 (it is a bonus).")
        if kl_coeff < 0:
            raise ValueError(
                f"kl_coeff={kl_coeff} must be >= 0 (a penalty on KL to the reference)."
            )
        self.clip_epsilon = clip_epsilon
        self.clip_value = clip_value
        self.huber_delta = huber_delta
        self.critic_coeff = critic_coeff or 0.0
        self.entropy_coeff = entropy_coeff
        self.normalize_advantage = normalize_advantage
        self.advantage_stats_fn = advantage_stats_fn
        self.advantage_eps = advantage_eps
        self.kl_coeff = kl_coeff

    def set_advantage_stats(self, stats_fn: F.AdvantageStatsFn | None) -> None:
        """Normalise advantages with ``stats_fn`` (e.g. the whole rollout's statistics).

        The recipes call it once per rollout (:class:`~vla_torchrl.objectives.UsesAdvantageStats`);
        ``None`` restores this call's (minibatch) statistics.
        """
        self.advantage_stats_fn = stats_fn

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys = [k.advantage, k.action_log_prob, *getattr(self.evaluator, "in_keys", [])]
        return keys + ([k.value, k.value_target] if self.critic_coeff else [])

    @property
    def out_keys(self) -> list[NestedKey]:
        keys = ["loss_objective", "clip_fraction", "kl_approx", "ratio_mean", "entropy"]
        if self.entropy_coeff:
            keys.append("loss_entropy")
        if self.critic_coeff:
            keys += ["loss_critic", "value_clip_fraction", "explained_variance"]
        if self.kl_coeff:
            keys += ["loss_kl", "kl_ref"]
        return keys + [self.tensor_keys.eval_token_log_probs]

    def _policy_terms(
        self, td: TensorDictBase, evaluated: TensorDictBase
    ) -> tuple[TensorDict, torch.Tensor]:
        """Eq. (1) and the entropy bonus; returns the terms and the current action log-probs."""
        k = self.tensor_keys
        log_prob = F.action_log_prob(self._require(evaluated, k.eval_token_log_probs))  # Eq. (1)
        n = log_prob.shape[0]
        old = self._vector(self._require(td, k.action_log_prob), n, k.action_log_prob)
        adv = self._vector(self._require(td, k.advantage), n, k.advantage)
        if self.normalize_advantage:
            adv = F.normalize_advantage(
                adv, stats_fn=self.advantage_stats_fn, eps=self.advantage_eps
            )
        loss, info = F.clipped_surrogate_loss(log_prob, old, adv, clip_epsilon=self.clip_epsilon)
        out = TensorDict({"loss_objective": loss, **info})
        out.set(k.eval_token_log_probs, self._require(evaluated, k.eval_token_log_probs))
        entropy = self._require(evaluated, k.eval_entropy).sum(-1).mean()
        out.set("entropy", entropy.detach())
        if self.entropy_coeff:
            out.set("loss_entropy", -self.entropy_coeff * entropy)
        return out, log_prob

    def _critic_terms(self, td: TensorDictBase, evaluated: TensorDictBase, out: TensorDict) -> None:
        k = self.tensor_keys
        value = evaluated.get(k.value, None)
        if value is None:
            raise KeyError(
                f"the evaluator wrote no {k.value!r}: attach a critic to it, or build the loss "
                "with critic_coeff=None."
            )
        n = value.shape[0]
        value = self._vector(value, n, k.value)
        old_value = self._vector(self._require(td, k.value), n, k.value)
        target = self._vector(self._require(td, k.value_target), n, k.value_target)
        loss, info = F.clipped_value_loss(
            value, old_value, target, clip_value=self.clip_value, huber_delta=self.huber_delta
        )
        out.set("loss_critic", self.critic_coeff * loss)
        for name, val in info.items():
            out.set(name, val)
        out.set("explained_variance", F.explained_variance(value, target))

    def _kl_terms(self, td: TensorDictBase, log_prob: torch.Tensor, out: TensorDict) -> None:
        """``loss_kl`` and ``kl_ref``: KL to the reference (:func:`.functional.reference_kl`)."""
        k = self.tensor_keys
        ref = td.get(k.ref_action_log_prob, None)
        if ref is None:
            ref = F.action_log_prob(self._reference_token_log_probs(td, k.eval_token_log_probs))
        ref = self._vector(ref, log_prob.shape[0], k.ref_action_log_prob)
        kl = F.reference_kl(log_prob, ref)
        out.set("loss_kl", self.kl_coeff * kl)
        out.set("kl_ref", kl.detach())

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = self._flat(tensordict)
        evaluated = self._evaluate(td)
        out, log_prob = self._policy_terms(td, evaluated)
        if self.critic_coeff:
            self._critic_terms(td, evaluated, out)
        if self.kl_coeff:
            self._kl_terms(td, log_prob, out)
        return out
