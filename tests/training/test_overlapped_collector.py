"""OverlappedCollector: the rollouts of a plain loop per env group, with one group's policy
running while another group steps; collector.env_groups validated and wired into training."""

from __future__ import annotations

import threading

import pytest
import torch
from tensordict.nn import TensorDictModule
from torchrl.envs.utils import ExplorationType, exploration_type

from tests.helpers import SMALL_TRAIN
from vla_torchrl.config.load import compose_config
from vla_torchrl.envs.toy import ToyReachConfig, ToyReachEnv
from vla_torchrl.errors import ConfigError
from vla_torchrl.keys import ACTION_KEY, IMAGE_KEY
from vla_torchrl.training.overlapped_collector import OverlappedCollector


def _steer(image: torch.Tensor) -> torch.Tensor:
    """A deterministic policy of the frame: dims 0-1 from the red / green means, gripper open."""
    mean = image.float().mean(dim=(-3, -2)) / 255.0  # [B, 3]
    action = torch.zeros(*image.shape[:-3], 7)
    action[..., 0] = torch.tanh(4 * (mean[..., 0] - mean[..., 2]))
    action[..., 1] = torch.tanh(4 * (mean[..., 1] - mean[..., 2]))
    action[..., 6] = 1.0
    return action


def _policy():
    return TensorDictModule(_steer, in_keys=[IMAGE_KEY], out_keys=[ACTION_KEY])


def _groups():
    # short episodes: envs reset inside a rollout
    config = ToyReachConfig(image_size=12, max_steps=3)
    return [ToyReachEnv(2, config=config, seed=1), ToyReachEnv(3, config=config, seed=2)]


def _plain_rollout(env, policy, steps):
    """The reference: reset, then policy and step_and_maybe_reset, one env at a time."""
    td = env.reset()
    out = []
    for _ in range(steps):
        stepped, td = env.step_and_maybe_reset(policy(td))
        out.append(stepped)
    return torch.stack(out, dim=1)


def test_each_rollout_is_a_plain_loops_per_group_concatenated():
    collector = OverlappedCollector(_groups(), _policy(), steps_per_env=7)
    reference = _groups()
    try:
        batches = iter(collector)
        for _ in range(2):  # the second rollout resets again and goes on with new episodes
            got = next(batches)
            want = torch.cat([_plain_rollout(env, _policy(), 7) for env in reference], dim=0)
            assert got.batch_size == torch.Size([5, 7])
            assert set(got.keys(True, True)) == set(want.keys(True, True))
            for key in want.keys(True, True):
                if isinstance(want[key], torch.Tensor):
                    torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=str(key))
            assert bool(got["next", "done"].any())  # episodes ended (and reset) inside it
    finally:
        collector.shutdown()
    assert all(env.is_closed for env in collector.groups)


class _HandshakeEnv(ToyReachEnv):
    """A toy env whose first ``waits`` steps announce themselves and wait for the policy to
    run meanwhile (a collector that steps and acts in turn would time out here)."""

    def __init__(self, *args, stepping, policy_ran, waits, **kwargs):
        super().__init__(*args, **kwargs)
        self._stepping, self._policy_ran, self._waits = stepping, policy_ran, waits
        self.overlapped = []

    def _step(self, tensordict):
        if len(self.overlapped) < self._waits:
            self._policy_ran.clear()
            self._stepping.set()
            self.overlapped.append(self._policy_ran.wait(timeout=5))
            self._stepping.clear()
        return super()._step(tensordict)


