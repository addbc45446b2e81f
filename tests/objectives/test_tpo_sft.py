"""VLATPOLoss and VLASFTLoss against hand computations on the mock evaluator."""

from __future__ import annotations

import math

import pytest
import torch
from objectives_mocks import FIRST_ACTION_ID, make_rollout

from vla_torchrl.keys import (
    ACTION_TOKENS_KEY,
    EPISODE_ID_KEY,
    REF_ACTION_LOG_PROB_KEY,
    STATE_KEY,
)
from vla_torchrl.objectives import VLASFTLoss, VLATPOLoss


def _step_log_probs(ev, td, *, reference: bool):
    with torch.no_grad():
        logits = ev.base(td[STATE_KEY])
        if not reference:
            logits = logits + ev.delta(td[STATE_KEY])
        logp = logits.unflatten(-1, (7, 256)).log_softmax(-1)
        ids = (td[ACTION_TOKENS_KEY] - FIRST_ACTION_ID).unsqueeze(-1)
        return logp.gather(-1, ids).squeeze(-1)  # [..., 7]


# rollout fixture trajectories, by hand: (env, steps, return, id of the first step)
TRAJ = [
    (0, range(0, 3), 1.2, 0),
    (0, range(3, 6), 0.1, 4),
    (1, range(0, 4), 0.1, 1),
    (1, range(4, 6), 0.0, 5),
    (2, range(0, 6), 0.0, 0),
    (3, range(0, 6), 1.2, 1),
]


def _expected_tpo(ev, rollout, beta, grouped):
    lp = _step_log_probs(ev, rollout, reference=False).sum(-1)
    ref = _step_log_probs(ev, rollout, reference=True).sum(-1)
    ratios = [float(sum(lp[e, s] - ref[e, s] for s in steps)) for e, steps, _, _ in TRAJ]
    terms = []
    for i, (_, _, ri, gi) in enumerate(TRAJ):
        for j, (_, _, rj, gj) in enumerate(TRAJ):
            if ri > rj + 1e-9 and (not grouped or gi == gj):
                m = beta * (ratios[i] - ratios[j])
                terms.append(math.log1p(math.exp(-m)))  # -log sigmoid(m)
    return sum(terms) / len(terms), len(terms)


@pytest.mark.parametrize("grouped", [False, True])
def test_tpo_matches_hand_computation(evaluator, rollout, grouped):
    loss_fn = VLATPOLoss(evaluator, beta=0.3, group_key=EPISODE_ID_KEY if grouped else None)
    out = loss_fn(rollout)
    exp, n_pairs = _expected_tpo(evaluator, rollout, 0.3, grouped)
    assert n_pairs == (2 if grouped else 12)
    assert out["num_pairs"].item() == n_pairs and out["num_trajectories"].item() == 6
    assert out["loss_tpo"].item() == pytest.approx(exp, rel=1e-5)
    assert evaluator.ref_calls == 1


@pytest.mark.parametrize("grouped", [False, True])
def test_tpo_padding_is_no_trajectory(evaluator, grouped):
    # issue 15 item 4, by hand: one row, trajectory A = steps 0-1 (return 1.2), B = steps 2-3
    # (return 0.1), steps 4-5 padding (masked, their reward must not count): 2 trajectories,
    # 1 pair (A over B). Before the fix the padding was a third trajectory (return 0): 3 pairs.
    reward = torch.tensor([[0.1, 1.1, 0.0, 0.1, 5.0, 5.0]])
    done = torch.tensor([[False, True, False, True, False, False]])
    rollout = make_rollout(
        reward, done, done.clone(), episode_id=torch.zeros(1, 6, dtype=torch.long)
    )
    rollout.set("valid", torch.tensor([[True, True, True, True, False, False]]))
    group_key = EPISODE_ID_KEY if grouped else None
    out = VLATPOLoss(evaluator, beta=0.3, mask_key="valid", group_key=group_key)(rollout)
    lp = _step_log_probs(evaluator, rollout, reference=False).sum(-1)[0]
    ref = _step_log_probs(evaluator, rollout, reference=True).sum(-1)[0]
    ratio_a = float(lp[0] + lp[1] - ref[0] - ref[1])
    ratio_b = float(lp[2] + lp[3] - ref[2] - ref[3])
    exp = math.log1p(math.exp(-0.3 * (ratio_a - ratio_b)))  # -log sigmoid(margin)
    assert out["num_trajectories"].item() == 2 and out["num_pairs"].item() == 1
    assert out["loss_tpo"].item() == pytest.approx(exp, rel=1e-5)


def test_tpo_stored_reference_and_gradient_step(evaluator, rollout):
    ref = _step_log_probs(evaluator, rollout, reference=True).sum(-1)
    rollout.set(REF_ACTION_LOG_PROB_KEY, ref)
    loss_fn = VLATPOLoss(evaluator, beta=0.3)
    out = loss_fn(rollout)
    assert evaluator.ref_calls == 0
    opt = torch.optim.SGD([evaluator.delta.weight, evaluator.delta.bias], lr=0.05)
    out["loss_tpo"].backward()
    opt.step()
    after = loss_fn(rollout)
    assert after["reward_margin"] > out["reward_margin"]
    assert after["loss_tpo"] < out["loss_tpo"]


def test_tpo_empty_preference_set(evaluator, rollout):
    rollout["next", "reward"] = torch.zeros_like(rollout["next", "reward"])
    out = VLATPOLoss(evaluator)(rollout)
    assert out["loss_tpo"].item() == 0.0 and out["has_pairs"].item() == 0.0
    out["loss_tpo"].backward()  # no NaN, zero gradient
    assert torch.count_nonzero(evaluator.delta.weight.grad) == 0


def test_tpo_needs_time_dim(evaluator, rollout):
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        VLATPOLoss(evaluator)(rollout.reshape(-1))


def test_sft_is_action_token_nll_and_trains(evaluator, rollout):
    demos = rollout.reshape(-1)[:10]
    loss_fn = VLASFTLoss(evaluator)
    out = loss_fn(demos)
    exp = -_step_log_probs(evaluator, demos, reference=False).mean()
    torch.testing.assert_close(out["loss_sft"].detach(), exp)
    opt = torch.optim.SGD(evaluator.parameters(), lr=0.5)
    out["loss_sft"].backward()
    opt.step()
    assert loss_fn(demos)["loss_sft"] < out["loss_sft"]
    # step mask: only the first 3 demonstrations count
    mask = torch.arange(10) < 3
    demos.set("valid", mask)
    masked = VLASFTLoss(evaluator, mask_key="valid")(demos)
    exp = -_step_log_probs(evaluator, demos[:3], reference=False).mean()
    torch.testing.assert_close(masked["loss_sft"].detach(), exp)


def test_tpo_and_sft_set_keys(evaluator, rollout):
    expected = VLATPOLoss(evaluator)(rollout.clone())["loss_tpo"]
    renamed = rollout.clone().rename_key_(("next", "reward"), ("next", "sparse_reward"))
    loss_fn = VLATPOLoss(evaluator).set_keys(reward="sparse_reward")
    torch.testing.assert_close(loss_fn(renamed)["loss_tpo"], expected)
    with pytest.raises(KeyError, match="set_keys"):
        VLATPOLoss(evaluator)(renamed)
    sft = VLASFTLoss(evaluator).set_keys(eval_token_log_probs=("eval", "token_log_probs"))
    assert sft.tensor_keys.eval_token_log_probs == ("eval", "token_log_probs")
