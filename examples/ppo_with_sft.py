"""Composing losses: PPO on rollouts + lambda * SFT on demonstrations, one optimiser step.

A custom objective is a ``LossModule`` that holds the stock ones and adds their ``loss_*``
terms; recipes sum every ``loss_*`` entry and log the rest. Run with the real evaluator by
passing it instead of the mock used in ``tests/objectives/test_examples.py``.
"""

from __future__ import annotations

from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from vla_torchrl.objectives import VLAPPOLoss, VLASFTLoss


class PPOWithSFTLoss(LossModule):
    """``L = L_PPO(rollout) + sft_coeff * L_SFT(demos)``, sharing one evaluator."""

    def __init__(self, evaluator, *, sft_coeff: float = 0.1, **ppo_kwargs) -> None:
        super().__init__()
        self.ppo = VLAPPOLoss(evaluator, **ppo_kwargs)
        self.sft = VLASFTLoss(evaluator)
        self.sft_coeff = sft_coeff

    def forward(self, rollout: TensorDictBase, demos: TensorDictBase) -> TensorDict:
        out = self.ppo(rollout)  # loss_objective, loss_critic, diagnostics
        sft = self.sft(demos)
        out.set("loss_sft", self.sft_coeff * sft["loss_sft"])
        out.set("sft_nll", sft["loss_sft"].detach())
        return out