def test_the_policy_of_one_group_runs_while_the_other_group_steps():
    stepping, policy_ran = threading.Event(), threading.Event()
    seen = []

    def act(image):
        seen.append((torch.is_grad_enabled(), exploration_type()))
        # group 0's policy after its first step (the first acts on its reset, while group 1
        # resets): group 1 is stepping meanwhile
        if image.shape[0] == 1 and len(seen) > 2:
            assert stepping.wait(timeout=5), "group 1 was not stepping during group 0's policy"
            policy_ran.set()
        return _steer(image)

    config = ToyReachConfig(image_size=12, max_steps=50)
    # group 1's steps 0-2 overlap group 0's policy; its last step (3) has none after it
    waiting = _HandshakeEnv(2, config=config, stepping=stepping, policy_ran=policy_ran, waits=3)
    collector = OverlappedCollector(
        [ToyReachEnv(1, config=config), waiting],
        TensorDictModule(act, in_keys=[IMAGE_KEY], out_keys=[ACTION_KEY]),
        steps_per_env=4,
    )
    try:
        rollout = collector.rollout()
    finally:
        collector.shutdown()
    assert rollout.batch_size == torch.Size([3, 4])
    assert waiting.overlapped == [True, True, True]
    assert seen and all(s == (False, ExplorationType.RANDOM) for s in seen)


def test_bad_groups_and_lengths_are_refused():
    with pytest.raises(ValueError, match="at least one env group"):
        OverlappedCollector([], _policy(), steps_per_env=2)
    with pytest.raises(ValueError, match="steps_per_env=0"):
        OverlappedCollector([ToyReachEnv(1)], _policy(), steps_per_env=0)


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["collector.env_groups=2"], "the toy env steps in the training process"),
        (
            ["env=maniskill_cpu", "env.num_envs=6", "collector.env_groups=4"],
            "does not divide env.num_envs=6",
        ),
        (
            ["env=maniskill_cpu", "collector.env_groups=2", "collector.eval_env=training"],
            "use collector.eval_env=own",
        ),
        (["collector.env_groups=0"], "collector.env_groups=0 must be >= 1"),
    ],
)
def test_env_groups_that_cannot_overlap_are_refused_with_the_reason(overrides, names):
    from vla_torchrl.config.train_schema import validate

    with pytest.raises(ConfigError, match="collector.env_groups") as err:
        cfg = compose_config([*SMALL_TRAIN, *overrides], config_name="train_cpu")
        validate(cfg, tasks=["ind", "reach-corner"])
    assert names in str(err.value)


@pytest.mark.maniskill
@pytest.mark.slow
def test_a_ppo_run_with_env_groups_collects_through_the_overlapped_collector(tmp_path, monkeypatch):
    """collector.env_groups=2 on ManiSkill (in-process scenes here, to stay cheap): the run
    collects every rollout with the OverlappedCollector, the groups seeded per iteration as
    one env of their scenes, and ends with its policy saved."""
    import json

    import vla_torchrl.training.overlapped_collector as overlapped
    from vla_torchrl.training.loop import train

    rollouts, seeds = [], []
    real_rollout = overlapped.OverlappedCollector.rollout

    def counted(self):
        rollouts.append([tuple(env.batch_size) for env in self.groups])
        return real_rollout(self)

    monkeypatch.setattr(overlapped.OverlappedCollector, "rollout", counted)
    cfg = compose_config(
        [
            *SMALL_TRAIN,
            "env=maniskill",
            "env.num_envs=2",
            "env.width=32",
            "env.height=32",
            "+env.options.parallel=false",
            "+env.options.asset_source=procedural",
            "collector.env_groups=2",
            "collector.total_env_steps=16",
            "collector.eval_every=0",
            "optim.minibatch_size=4",
            f"run_dir={tmp_path}",
        ],
        config_name="train_cpu",
    )
    from torchrl.envs import SerialEnv

    real_seed = SerialEnv.set_seed

    def seed(self, value, *args, **kwargs):
        returned = real_seed(self, value, *args, **kwargs)
        seeds.append((id(self), value, returned))
        return returned

    monkeypatch.setattr(SerialEnv, "set_seed", seed)
    policy = train(cfg)
    assert rollouts == [[(1,), (1,)], [(1,), (1,)]]
    # each iteration seeds group 0 with its own seed and group 1 with the seed group 0 returns
    # (as one env of both scenes seeds its second scene)
    (g0, s1, r1), (g1, t1, _), (h0, s2, r2), (h1, t2, _) = seeds[-4:]
    assert (g0, g1) == (h0, h1) and g0 != g1
    assert t1 == r1 and t2 == r2 and s1 != s2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/iteration" in r] == [8, 16]
    assert (policy / "policy.json").is_file()
