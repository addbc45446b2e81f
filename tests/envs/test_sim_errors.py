"""SimErrorGuard: a simulator exception resets the failing env and voids its episode; the run goes on."""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import ParallelEnv, SerialEnv

from vla_torchrl.envs.sim_errors import (
    SimErrorGuard,
    SimulatorError,
    count_sim_errors,
    guard_sim_errors,
    void_step_mask,
)
from vla_torchrl.envs.toy import ToyReachConfig, ToyReachEnv
from vla_torchrl.keys import (
    DONE_KEY,
    EPISODE_ID_KEY,
    REWARD_KEY,
    SIM_ERROR_KEY,
    TERMINATED_KEY,
    TRUNCATED_KEY,
    next_key,
)

# long episodes (no truncation inside the short rollouts), a target that random actions miss
CONFIG = ToyReachConfig(image_size=16, max_steps=50)


class FlakyToy(ToyReachEnv):
    """The toy env whose step number ``fail_at`` (1-based, counted per instance) raises, and
    every step from ``fail_from`` on."""

    def __init__(self, num_envs=1, *, fail_at=(), fail_from=None, fail_reset=False, **kwargs):
        super().__init__(num_envs, config=CONFIG, **kwargs)
        self.fail_at, self.fail_from, self.fail_reset = set(fail_at), fail_from, fail_reset
        self.steps = 0

    def _step(self, tensordict):
        self.steps += 1
        if self.steps in self.fail_at or (self.fail_from and self.steps >= self.fail_from):
            raise RuntimeError(f"injected simulator failure at step {self.steps}")
        return super()._step(tensordict)

    def _reset(self, tensordict=None, **kwargs):
        if self.fail_reset and self.steps > 0:
            raise RuntimeError("injected reset failure")
        return super()._reset(tensordict, **kwargs)


def _zero_policy(td):
    td.set("action", torch.zeros(*td.batch_size, 7))  # the dot stays put: no episode ends
    return td


def test_transparent_without_errors():
    plain = ToyReachEnv(3, config=CONFIG, seed=4)
    guarded = SimErrorGuard(ToyReachEnv(3, config=CONFIG, seed=4))
    torch.manual_seed(0)
    a = plain.rollout(6, break_when_any_done=False)
    torch.manual_seed(0)
    b = guarded.rollout(6, break_when_any_done=False)
    assert not b[next_key(SIM_ERROR_KEY)].any() and not b[SIM_ERROR_KEY].any()
    b = b.exclude(SIM_ERROR_KEY, next_key(SIM_ERROR_KEY))
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    for key in a.keys(True, True):
        if isinstance(a.get(key), torch.Tensor):
            assert torch.equal(a.get(key), b.get(key)), key


def test_batched_env_error_voids_the_step_and_resets():
    env = SimErrorGuard(FlakyToy(3, fail_at={3}, seed=1))
    td = env.rollout(5, _zero_policy, break_when_any_done=False)
    error = td[next_key(SIM_ERROR_KEY)].squeeze(-1)
    # the whole batch is one simulator: its 3rd step failed for every env
    assert error.tolist() == [[False, False, True, False, False]] * 3
    assert td[next_key(DONE_KEY)].squeeze(-1)[:, 2].all()
    assert td[next_key(TRUNCATED_KEY)].squeeze(-1)[:, 2].all()
    assert not td[next_key(TERMINATED_KEY)].any()
    assert (td[next_key(REWARD_KEY)][:, 2] == 0).all()
    # episodes 0-2 were running; after the error the envs play fresh episodes (ids 3.. : the
    # guard's reset draws 3-5, the collector's reset of the done envs draws 6-8)
    ids = td[EPISODE_ID_KEY]
    assert ids[:, :3].tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    assert ids[:, 3].tolist() == [6, 7, 8] and torch.equal(ids[:, 3], ids[:, 4])
    assert env.num_errors == 1
    assert count_sim_errors(td) == 3
    assert void_step_mask(td)[:, :3].all() and not void_step_mask(td)[:, 3:].any()


def test_only_the_failing_scene_is_reset_in_a_batch_of_guarded_scenes():
    # three single-scene envs, as make_env builds them on the CPU; scene 1 fails at step 2
    fns = [
        functools.partial(
            lambda i: SimErrorGuard(FlakyToy(1, fail_at={2} if i == 1 else (), seed=10 + i)), i
        )
        for i in range(3)
    ]
    env = SerialEnv(3, fns)
    td = env.rollout(4, _zero_policy, break_when_any_done=False)  # batch [3, 1], time 4
    error = td[next_key(SIM_ERROR_KEY)].reshape(3, 4)
    assert error.tolist() == [[False] * 4, [False, True, False, False], [False] * 4]
    done = td[next_key(DONE_KEY)].reshape(3, 4)
    assert done.tolist() == error.tolist()  # no other episode ended
    ids = td[EPISODE_ID_KEY].reshape(3, 4)
    assert ids[0].tolist() == [0] * 4 and ids[2].tolist() == [0] * 4  # untouched episodes
    assert ids[1, :2].tolist() == [0, 0] and ids[1, 2] > 0  # scene 1 started a new one
    void = void_step_mask(td.reshape(3, 4))
    assert void.tolist() == [[False] * 4, [True, True, False, False], [False] * 4]
    env.close()


