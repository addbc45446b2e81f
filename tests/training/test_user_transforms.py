"""``env.transforms``: user TorchRL transforms appended to the recipes' env (issue 16)."""

from __future__ import annotations

import pytest
import torch

from vla_torchrl.config.load import compose_config
from vla_torchrl.errors import ConfigError
from vla_torchrl.training.environments import make_recipe_env

BASE = ["env.num_envs=2", "env.width=16", "env.height=16", "env.max_episode_steps=4"]


def _rewards(*overrides):
    cfg = compose_config([*BASE, *overrides], config_name="train_cpu")
    env = make_recipe_env(cfg.env, seed=0)
    torch.manual_seed(0)
    actions = torch.rand(4, 2, 7) * 2 - 1
    td = env.reset()
    rewards = []
    for t in range(4):
        td.set("action", actions[t])
        td = env.step(td)
        rewards.append(td["next", "reward"].clone())
        td = td["next"]
    env.close()
    return torch.stack(rewards), env


def test_user_transform_is_appended_and_applied():
    plain, _ = _rewards()
    scaled, env = _rewards(
        "env.transforms=[{_target_:torchrl.envs.RewardScaling,loc:1.0,scale:2.0}]"
    )
    assert type(env.transform[-1]).__name__ == "RewardScaling"
    torch.testing.assert_close(scaled, 1.0 + 2.0 * plain)


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ("env.transforms=[{loc:1.0}]", "must be a mapping with a _target_"),
        ("env.transforms=[{_target_:torchrl.envs.NoSuchTransform}]", "cannot be built"),
        ("env.transforms=[{_target_:builtins.dict}]", "not a torchrl.envs.Transform"),
    ],
)
def test_bad_transform_specs_are_config_errors(override, phrase):
    with pytest.raises(ConfigError, match=phrase):
        cfg = compose_config([*BASE, override], config_name="train_cpu")
        make_recipe_env(cfg.env, seed=0)
