"""objectives layer of vla_torchrl: the paper's RL objectives (Sec. 4.1, Appendix A.1).

Three layers, each usable alone:

* :mod:`~vla_torchrl.objectives.functional` - Eq. (1)-(7), value loss and SFT as plain tensor
  functions;
* advantage modules on collector output ``[B, T]``: :class:`GAEAdvantage` (PPO, PPO-ORZ with
  ``gamma = lmbda = 1``) and :class:`GroupRelativeAdvantage` (GRPO / GRPO(s));
* ``LossModule`` s calling the evaluator once per minibatch: :class:`VLAPPOLoss`,
  :class:`VLAGRPOLoss`, :class:`VLATPOLoss`, :class:`VLASFTLoss`; and the auxiliary
  :class:`PerceptionLoss` on privileged simulator labels (:mod:`.perception`), which trains the
  vision towers through an image encoder and stands in for OpenVLA's vision pretraining at the
  CPU scale.

A recipe computes advantages on the whole rollout, then the loss per minibatch::

    gae = GAEAdvantage(gamma=0.99, lmbda=0.95)          # reads VALUE_KEY stored by the actor
    loss_fn = VLAPPOLoss(evaluator, entropy_coeff=0.0)   # clip 0.2, value clip 0.2, Huber 10
    rollout = gae(rollout)                               # writes ADVANTAGE_KEY, VALUE_TARGET_KEY
    for mb in rollout.reshape(-1).split(8):              # FACTS.md: minibatch 8 x 20 accum.
        losses = loss_fn(mb)
        sum(v for k, v in losses.items() if k.startswith("loss_")).backward()

Composing a custom objective (``examples/ppo_with_sft.py``): PPO + lambda * SFT::

    class PPOWithSFTLoss(LossModule):
        def __init__(self, evaluator, *, sft_coeff=0.1, **ppo_kwargs):
            super().__init__()
            self.ppo = VLAPPOLoss(evaluator, **ppo_kwargs)
            self.sft = VLASFTLoss(evaluator)
            self.sft_coeff = sft_coeff

        def forward(self, rollout, demos):
            out = self.ppo(rollout)
            out.set("loss_sft", self.sft_coeff * self.sft(demos)["loss_sft"])
            return out

The recipes train such a loss with ``vla-torchrl-train algo.loss._target_=my_pkg.MyLoss``
(README "Custom losses in the recipes"); a loss (or any of its sub-modules) that defines
``set_advantage_stats`` (:class:`UsesAdvantageStats`) is given the whole rollout's statistics.
"""

from __future__ import annotations

from vla_torchrl.objectives import functional
from vla_torchrl.objectives._evaluator_loss import EvaluatorLossBase, UsesAdvantageStats
from vla_torchrl.objectives.advantages import GAEAdvantage, GroupRelativeAdvantage
from vla_torchrl.objectives.grpo import VLAGRPOLoss
from vla_torchrl.objectives.perception import PerceptionLoss
from vla_torchrl.objectives.ppo import VLAPPOLoss
from vla_torchrl.objectives.sft import VLASFTLoss
from vla_torchrl.objectives.tpo import VLATPOLoss

__all__ = [
    "EvaluatorLossBase",
    "GAEAdvantage",
    "GroupRelativeAdvantage",
    "PerceptionLoss",
    "UsesAdvantageStats",
    "VLAGRPOLoss",
    "VLAPPOLoss",
    "VLASFTLoss",
    "VLATPOLoss",
    "functional",
]
