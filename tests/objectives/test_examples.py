"""The composition example (examples/ppo_with_sft.py) runs on the mock evaluator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule

from vla_torchrl.keys import STATE_KEY, VALUE_KEY
from vla_torchrl.objectives import GAEAdvantage, VLAPPOLoss, VLASFTLoss

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ppo_with_sft.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("ppo_with_sft", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ppo_plus_sft_example(evaluator, rollout):
    critic = TensorDictModule(evaluator.value_head, in_keys=[STATE_KEY], out_keys=[VALUE_KEY])
    rollout = GAEAdvantage(gamma=0.99, lmbda=0.95, value_network=critic)(rollout)
    demos = rollout.reshape(-1)[:8].clone()
    loss_fn = _load_example().PPOWithSFTLoss(evaluator, sft_coeff=0.25, entropy_coeff=0.01)
    out = loss_fn(rollout, demos)
    # the parts equal the stock losses evaluated separately
    ppo = VLAPPOLoss(evaluator, entropy_coeff=0.01)(rollout)
    sft = VLASFTLoss(evaluator)(demos)
    torch.testing.assert_close(out["loss_sft"], 0.25 * sft["loss_sft"])
    torch.testing.assert_close(out["loss_objective"], ppo["loss_objective"])
    torch.testing.assert_close(out["loss_critic"], ppo["loss_critic"])
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    total.backward()
    assert evaluator.delta.weight.grad.abs().sum() > 0
    assert evaluator.value_head.weight.grad.abs().sum() > 0


def test_documented_recipe_flow_rollout_wide_normalisation(evaluator, rollout):
    """The loop of the package docstring: advantages once, then minibatches of 8."""
    from vla_torchrl.keys import ADVANTAGE_KEY
    from vla_torchrl.objectives import functional as F

    critic = TensorDictModule(evaluator.value_head, in_keys=[STATE_KEY], out_keys=[VALUE_KEY])
    rollout = GAEAdvantage(value_network=critic)(rollout)
    loss_fn = VLAPPOLoss(evaluator)
    loss_fn.advantage_stats_fn = F.frozen_advantage_stats(rollout[ADVANTAGE_KEY])
    adv = rollout[ADVANTAGE_KEY]
    seen = 0
    for minibatch in rollout.reshape(-1).split(8):
        losses = loss_fn(minibatch)
        sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
        seen += minibatch.numel()
    assert seen == 24
    # the rollout-wide statistics were used, not the minibatch's
    mb = rollout.reshape(-1)[:8]
    manual = mb.clone()
    manual.set(ADVANTAGE_KEY, (mb[ADVANTAGE_KEY] - adv.mean()) / adv.std())
    expected = VLAPPOLoss(evaluator, normalize_advantage=False)(manual)["loss_objective"]
    torch.testing.assert_close(loss_fn(mb)["loss_objective"], expected)
