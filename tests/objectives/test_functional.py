"""Functional objectives against hand-worked values and plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch

from vla_torchrl.objectives import functional as F


def assert_close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    torch.testing.assert_close(
        actual, torch.tensor(expected, dtype=actual.dtype), atol=atol, rtol=0
    )


# ---------------------------------------------------------------------------------------------
# Eq. (1)
# ---------------------------------------------------------------------------------------------
def test_surrogate_ratio_is_product_of_token_probabilities():
    new_p = torch.tensor([[0.5, 0.4, 0.9, 0.8, 0.7, 0.6, 0.5]])
    old_p = torch.tensor([[0.5, 0.5, 0.9, 0.8, 0.7, 0.6, 0.4]])
    # ratio of products: (0.4 * 0.5) / (0.5 * 0.4) = 1.0
    lp = F.action_log_prob(new_p.log())
    olp = F.action_log_prob(old_p.log())
    loss, info = F.clipped_surrogate_loss(lp, olp, torch.tensor([2.0]))
    assert loss.item() == pytest.approx(-2.0, abs=1e-6)
    assert info["ratio_mean"].item() == pytest.approx(1.0, abs=1e-6)
    assert info["clip_fraction"].item() == 0.0


def test_surrogate_matches_loop():
    ratios = [0.5, 0.9, 1.0, 1.3, 2.0, 0.7]
    advs = [1.0, -1.0, 0.5, 1.0, -2.0, -0.5]
    eps = 0.2
    expected = 0.0
    clipped = 0
    for r, a in zip(ratios, advs, strict=True):
        rc = min(max(r, 1 - eps), 1 + eps)
        expected += -min(r * a, rc * a)
        clipped += int(r < 1 - eps or r > 1 + eps)
    expected /= len(ratios)
    old = torch.randn(6)
    new = old + torch.tensor(ratios).log()
    loss, info = F.clipped_surrogate_loss(new, old, torch.tensor(advs), clip_epsilon=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert info["clip_fraction"].item() == pytest.approx(clipped / 6)
    assert info["kl_approx"].item() == pytest.approx(-sum(math.log(r) for r in ratios) / 6, 1e-5)


def test_surrogate_gradient_pushes_log_prob_towards_advantage_sign():
    lp = torch.zeros(2, requires_grad=True)
    loss, _ = F.clipped_surrogate_loss(lp, torch.zeros(2), torch.tensor([1.0, -1.0]))
    loss.backward()
    # gradient descent: lp -= lr * grad -> up for A > 0, down for A < 0
    assert lp.grad[0] < 0 < lp.grad[1]


def test_surrogate_mask_and_shape_errors():
    lp = torch.log(torch.tensor([1.1, 5.0]))
    loss, _ = F.clipped_surrogate_loss(
        lp, torch.zeros(2), torch.ones(2), mask=torch.tensor([True, False])
    )
    assert loss.item() == pytest.approx(-1.1, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        F.clipped_surrogate_loss(lp, torch.zeros(2), torch.ones(2, 1))


# ---------------------------------------------------------------------------------------------
# value loss, explained variance, normalisation
# ---------------------------------------------------------------------------------------------
def _huber(x: float, d: float) -> float:
    return 0.5 * x * x if abs(x) <= d else d * (abs(x) - 0.5 * d)


def test_clipped_value_loss_matches_loop():
    v = [0.0, 1.0, 30.0, -2.0]
    old = [0.5, 0.0, 0.0, -2.1]
    tgt = [1.0, 1.0, 0.0, 20.0]
    c, d = 0.2, 10.0
    exp = 0.0
    n_clip = 0
    for vi, oi, ti in zip(v, old, tgt, strict=True):
        vc = oi + min(max(vi - oi, -c), c)
        n_clip += int(vc != vi)
        exp += max(_huber(vi - ti, d), _huber(vc - ti, d))
    loss, info = F.clipped_value_loss(
        torch.tensor(v), torch.tensor(old), torch.tensor(tgt), clip_value=c, huber_delta=d
    )
    assert loss.item() == pytest.approx(exp / 4, rel=1e-6)
    assert info["value_clip_fraction"].item() == pytest.approx(n_clip / 4)


def test_explained_variance_and_normalisation():
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    p = torch.tensor([1.0, 2.0, 3.0, 3.0])
    # resid var of [0, 0, 0, 1] = 3/16, target var = 5/4
    assert F.explained_variance(p, t).item() == pytest.approx(1 - (3 / 16) / (5 / 4), rel=1e-5)
    a = torch.tensor([1.0, 2.0, 3.0, 100.0])
    m = torch.tensor([True, True, True, False])
    out = F.normalize_advantage(a, m)
    assert out[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)  # mean 2, std 1
    # a replacement statistics function (e.g. a global all-gather) is honoured
    out = F.normalize_advantage(a, stats_fn=lambda x, mask: (torch.tensor(1.0), torch.tensor(2.0)))
    assert out.tolist() == pytest.approx([0.0, 0.5, 1.0, 49.5])


# ---------------------------------------------------------------------------------------------
# Eq. (2)
# ---------------------------------------------------------------------------------------------
def _gae_loop(r, v, nv, done, term, gamma, lmbda):
    """Eq. (2) per trajectory, by hand: deltas summed with (gamma lambda)^l until done."""
    t_max = len(r)
    adv = [0.0] * t_max
    for t in range(t_max):
        total, coef = 0.0, 1.0
        for k in range(t, t_max):
            boot = 0.0 if term[k] else gamma * nv[k]
            total += coef * (r[k] + boot - v[k])
            if done[k]:
                break
            coef *= gamma * lmbda
        adv[t] = total
    return adv


@pytest.mark.parametrize("gamma,lmbda", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0)])
def test_gae_matches_loop_with_truncation_termination_and_reset(gamma, lmbda):
    r = [0.0, 0.1, 0.0, 1.0, 0.0, 0.1, 0.0, 0.2]
    v = [0.3, 0.4, 0.2, 0.9, 0.1, 0.5, 0.6, 0.7]
    nv = [0.4, 0.2, 0.9, 123.0, 0.5, 0.8, 0.7, 0.65]
    # step 1: truncated (bootstrap from nv[1]=0.2, which is *not* v[2]); step 3: terminated
    # (nv ignored, partial reset: step 4 starts a new episode); last step: end of rollout
    nv[1] = 0.77
    done = [False, True, False, True, False, False, False, False]
    term = [False, False, False, True, False, False, False, False]
    adv, target = F.generalized_advantage_estimate(
        torch.tensor(r),
        torch.tensor(v),
        torch.tensor(nv),
        done=torch.tensor(done),
        terminated=torch.tensor(term),
        gamma=gamma,
        lmbda=lmbda,
    )
    exp = _gae_loop(r, v, nv, done, term, gamma, lmbda)
    assert adv.tolist() == pytest.approx(exp, abs=1e-6)
    assert (target - adv).tolist() == pytest.approx(v, abs=1e-6)


def test_gae_orz_is_return_minus_value_and_nan_next_value_at_termination_is_ignored():
    r = torch.tensor([[0.0, 0.1, 1.0]])
    v = torch.tensor([[0.5, 0.5, 0.5]])
    nv = torch.tensor([[0.5, 0.5, float("nan")]])
    d = torch.tensor([[False, False, True]])
    adv, target = F.generalized_advantage_estimate(
        r, v, nv, done=d, terminated=d, gamma=1.0, lmbda=1.0
    )
    assert_close(adv, [[0.6, 0.6, 0.5]])
    assert_close(target, [[1.1, 1.1, 1.0]])  # Monte-Carlo returns


def test_gae_batched_leading_dims():
    r = torch.rand(2, 3, 5)
    v, nv = torch.rand(2, 3, 5), torch.rand(2, 3, 5)
    d = torch.rand(2, 3, 5) > 0.7
    tm = d & (torch.rand(2, 3, 5) > 0.5)
    adv, _ = F.generalized_advantage_estimate(r, v, nv, done=d, terminated=tm, gamma=0.9, lmbda=0.8)
    for i in range(2):
        for j in range(3):
            exp = _gae_loop(
                r[i, j].tolist(),
                v[i, j].tolist(),
                nv[i, j].tolist(),
                d[i, j].tolist(),
                tm[i, j].tolist(),
                0.9,
                0.8,
            )
            assert adv[i, j].tolist() == pytest.approx(exp, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Eq. (3)-(6)
# ---------------------------------------------------------------------------------------------
def _grpo_loop(rewards, groups, mode, dones=None, masks=None):
    """Eq. (3)-(6) by hand: per group, collect R, normalise, sum the future valid terms."""
    n, t_max = len(rewards), len(rewards[0])
    masks = masks or [[True] * t_max for _ in range(n)]
    dones = dones or [[False] * t_max for _ in range(n)]

    def valid(i, t):
        return masks[i][t] and (mode == "whole" or rewards[i][t] != 0)

    stats = {}
    for g in set(groups):
        vals = [
            rewards[i][t] for i in range(n) for t in range(t_max) if groups[i] == g and valid(i, t)
        ]
        if len(vals) < 2:
            stats[g] = None
            continue
        mu = sum(vals) / len(vals)
        sd = math.sqrt(sum((x - mu) ** 2 for x in vals) / (len(vals) - 1))
        stats[g] = None if sd < 1e-6 else (mu, sd)
    adv = [[0.0] * t_max for _ in range(n)]
    for i in range(n):
        for t in range(t_max):
            if not masks[i][t]:
                continue
            total = 0.0
            for j in range(t, t_max):
                if valid(i, j) and stats[groups[i]] is not None:
                    mu, sd = stats[groups[i]]
                    total += (rewards[i][j] - mu) / sd
                if dones[i][j]:
                    break
            adv[i][t] = total
    return adv


@pytest.mark.parametrize("mode", ["process", "whole"])
def test_grpo_matches_loop_with_groups(mode):
    rewards = [
        [0.0, 0.1, 0.0, 0.1, 1.0],
        [0.0, 0.0, 0.1, 0.0, 0.0],
        [0.1, 0.1, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
    ]
    groups = [0, 0, 1, 1]  # GRPO(s): rows 0-1 share one initial state, rows 2-3 another
    adv = F.group_relative_advantage(torch.tensor(rewards), group=torch.tensor(groups), mode=mode)
    assert_close(adv, _grpo_loop(rewards, groups, mode))


def test_grpo_process_hand_worked():
    # R = {0.1, 1.0, 0.1, 0.1}: mean 0.325, unbiased std 0.45
    r = torch.tensor([[0.0, 0.1, 1.0], [0.1, 0.0, 0.1]])
    adv = F.group_relative_advantage(r, mode="process")
    lo, hi = (0.1 - 0.325) / 0.45, (1.0 - 0.325) / 0.45
    assert_close(adv, [[lo + hi, lo + hi, hi], [2 * lo, lo, lo]])


def test_grpo_edge_cases_no_nan():
    # all rewards equal -> std 0 -> zero advantages
    r = torch.full((3, 4), 0.1)
    for mode in ("process", "whole"):
        adv = F.group_relative_advantage(r, mode=mode)
        assert torch.equal(adv, torch.zeros(3, 4))
    # a single valid reward in the group -> std undefined -> zero advantages
    r = torch.zeros(2, 3)
    r[0, 2] = 1.0
    assert torch.equal(F.group_relative_advantage(r, mode="process"), torch.zeros(2, 3))
    # no valid reward at all
    assert torch.equal(F.group_relative_advantage(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_grpo_different_lengths_and_partial_reset():
    rewards = [[0.0, 0.1, 1.0, 0.0], [0.1, 0.0, 0.0, 0.0], [0.0, 0.1, 0.0, 0.1]]
    masks = [[True, True, True, False], [True, True, False, False], [True] * 4]
    dones = [[False, False, True, False], [False, True, False, False], [False, True, False, True]]
    groups = [0, 0, 0]
    for mode in ("process", "whole"):
        adv = F.group_relative_advantage(
            torch.tensor(rewards),
            done=torch.tensor(dones),
            mask=torch.tensor(masks),
            mode=mode,
        )
        exp = _grpo_loop(rewards, groups, mode, dones=dones, masks=masks)
        assert_close(adv, exp)
        assert adv[0, 3] == 0 and adv[1, 2] == 0  # padding
    # per-step group ids (a new episode after a reset belongs to another group)
    g = torch.tensor([[0, 0, 1, 1]])
    r = torch.tensor([[0.1, 1.0, 0.1, 0.1]])
    adv = F.group_relative_advantage(r, group=g, done=torch.tensor([[False, True, False, True]]))
    hi = (1.0 - 0.55) / math.sqrt(2 * 0.45**2)
    assert_close(adv, [[0.0, hi, 0.0, 0.0]])


# ---------------------------------------------------------------------------------------------
# trajectories, Eq. (7)
# ---------------------------------------------------------------------------------------------
def test_segments():
    done = torch.tensor([[False, True, False], [True, False, True]])
    ids = F.segment_ids(done)
    assert ids.tolist() == [[0, 0, 1], [2, 3, 3]]
    assert F.segment_sum(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), ids).tolist() == [
        3.0,
        3.0,
        4.0,
        11.0,
    ]


def test_preference_pairs_within_groups_and_ties():
    returns = torch.tensor([1.2, 0.0, 0.2, 0.2, 1.2])
    group = torch.tensor([0, 0, 0, 1, 1])
    win, lose = F.preference_pairs(returns, group)
    pairs = set(zip(win.tolist(), lose.tolist(), strict=True))
    assert pairs == {(0, 1), (0, 2), (2, 1), (4, 3)}  # 0.2 vs 0.2 across groups: no pair


def test_tpo_loss_matches_formula():
    lp = torch.tensor([-3.0, -5.0, -4.0], requires_grad=True)
    ref = torch.tensor([-4.0, -4.0, -4.0])
    win, lose = torch.tensor([0, 2]), torch.tensor([1, 1])
    beta = 0.5

    def nls(x):
        return -math.log(1 / (1 + math.exp(-x)))

    exp = (nls(beta * ((-3 + 4) - (-5 + 4))) + nls(beta * ((-4 + 4) - (-5 + 4)))) / 2
    loss, info = F.trajectory_preference_loss(lp, ref, win, lose, beta=beta)
    assert loss.item() == pytest.approx(exp, rel=1e-6)
    assert info["reward_accuracy"].item() == 1.0 and info["num_pairs"].item() == 2
    loss.backward()
    assert lp.grad[0] < 0 and lp.grad[1] > 0  # descent raises the winner, lowers the loser


def test_tpo_empty_pairs_zero_loss_flag_and_backward():
    lp = torch.randn(3, requires_grad=True)
    e = torch.tensor([], dtype=torch.long)
    loss, info = F.trajectory_preference_loss(lp, torch.zeros(3), e, e)
    assert loss.item() == 0.0 and info["has_pairs"].item() == 0.0
    loss.backward()
    assert torch.equal(lp.grad, torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------------------------
def test_action_token_cross_entropy_restricted_vs_full():
    vocab = 32064
    logits = torch.randn(2, 7, vocab)
    ids = torch.randint(31744, 32000, (2, 7))
    restricted = F.action_token_cross_entropy(logits, ids)
    full = F.action_token_cross_entropy(logits, ids, vocabulary="full")
    # independent: explicit softmax over the chosen columns
    exp_r = 0.0
    exp_f = 0.0
    for b in range(2):
        for k in range(7):
            row = logits[b, k]
            tid = int(ids[b, k])
            exp_r += -(row[tid] - torch.logsumexp(row[31744:32000], 0)).item()
            exp_f += -(row[tid] - torch.logsumexp(row, 0)).item()
    assert restricted.item() == pytest.approx(exp_r / 14, rel=1e-5)
    assert full.item() == pytest.approx(exp_f / 14, rel=1e-5)
    assert restricted <= full
    with pytest.raises(ValueError, match="action token ids"):
        F.action_token_cross_entropy(logits, torch.zeros(2, 7, dtype=torch.long))


def test_sft_token_nll_with_step_mask():
    lp = torch.log(torch.tensor([[0.5] * 7, [0.1] * 7]))
    assert F.sft_token_nll(lp, torch.tensor([True, False])).item() == pytest.approx(math.log(2))
