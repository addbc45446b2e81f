"""Issue 15 item 2: GRPO / GRPO(s) / TPO compare whole trajectories only.

* fixed-length collection (``collector.episodes=fixed``, the default for those algorithms):
  success is recorded but does not end an episode, so a rollout holds exactly one episode per env
  (the reference run's 80-step episodes);
* a trajectory the rollout's end cut off (neither terminated nor at the step limit) never enters a
  GRPO group or a TPO pair: hand cases with the expected numbers computed by plain loops.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tensordict import TensorDict

from tests.helpers import SMALL_TRAIN
from vla_torchrl.config.load import compose_config
from vla_torchrl.config.train_schema import episode_mode, validate
from vla_torchrl.envs.episodes import unfinished_step_mask
from vla_torchrl.errors import ConfigError
from vla_torchrl.keys import (
    ADVANTAGE_KEY,
    DONE_KEY,
    EPISODE_ID_KEY,
    IMAGE_KEY,
    REWARD_KEY,
    next_key,
)
from vla_torchrl.training.environments import make_recipe_env
from vla_torchrl.training.loop import _make_env, make_objective, train
from vla_torchrl.training.policy import build_policy_from_config
from vla_torchrl.training.update import rl_update
from vla_torchrl.utils import seed_everything
from vla_torchrl.utils.distributed import DistInfo

INFO = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
T = 4
# row 0: an episode that succeeds at step 2 (return 1.2), then a 1-step fragment cut by the
# rollout's end; row 1: an episode of 4 steps, no reward, ended by the step limit
REWARD = [[0.0, 0.1, 1.1, 0.0], [0.0, 0.0, 0.0, 0.0]]
DONE = [[False, False, True, False], [False, False, False, True]]


def _cfg(algo: str, *extra: str):
    group = ["algo.group_size=1"] if algo.startswith("grpo") else []
    return compose_config(
        [
            f"algo={algo}",
            "env.num_envs=2",
            f"env.max_episode_steps={T}",
            f"collector.steps_per_env={T}",
            "env.width=16",
            "env.height=16",
            "optim.minibatch_size=8",
            "optim.grad_accum_steps=1",
            "model.finetune=full",
            *group,
            *extra,
        ],
        config_name="train_cpu",
    )


def _hand_rollout(cfg, bundle):
    """A real toy rollout of the tiny policy with the hand case's rewards and ends."""
    env = make_recipe_env(cfg.env, seed=0, device="cpu")
    with torch.no_grad():
        rollout = env.rollout(T, bundle.actor, break_when_any_done=False)
    env.close()
    rollout.set(next_key(REWARD_KEY), torch.tensor(REWARD)[..., None])
    rollout.set(next_key(DONE_KEY), torch.tensor(DONE)[..., None])
    return rollout


def test_unfinished_step_mask_hand_case():
    td = TensorDict({"next": {"done": torch.tensor(DONE)[..., None]}}, [2, T])
    assert unfinished_step_mask(td).tolist() == [[False, False, False, True], [False] * 4]


def _whole_grpo_by_hand(rewards, dones):
    """Eq. (5)-(6) by plain loops over the FINISHED trajectories only."""
    trajectories = []
    for row, (rs, ds) in enumerate(zip(rewards, dones)):
        current = []
        for t, (r, d) in enumerate(zip(rs, ds)):
            current.append((row, t, r))
            if d:
                trajectories.append(current)
                current = []
        # what is left in `current` was cut by the rollout's end: not a trajectory
    pool = [r for traj in trajectories for _, _, r in traj]
    mean = sum(pool) / len(pool)
    std = math.sqrt(sum((r - mean) ** 2 for r in pool) / (len(pool) - 1))
    adv = {}
    for traj in trajectories:
        for i, (row, t, _) in enumerate(traj):
            adv[(row, t)] = sum((r - mean) / std for _, _, r in traj[i:])
    return adv


