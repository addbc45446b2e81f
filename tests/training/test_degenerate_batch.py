"""PPO takes no policy step on a rollout without reward signal, nor in the critic warm-up, and
leaves frozen vision towers alone (issue 14)."""

from __future__ import annotations

import torch

from vla_torchrl.config.load import compose_config
from vla_torchrl.keys import REWARD_KEY, next_key
from vla_torchrl.training.environments import make_recipe_env
from vla_torchrl.training.loop import make_objective
from vla_torchrl.training.policy import build_policy_from_config
from vla_torchrl.training.update import rl_update
from vla_torchrl.utils import seed_everything
from vla_torchrl.utils.distributed import DistInfo

STEPS = 3


def _update(rewards: torch.Tensor | None, *overrides: str, critic_only: bool = False):
    """One PPO update of the tiny model on a 4-env toy rollout whose rewards are replaced."""
    cfg = compose_config(
        [
            "algo=ppo",
            "env.num_envs=4",
            f"env.max_episode_steps={STEPS}",
            f"collector.steps_per_env={STEPS}",
            "env.width=16",
            "env.height=16",
            "optim.minibatch_size=4",
            "optim.grad_accum_steps=3",
            "model.finetune=full",
            "optim.lr=1e-2",
            *overrides,
        ],
        config_name="train_cpu",
    )
    seed_everything(0)
    bundle = build_policy_from_config(cfg.model, cfg.algo, lr=cfg.optim.lr, device="cpu")
    optimizer = torch.optim.AdamW(bundle.param_groups, weight_decay=0.0)
    loss_fn, advantage = make_objective(cfg, bundle)
    env = make_recipe_env(cfg.env, seed=0, device="cpu")
    with torch.no_grad():
        rollout = env.rollout(STEPS, bundle.actor, break_when_any_done=False)
    env.close()
    if rewards is not None:
        rollout.set(next_key(REWARD_KEY), rewards.expand_as(rollout.get(next_key(REWARD_KEY))))
    named = bundle.trainable_named_parameters()
    before = {k: v.detach().clone() for k, v in named.items()}
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    lrs = [g["lr"] for g in optimizer.param_groups]
    stats = rl_update(
        cfg,
        rollout,
        loss_fn,
        advantage,
        optimizer,
        list(named.values()),
        info,
        critic_only=critic_only,
    )
    assert [g["lr"] for g in optimizer.param_groups] == lrs  # the warm-up's lr 0 is undone
    moved = {k for k, v in named.items() if not torch.equal(v, before[k])}
    return stats, moved


def test_all_zero_rewards_give_no_policy_term_and_still_train_the_critic():
    stats, moved = _update(torch.zeros(()))
    assert stats["degenerate_batch"] == 1.0 and stats["steps"] == 1
    # advantages zeroed: the clipped surrogate (Eq. 1) is exactly 0 and so is its gradient; the
    # action head is reached by the policy term only (the shared critic reads h^0 below it),
    # so it stays put, while the value head (and, through it, the shared backbone) learns
    assert stats["loss_objective"] == 0.0
    assert not any("lm_head" in k for k in moved), sorted(moved)
    assert any(k.startswith("critic.") for k in moved)


def test_a_rollout_with_reward_signal_moves_the_policy():
    rewards = torch.zeros(4, STEPS, 1)
    rewards[1, -1] = 1.0  # one success: a real signal
    stats, moved = _update(rewards)
    assert stats["degenerate_batch"] == 0.0
    assert stats["loss_objective"] != 0.0
    assert any("lm_head" in k for k in moved)


def _one_success() -> torch.Tensor:
    rewards = torch.zeros(4, STEPS, 1)
    rewards[1, -1] = 1.0
    return rewards


def test_the_critic_warmup_moves_the_value_head_only():
    stats, moved = _update(_one_success(), critic_only=True)
    assert stats["critic_warmup"] == 1.0 and stats["steps"] == 1
    assert stats["loss_objective"] == 0.0  # advantages zeroed despite the reward signal
    # the value loss reaches the shared backbone too, but that group ran at lr 0
    assert moved and all(k.startswith("critic.") for k in moved), sorted(moved)


def test_frozen_vision_keeps_towers_and_projector_while_the_llm_learns():
    stats, moved = _update(_one_success(), "model.freeze_vision=true")
    assert stats["loss_objective"] != 0.0
    assert any("lm_head" in k for k in moved)
    assert not any("vision_backbone" in k or "projector" in k for k in moved), sorted(moved)
    # control: the same update without the freeze moves them
    _, moved_free = _update(_one_success())
    assert any("vision_backbone" in k for k in moved_free)
    assert any("projector" in k for k in moved_free)


def test_a_detached_critic_trains_its_head_only():
    # all-zero rewards: no policy term, so whatever moves is moved by the value loss
    _, moved = _update(torch.zeros(()), "algo.critic_trains_backbone=false")
    assert moved and all(k.startswith("critic.") for k in moved), sorted(moved)
    # control: the paper's shared critic moves the backbone it reads
    _, moved_shared = _update(torch.zeros(()))
    assert any(k.startswith("policy.language_model") for k in moved_shared), sorted(moved_shared)