def test_parallel_env_worker_survives_a_simulator_error():
    # the control: unguarded, the exception kills the worker and with it the batched env
    fns = [functools.partial(FlakyToy, 1, fail_at=(2,) if i == 0 else (), seed=i) for i in range(2)]
    unguarded = ParallelEnv(2, fns, mp_start_method="fork")
    with pytest.raises(RuntimeError, match="worker 0 dead"):
        unguarded.rollout(4, _zero_policy, break_when_any_done=False)
    fns = [
        functools.partial(_guarded_flaky, fail_at=(2,) if i == 0 else (), seed=i) for i in range(2)
    ]
    env = ParallelEnv(2, fns, mp_start_method="fork")
    try:
        td = env.rollout(4, _zero_policy, break_when_any_done=False)
        error = td[next_key(SIM_ERROR_KEY)].reshape(2, 4)
        assert error.tolist() == [[False, True, False, False], [False] * 4]
        assert td[EPISODE_ID_KEY].reshape(2, 4)[1].tolist() == [0] * 4
    finally:
        env.close()


def _guarded_flaky(**kwargs):
    return SimErrorGuard(FlakyToy(1, **kwargs))


def test_broken_simulator_ends_the_run_with_a_clear_error():
    env = SimErrorGuard(FlakyToy(2, fail_from=2), max_consecutive_errors=3)
    with pytest.raises(SimulatorError, match="3 simulator steps in a row failed"):
        env.rollout(10, _zero_policy, break_when_any_done=False)
    assert env.num_errors == 3
    unresettable = SimErrorGuard(FlakyToy(2, fail_at={1}, fail_reset=True), max_reset_attempts=2)
    with pytest.raises(SimulatorError, match="could not be reset in 2 attempts"):
        unresettable.rollout(3, _zero_policy, break_when_any_done=False)


def test_errors_in_a_row_counter_restarts_after_a_good_step():
    env = SimErrorGuard(FlakyToy(1, fail_at={2, 3, 5, 6, 8, 9}), max_consecutive_errors=3)
    td = env.rollout(10, _zero_policy, break_when_any_done=False)
    assert count_sim_errors(td) == env.num_errors == 6


def test_void_step_mask_hand_computed():
    def flags(*rows):
        return torch.tensor(rows)[..., None]

    td = TensorDict(
        {
            "next": {
                # row 0: episodes [0,1], [2,3] (void), [4]; row 1: [0] (void), [1,2,3,4]
                "done": flags([0, 1, 0, 1, 0], [1, 0, 0, 0, 0]).bool(),
                "sim_error": flags([0, 0, 0, 1, 0], [1, 0, 0, 0, 0]).bool(),
            }
        },
        [2, 5],
    )
    assert void_step_mask(td).int().tolist() == [[0, 0, 1, 1, 0], [1, 0, 0, 0, 0]]
    assert count_sim_errors(td) == 2
    no_key = TensorDict({"next": {"done": flags([0, 1])}}, [1, 2])
    assert not void_step_mask(no_key).any() and count_sim_errors(no_key) == 0


def test_guard_sim_errors_wraps_once_and_forwards_attributes():
    env = guard_sim_errors(ToyReachEnv(2, config=CONFIG))
    assert isinstance(env, SimErrorGuard) and guard_sim_errors(env) is env
    assert env.oracle_action().shape == (2, 7)  # the toy env's own method
    with pytest.raises(AttributeError):
        env.no_such_attribute  # noqa: B018


@pytest.mark.maniskill
@pytest.mark.slow
def test_maniskill_scene_error_resets_only_that_scene(monkeypatch):
    from vla_torchrl.envs.builder import make_env
    from vla_torchrl.envs.maniskill.put_on_env import PutOnEnv

    env = make_env(
        "ind", num_envs=2, image_size=(32, 40), parallel=False, asset_source="procedural"
    )
    original = PutOnEnv._step
    calls = {"n": 0}

    def flaky(self, tensordict):
        calls["n"] += 1
        if calls["n"] == 3:  # scene 0's 2nd step (SerialEnv steps scene 0, then scene 1)
            raise RuntimeError("injected PhysX failure")
        return original(self, tensordict)

    monkeypatch.setattr(PutOnEnv, "_step", flaky)
    try:
        td = env.rollout(3, _zero_policy, break_when_any_done=False)
    finally:
        env.close()
    error = td[next_key(SIM_ERROR_KEY)].reshape(2, 3)
    assert error.tolist() == [[False, True, False], [False, False, False]]
    assert td[next_key(DONE_KEY)].reshape(2, 3).tolist() == error.tolist()
    ids = td[EPISODE_ID_KEY].reshape(2, 3)
    assert ids[1].tolist() == [1, 1, 1]  # scene 1 kept its episode (ids i, i + 2, ...)
    assert ids[0, :2].tolist() == [0, 0] and ids[0, 2] != 0
