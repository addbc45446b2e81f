"""Evaluation episodes are the same scenes for every policy (issue 14, tenth session).

``run_episodes`` used to let an env that finished early (a success) auto-reset inside the round;
that used up an episode id, so a policy that succeeds often played other scenes in later rounds
than one that never succeeds (46-49 of 64 ManiSkill episodes were shared by two policies).
"""

from __future__ import annotations

import torch

from vla_torchrl.config.load import compose_config
from vla_torchrl.envs.episodes import run_episodes
from vla_torchrl.keys import ACTION_KEY
from vla_torchrl.training.environments import make_recipe_env

ENVS, STEPS, ROUNDS = 4, 8, 3


def _episodes(policy_kind: str) -> list[dict]:
    cfg = compose_config(
        [f"env.num_envs={ENVS}", f"env.max_episode_steps={STEPS}", "env.width=16", "env.height=16"],
        config_name="train_cpu",
    )
    env = make_recipe_env(cfg.env, seed=0, device="cpu")
    base = env
    while hasattr(base, "base_env"):
        base = base.base_env
    gen = torch.Generator().manual_seed(0)

    def policy(td):
        if policy_kind == "oracle":  # reaches its corner in a few steps: terminates early
            action = base.oracle_action()
        else:  # never succeeds: every episode runs to the step limit
            action = torch.rand(ENVS, 7, generator=gen) * 0.02 - 0.01
        td.set(ACTION_KEY, action.reshape(td.batch_size + (7,)).to(td.device))
        return td

    try:
        env.set_seed(0)
        return run_episodes(env, policy, episodes=ENVS * ROUNDS, max_steps=STEPS)
    finally:
        env.close()


def test_a_policy_that_succeeds_early_plays_the_same_episode_ids():
    oracle, idle = _episodes("oracle"), _episodes("idle")
    # the premise: the oracle ends episodes before the step limit, the idle policy never does
    assert sum(r["success"] for r in oracle) >= ENVS and not any(r["success"] for r in idle)
    assert min(r["length"] for r in oracle) < STEPS
    assert all(r["length"] == STEPS for r in idle)
    want = list(range(ENVS * ROUNDS))  # round r: ids r*B .. r*B+B-1, one per env
    assert sorted(r["episode_id"] for r in oracle) == want
    assert sorted(r["episode_id"] for r in idle) == want