def test_grpo_leaves_a_cut_fragment_out_of_the_group():
    cfg = _cfg("grpo", "algo.grpo_mode=whole", "optim.verify_steps=false")  # counts loss calls
    seed_everything(0)
    bundle = build_policy_from_config(cfg.model, cfg.algo, lr=cfg.optim.lr, device="cpu")
    _, advantage = make_objective(cfg, bundle)
    rollout = _hand_rollout(cfg, bundle)
    seen = []
    weight = torch.nn.Parameter(torch.zeros(()))

    def loss_fn(batch):
        seen.append(batch.clone())
        return TensorDict({"loss_probe": weight * batch.get(ADVANTAGE_KEY).sum()}, [])

    optimizer = torch.optim.SGD([weight], lr=0.1)
    rl_update(cfg, rollout, loss_fn, advantage, optimizer, [weight], INFO)
    expected = _whole_grpo_by_hand(REWARD, DONE)
    assert len(expected) == 7  # 3 + 4 steps; the fragment (row 0, step 3) has none
    # the advantages of the rollout: hand values where finished, 0 for the fragment
    adv = rollout.get(ADVANTAGE_KEY).squeeze(-1)
    for (row, t), value in expected.items():
        assert adv[row, t].item() == pytest.approx(value, abs=1e-5), (row, t)
    assert adv[0, 3].item() == 0.0
    # ... and the fragment's step never reaches the loss
    batch = torch.cat([b.get(ADVANTAGE_KEY).reshape(-1) for b in seen])
    assert batch.numel() == 7
    assert sorted(batch.tolist()) == pytest.approx(sorted(expected.values()), abs=1e-5)


def test_tpo_counts_no_cut_fragment_as_a_trajectory():
    cfg = _cfg("tpo")
    seed_everything(0)
    bundle = build_policy_from_config(cfg.model, cfg.algo, lr=cfg.optim.lr, device="cpu")
    loss_fn, advantage = make_objective(cfg, bundle)
    rollout = _hand_rollout(cfg, bundle)
    params = list(bundle.trainable_named_parameters().values())
    optimizer = torch.optim.SGD(params, lr=0.0)
    stats = rl_update(cfg, rollout, loss_fn, advantage, optimizer, params, INFO)
    # trajectories: row 0's episode (1.2) and row 1's (0.0): one pair. With the fragment (return
    # 0) as a third trajectory there would be 3 trajectories and 2 pairs.
    assert stats["num_trajectories"] == 2.0
    assert stats["num_pairs"] == 1.0


def test_auto_collects_fixed_length_episodes_for_grpo_and_tpo_only():
    assert episode_mode(_cfg("grpo")) == "fixed"
    assert episode_mode(_cfg("grpo-s")) == "fixed"
    assert episode_mode(_cfg("tpo")) == "fixed"
    assert episode_mode(_cfg("ppo")) == "until_done"
    assert episode_mode(_cfg("ppo", "collector.episodes=fixed")) == "fixed"
    assert episode_mode(_cfg("grpo", "collector.episodes=until_done")) == "until_done"
    # a rollout must hold whole episodes: 6 steps per env is no multiple of 4-step episodes
    with pytest.raises(ConfigError, match="collector.steps_per_env=6 is not a multiple"):
        validate(_cfg("grpo", "collector.steps_per_env=6", "optim.minibatch_size=4"))
    validate(_cfg("grpo", "collector.steps_per_env=8"))  # two whole episodes per env: fine
    validate(_cfg("ppo", "collector.steps_per_env=6", "optim.minibatch_size=4"))
    with pytest.raises(ConfigError, match="collector.episodes='sometimes' is unknown"):
        _cfg("grpo", "collector.episodes=sometimes")


def _oracle_rollout(terminate_on_success: bool):
    cfg = _cfg("grpo", "env.max_episode_steps=8", "collector.steps_per_env=8")
    env = make_recipe_env(
        cfg.env, seed=3, device="cpu", num_envs=3, terminate_on_success=terminate_on_success
    )
    cfg_steps = 2 * cfg.env.max_episode_steps
    rollout = env.rollout(cfg_steps, lambda td: td.set("action", env.oracle_action()),
                          break_when_any_done=False)  # fmt: skip
    env.close()
    return rollout


