"""Advantage modules on collector-shaped rollouts."""

from __future__ import annotations

import pytest
import torch
from objectives_mocks import MockValue, make_rollout
from torchrl.objectives.value import GAE

from vla_torchrl.keys import (
    ADVANTAGE_KEY,
    EPISODE_ID_KEY,
    STATE_KEY,
    VALUE_KEY,
    VALUE_TARGET_KEY,
    next_key,
)
from vla_torchrl.objectives import GAEAdvantage, GroupRelativeAdvantage
from vla_torchrl.objectives import functional as F


def _loop_gae(td, v_fn, gamma, lmbda):
    """Eq. (2) by hand, evaluating V on every root and every next observation."""
    b, t = td.batch_size
    r = td["next", "reward"].squeeze(-1)
    d = td["next", "done"].squeeze(-1)
    term = td["next", "terminated"].squeeze(-1)
    v = v_fn(td[STATE_KEY])
    nv = v_fn(td["next", STATE_KEY])
    adv = torch.zeros(b, t)
    for i in range(b):
        for s in range(t):
            total, coef = 0.0, 1.0
            for k in range(s, t):
                boot = 0.0 if term[i, k] else gamma * nv[i, k]
                total += coef * (r[i, k] + boot - v[i, k])
                if d[i, k]:
                    break
                coef *= gamma * lmbda
            adv[i, s] = total
    return adv, v


@pytest.mark.parametrize("gamma,lmbda", [(0.99, 0.95), (1.0, 1.0)])
def test_gae_module_evaluates_only_needed_next_states(rollout, gamma, lmbda):
    vnet = MockValue()
    out = GAEAdvantage(gamma=gamma, lmbda=lmbda, value_network=vnet)(rollout)

    def v_fn(x):
        return (x * vnet.w).sum(-1)

    exp_adv, exp_v = _loop_gae(rollout, v_fn, gamma, lmbda)
    torch.testing.assert_close(out[ADVANTAGE_KEY].squeeze(-1), exp_adv, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out[VALUE_TARGET_KEY].squeeze(-1), exp_adv + exp_v, atol=1e-5, rtol=0
    )
    # 24 root values + next values only at: env 1 truncated t=3, last step of envs 0, 1, 2
    assert vnet.rows == 24 + 4


def test_gae_module_matches_torchrl_gae_with_stored_next_values(rollout):
    vnet = MockValue()
    rollout = vnet(rollout)
    rollout.set("next", vnet(rollout.get("next")))
    ours = GAEAdvantage(gamma=0.9, lmbda=0.8)(rollout.clone())
    ref = GAE(gamma=0.9, lmbda=0.8, value_network=None)(rollout.clone())
    torch.testing.assert_close(ours[ADVANTAGE_KEY], ref["advantage"])
    torch.testing.assert_close(ours[VALUE_TARGET_KEY], ref["value_target"])


def test_gae_module_set_keys_and_missing_values_error(rollout):
    vnet = MockValue()
    rollout = vnet(rollout)
    rollout.set("next", vnet(rollout.get("next")))
    rollout.rename_key_(VALUE_KEY, "v")
    rollout.rename_key_(("next", VALUE_KEY), ("next", "v"))
    mod = GAEAdvantage(value_network=None).set_keys(value="v", advantage="a")
    out = mod(rollout.clone())
    assert "a" in out and ADVANTAGE_KEY not in out
    with pytest.raises(KeyError, match="value_network"):
        GAEAdvantage()(rollout.exclude("v", ("next", "v")))
    with pytest.raises(KeyError, match=r"\('next', 'v'\)"):
        mod(rollout.exclude(("next", "v")))
    with pytest.raises(ValueError, match="not a key"):
        mod.set_keys(valu="x")


def test_gae_module_truncation_bootstraps_from_final_observation():
    # one env, truncated at t=0: A_0 = r_0 + gamma V(final obs) - V(s_0), not V(reset obs)
    reward = torch.tensor([[0.0, 0.0]])
    done = torch.tensor([[True, False]])
    td = make_rollout(reward, done, torch.zeros(1, 2, dtype=torch.bool))
    vnet = MockValue()
    out = GAEAdvantage(gamma=0.5, lmbda=1.0, value_network=vnet)(td)

    def v(x):
        return float((x * vnet.w).sum())

    exp0 = 0.5 * v(td["next", STATE_KEY][0, 0]) - v(td[STATE_KEY][0, 0])
    assert out[ADVANTAGE_KEY][0, 0, 0].item() == pytest.approx(exp0, abs=1e-6)
    assert v(td["next", STATE_KEY][0, 0]) != pytest.approx(v(td[STATE_KEY][0, 1]))


@pytest.mark.parametrize("mode", ["process", "whole"])
def test_group_relative_module(rollout, mode):
    done = rollout[next_key("done")].squeeze(-1)
    r = rollout[next_key("reward")].squeeze(-1)
    # GRPO: one group
    out = GroupRelativeAdvantage(mode=mode)(rollout.clone())
    exp = F.group_relative_advantage(r, done=done, mode=mode)
    torch.testing.assert_close(out[ADVANTAGE_KEY].squeeze(-1), exp)
    # GRPO(s): groups from the per-step episode id
    out = GroupRelativeAdvantage(mode=mode, group_key=EPISODE_ID_KEY)(rollout.clone())
    exp = F.group_relative_advantage(r, group=rollout[EPISODE_ID_KEY], done=done, mode=mode)
    torch.testing.assert_close(out[ADVANTAGE_KEY].squeeze(-1), exp)


def test_group_relative_module_hand_worked():
    # two trajectories of one group, whole-reward form: R_w = {0, 1, 0, 0}, mean 0.25, std 0.5
    reward = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    done = torch.tensor([[False, True], [False, True]])
    td = make_rollout(reward, done, done)
    out = GroupRelativeAdvantage(mode="whole")(td)
    torch.testing.assert_close(
        out[ADVANTAGE_KEY].squeeze(-1), torch.tensor([[1.0, 1.5], [-1.0, -0.5]])
    )
