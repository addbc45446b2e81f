"""Torch's thread count around envs that change it (TorchRL's ParallelEnv) and around runs."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.helpers import SMALL_TRAIN
from vla_torchrl.config.load import compose_config
from vla_torchrl.utils.threads import keep_torch_threads, torch_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_torch_threads_sets_and_restores_and_refuses_zero(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == two_threads
    with torch_threads(None):
        assert torch.get_num_threads() == two_threads
    with pytest.raises(ValueError, match="torch_threads=0 must be >= 1"), torch_threads(0):
        pass


def test_a_parallel_env_lowers_the_thread_count_and_keep_torch_threads_restores_it(two_threads):
    """The TorchRL behaviour the training loop works around, on a real ParallelEnv: once its 2
    workers start, this process is at max(1, 2 - 2) = 1 thread while it is open."""
    from torchrl.envs import ParallelEnv

    from vla_torchrl.envs.toy import make_toy_env

    make = functools.partial(make_toy_env, 1, seed=0, image_size=8, max_steps=2)
    env = ParallelEnv(2, make, serial_for_single=False)
    try:
        with keep_torch_threads():
            env.reset()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == two_threads
        env.reset()  # still open, still started: the count stays where it was put back
        assert torch.get_num_threads() == two_threads
    finally:
        env.close()


def _lowering(make):
    """``make`` whose env, once built, leaves the process on 1 thread, as a started
    ParallelEnv does (shown for real above)."""

    def made(*args, **kwargs):
        env = make(*args, **kwargs)
        torch.set_num_threads(1)
        return env

    return made


def test_rl_updates_and_the_caller_keep_their_threads_when_the_envs_lower_them(
    tmp_path, monkeypatch, two_threads
):
    import vla_torchrl.training.loop as loop
    import vla_torchrl.training.periodic_eval as periodic_eval

    seen = []
    real_update = loop.rl_update

    def counted_update(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_update(*args, **kwargs)

    monkeypatch.setattr(loop, "_make_env", _lowering(loop._make_env))
    monkeypatch.setattr(periodic_eval, "make_recipe_env", _lowering(periodic_eval.make_recipe_env))
    monkeypatch.setattr(loop, "rl_update", counted_update)
    cfg = compose_config(
        [
            *SMALL_TRAIN,
            "collector.total_env_steps=48",
            "collector.eval_every=16",
            "collector.eval_episodes=2",
            "checkpoint_every=0",
            f"run_dir={tmp_path}",
        ],
        config_name="train_cpu",
    )
    loop.train(cfg)
    assert seen == [two_threads] * 3  # every update, also those after an evaluation
    assert torch.get_num_threads() == two_threads  # the caller's count after the run


def test_periodic_evaluation_gives_training_its_threads_back(monkeypatch, two_threads):
    import vla_torchrl.training.periodic_eval as periodic_eval
    from vla_torchrl.training.policy import build_policy_from_config

    monkeypatch.setattr(periodic_eval, "make_recipe_env", _lowering(periodic_eval.make_recipe_env))
    cfg = compose_config(
        [*SMALL_TRAIN, "collector.eval_episodes=2", "algo=sft"], config_name="train_cpu"
    )
    evaluation = periodic_eval.PeriodicEvaluation(
        cfg, build_policy_from_config(cfg.model, cfg.algo)
    )
    try:
        for _ in range(2):  # the env is built at the first call and kept for the second
            out = evaluation()
            assert out["eval/episodes"] == 2
            assert torch.get_num_threads() == two_threads
    finally:
        evaluation.close()