def test_success_is_recorded_without_ending_the_episode():
    ended = _oracle_rollout(True)
    fixed = _oracle_rollout(False)
    done_early = ended.get(next_key(DONE_KEY)).squeeze(-1)
    done = fixed.get(next_key(DONE_KEY)).squeeze(-1)
    # the oracle succeeds within 5 of the 8 steps: terminated early, > 2 episodes per row
    assert (done_early.sum(-1) > 2).all()
    # fixed length: an episode ends exactly at steps 8 and 16 of every row, by the step limit
    assert done.tolist() == [([False] * 7 + [True]) * 2] * 3
    assert not fixed.get(next_key("terminated")).any()
    assert fixed.get(next_key("truncated")).squeeze(-1)[:, [7, 15]].all()
    # success is recorded (the metric latches) and pays its reward once per episode
    success = fixed.get(next_key("success")).squeeze(-1)
    assert success[:, [7, 15]].all()
    returns = fixed.get(next_key(REWARD_KEY)).squeeze(-1).reshape(3, 2, 8).sum(-1)
    assert returns == pytest.approx(torch.full((3, 2), 1.2))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "tpo"])
def test_training_collects_one_episode_per_env_per_rollout(tmp_path, algo):
    extra = ["algo.group_size=2"] if algo == "grpo" else []
    cfg = compose_config(
        [*SMALL_TRAIN, f"algo={algo}", "collector.total_env_steps=32", f"run_dir={tmp_path}",
         "model.finetune=full", *extra],
        config_name="train_cpu",
    )  # fmt: skip
    assert episode_mode(cfg) == "fixed"
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    episodes = [r["train/episodes"] for r in records if "train/episodes" in r]
    assert episodes == [4, 4]  # 2 rollouts x 4 envs x exactly one 4-step episode


def _grpo_s_cfg(*extra: str):
    return compose_config(
        [
            "algo=grpo-s",
            "algo.group_size=2",
            "env.num_envs=4",
            "env.max_episode_steps=4",
            "collector.steps_per_env=4",
            "env.width=32",
            "env.height=32",
            "optim.minibatch_size=8",
            "optim.grad_accum_steps=1",
            *extra,
        ],
        config_name="train_cpu",
    )


def _assert_groups_share_starts(env):
    """Two consecutive all-env resets: envs (0, 1) and (2, 3) each see one episode id and one
    first image; the two groups differ; the second reset moves every group to a new episode."""
    seen = []
    for _ in range(2):
        td = env.reset()
        ids, images = td[EPISODE_ID_KEY].tolist(), td[IMAGE_KEY]
        assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
        assert torch.equal(images[0], images[1]) and torch.equal(images[2], images[3])
        assert not torch.equal(images[0], images[2])
        seen.append(ids)
    assert not set(seen[0]) & set(seen[1])


def test_grpo_s_recipe_env_starts_each_group_from_one_state_on_the_toy_backend():
    env = _make_env(_grpo_s_cfg(), torch.device("cpu"), INFO)
    try:
        _assert_groups_share_starts(env)
    finally:
        env.close()
    with pytest.raises(ConfigError, match="set algo.group_size instead"):
        make_recipe_env(_grpo_s_cfg("+env.options.same_start_groups=2").env, seed=0)


@pytest.mark.maniskill
def test_grpo_s_recipe_env_starts_each_group_from_one_state_on_maniskill():
    """issue 15 item 3: algo=grpo-s on the ManiSkill backend (CPU simulation), which the
    training loop refused before."""
    cfg = _grpo_s_cfg(
        "env=maniskill",
        "env.num_envs=4",
        "env.width=32",
        "env.height=32",
        "env.max_episode_steps=4",
        "+env.options.parallel=false",
        "+env.options.asset_source=procedural",
    )
    env = _make_env(cfg, torch.device("cpu"), INFO)
    try:
        _assert_groups_share_starts(env)
    finally:
        env.close()


@pytest.mark.maniskill
def test_grpo_s_on_the_gpu_simulation_is_a_config_error_naming_the_algo_setting():
    cfg = _grpo_s_cfg("env=maniskill", "env.num_envs=4", "+env.options.sim_backend=gpu")
    with pytest.raises(
        ConfigError,
        match=r"algo=grpo-s \(algo.group_size=2\) plays each group from one start: "
        r"same_start_groups=2 is implemented for the CPU simulation only",
    ):
        _make_env(cfg, torch.device("cpu"), INFO)
