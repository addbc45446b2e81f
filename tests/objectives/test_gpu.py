"""Every advantage module and loss on a CUDA device (deselected by default: marker ``gpu``)."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule

from vla_torchrl.keys import EPISODE_ID_KEY, STATE_KEY, VALUE_KEY
from vla_torchrl.objectives import (
    GAEAdvantage,
    GroupRelativeAdvantage,
    VLAGRPOLoss,
    VLAPPOLoss,
    VLASFTLoss,
    VLATPOLoss,
)
from vla_torchrl.objectives import functional as F
from vla_torchrl.objectives.global_batch import all_reduce_advantage_stats


@pytest.mark.gpu
def test_all_objectives_on_cuda(evaluator, rollout):
    if not torch.cuda.is_available():
        pytest.fail("marker 'gpu' selected but torch.cuda.is_available() is False")
    dev = torch.device("cuda")
    evaluator = evaluator.to(dev)
    rollout = rollout.to(dev)
    critic = TensorDictModule(evaluator.value_head, in_keys=[STATE_KEY], out_keys=[VALUE_KEY])
    ppo_in = GAEAdvantage(value_network=critic)(rollout.clone())
    grpo_in = GroupRelativeAdvantage(group_key=EPISODE_ID_KEY)(rollout.clone())
    ppo = VLAPPOLoss(evaluator, entropy_coeff=0.01)
    ppo.advantage_stats_fn = F.frozen_advantage_stats(
        ppo_in["advantage"], stats_fn=all_reduce_advantage_stats
    )
    outs = {
        "ppo": ppo(ppo_in),
        "grpo": VLAGRPOLoss(evaluator, kl_coeff=0.1)(grpo_in),
        "tpo": VLATPOLoss(evaluator, group_key=EPISODE_ID_KEY)(rollout),
        "sft": VLASFTLoss(evaluator)(rollout),
    }
    for name, out in outs.items():
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        assert total.device.type == "cuda" and torch.isfinite(total), name
        total.backward()
    assert evaluator.delta.weight.grad.abs().sum() > 0
