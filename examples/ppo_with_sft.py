"""Composing losses: PPO on rollouts + lambda * SFT on demonstrations, one optimiser step.

A custom objective is a ``LossModule`` that holds the stock ones and adds their ``loss_*``
terms; the recipes sum every ``loss_*`` entry and log the other scalars. Train it with the recipe
(the repository root on the path, so that ``examples`` imports)::

    vla-torchrl-collect env=toy env.num_envs=8 episodes=16 out=data/toy-demos
    PYTHONPATH=. vla-torchrl-train --config-name train_cpu algo=ppo model.finetune=full \\
        algo.loss._target_=examples.ppo_with_sft.PPOWithSFTLoss \\
        +algo.loss.demos=data/toy-demos +algo.loss.sft_coeff=0.5 \\
        algo.reference=initial algo.kl_coef=0.1          # PPO + KL to the initial policy + SFT

The recipe builds it as ``PPOWithSFTLoss(evaluator, algo=<the AlgoConfig>, demos=..., ...)``:
the PPO part is the recipe's own (:func:`~vla_torchrl.training.loop.stock_loss`: clip, value
loss, entropy, and the KL term of ``algo.kl_coef``), and it receives the rollout-wide advantage
statistics because ``VLAPPOLoss`` defines ``set_advantage_stats`` (the recipe offers them to every
sub-module that does). Each call draws ``sft_batch_size`` demonstration steps with torch's global
RNG, which the recipe checkpoints, so a resumed run draws the same ones.
``tests/recipes/test_custom_loss.py`` runs this through ``vla-torchrl-train`` with the tiny
OpenVLA on the toy env.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from vla_torchrl.envs.demos import load_demos
from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY
from vla_torchrl.objectives import VLAPPOLoss, VLASFTLoss


class PPOWithSFTLoss(LossModule):
    """``L = L_PPO(rollout) + sft_coeff * L_SFT(demos)``, sharing one evaluator.

    Args:
        evaluator: the policy's teacher-forced evaluator.
        algo: the recipe's ``AlgoConfig``: the PPO part is the recipe's own loss; without it,
            ``VLAPPOLoss(evaluator, **ppo_kwargs)``.
        demos: a demonstration folder (``vla-torchrl-collect``) or tensordict with ``ACTION_KEY``
            and the observation keys; drawn from when ``forward`` gets no demos.
        sft_coeff: weight of the SFT term.
        sft_batch_size: demonstration steps per call.
    """

    def __init__(
        self,
        evaluator,
        *,
        algo=None,
        demos: str | Path | TensorDictBase | None = None,
        sft_coeff: float = 0.1,
        sft_batch_size: int = 8,
        **ppo_kwargs,
    ) -> None:
        super().__init__()
        if algo is not None:
            from vla_torchrl.training.loop import stock_loss

            if ppo_kwargs:
                raise TypeError(
                    f"give either algo or PPO arguments, not both: {sorted(ppo_kwargs)}"
                )
            if algo.name == "sft":
                raise ValueError(
                    "PPOWithSFTLoss adds SFT to a rollout algorithm; algo=sft is SFT already "
                    "(use algo=ppo)"
                )
            self.ppo = stock_loss(evaluator, algo)
        else:
            self.ppo = VLAPPOLoss(evaluator, **ppo_kwargs)
        self.sft = VLASFTLoss(evaluator)
        self.sft_coeff = sft_coeff
        self.sft_batch_size = sft_batch_size
        if isinstance(demos, str | Path):
            demos = load_demos(demos).to_tensordict()
        if demos is not None and ACTION_TOKENS_KEY not in demos.keys(True):
            # env actions -> the policy's action tokens (with its norm_stats), as SFT does
            tokenizer = evaluator.processor.action_tokenizer
            demos.set(ACTION_TOKENS_KEY, tokenizer.actions_to_tokens(demos.get(ACTION_KEY)))
        self.demos = demos

    def forward(self, rollout: TensorDictBase, demos: TensorDictBase | None = None) -> TensorDict:
        out = self.ppo(rollout)  # loss_objective, loss_critic, (loss_kl), diagnostics
        if demos is None:
            if self.demos is None:
                raise ValueError("PPOWithSFTLoss: no demonstrations; pass demos= to it or forward")
            index = torch.randint(0, self.demos.shape[0], (self.sft_batch_size,))
            demos = self.demos[index]
        sft = self.sft(demos)
        out.set("loss_sft", self.sft_coeff * sft["loss_sft"])
        out.set("sft_nll", sft["loss_sft"].detach())
        return out
