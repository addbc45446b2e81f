"""VLAGRPOLoss: no critic, group-relative advantages, KL to the reference."""

from __future__ import annotations

import pytest
import torch
from objectives_mocks import FIRST_ACTION_ID

from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    ADVANTAGE_KEY,
    EPISODE_ID_KEY,
    REF_ACTION_LOG_PROB_KEY,
    STATE_KEY,
    VALUE_KEY,
)
from vla_torchrl.objectives import GroupRelativeAdvantage, VLAGRPOLoss


def _ref_action_log_prob(ev, td):
    """Reference log-probs by hand: base logits only (adapters off), 256-way softmax."""
    with torch.no_grad():
        logp = ev.base(td[STATE_KEY]).unflatten(-1, (7, 256)).log_softmax(-1)
        ids = (td[ACTION_TOKENS_KEY] - FIRST_ACTION_ID).unsqueeze(-1)
        return logp.gather(-1, ids).squeeze(-1).sum(-1)


def test_grpo_loss_on_rollout_with_kl(evaluator, rollout):
    rollout = GroupRelativeAdvantage(mode="process", group_key=EPISODE_ID_KEY)(rollout)
    assert VALUE_KEY not in rollout  # no critic anywhere
    flat = rollout.reshape(-1)
    loss_fn = VLAGRPOLoss(evaluator, kl_coeff=0.5)
    out = loss_fn(flat)
    assert "loss_critic" not in out and evaluator.ref_calls == 1
    # independent KL (k3) from the hand-computed reference and current log-probs
    ref = _ref_action_log_prob(evaluator, flat)
    with torch.no_grad():
        cur = evaluator.logits(flat[STATE_KEY]).log_softmax(-1)
        ids = (flat[ACTION_TOKENS_KEY] - FIRST_ACTION_ID).unsqueeze(-1)
        lp = cur.gather(-1, ids).squeeze(-1).sum(-1)
    d = ref - lp
    exp_kl = (d.exp() - d - 1).mean()
    torch.testing.assert_close(out["kl_ref"], exp_kl)
    torch.testing.assert_close(out["loss_kl"].detach(), 0.5 * exp_kl)
    # stored reference log-probs are used instead of a reference pass
    flat.set(REF_ACTION_LOG_PROB_KEY, ref)
    out2 = loss_fn(flat)
    assert evaluator.ref_calls == 1
    torch.testing.assert_close(out2["kl_ref"], exp_kl)
    # Eq. (1) term with the unnormalised group-relative advantage
    ratio = (lp - flat[ACTION_LOG_PROB_KEY]).exp()
    adv = flat[ADVANTAGE_KEY].squeeze(-1)
    exp_obj = -torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
    torch.testing.assert_close(out2["loss_objective"].detach(), exp_obj)


def test_grpo_zero_advantage_group_gives_zero_objective_gradient(evaluator, rollout):
    # all rewards equal -> zero advantages -> no policy gradient from Eq. (1), and no NaN
    rollout["next", "reward"] = torch.full_like(rollout["next", "reward"], 0.1)
    rollout = GroupRelativeAdvantage(mode="whole")(rollout)
    out = VLAGRPOLoss(evaluator)(rollout)
    out["loss_objective"].backward()
    assert torch.count_nonzero(evaluator.delta.weight.grad) == 0
    assert out["loss_objective"].item() == 0.0


def test_grpo_set_keys(evaluator, rollout):
    rollout = GroupRelativeAdvantage()(rollout).reshape(-1)
    rollout.rename_key_(ACTION_LOG_PROB_KEY, "behav_lp")
    loss_fn = VLAGRPOLoss(evaluator).set_keys(action_log_prob="behav_lp")
    assert torch.isfinite(loss_fn(rollout)["loss_objective"])
    with pytest.raises(ValueError, match="kl_coeff"):
        VLAGRPOLoss(evaluator, kl_coeff=-1.0)
