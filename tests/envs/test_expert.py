"""The scripted expert, the idle-action filter and the task's reward/metric contract.

The reward contract is checked against a plain re-computation of the paper's potential
(Sec. 5.1: 0.1 grasped, +0.1 held 5 consecutive steps, +1.0 success; return = final potential)
from the simulator's instantaneous grasp flag, step by step.

Measured expert success (WidowX-250S, 80-step limit, seed 0, episodes 0-49 of ``ind``, CPU):
see ``test_expert_solves_most_of_50_ind_episodes`` (run with ``VLA_TORCHRL_LONG_TESTS=1``).
"""

from __future__ import annotations

import os

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.keys import (
    ACTION_KEY,
    CONTINUOUS_GRASP_KEY,
    DONE_KEY,
    EPISODE_ID_REQUEST_KEY,
    GRASPED_KEY,
    REWARD_KEY,
    SUCCESS_KEY,
    TERMINATED_KEY,
    TRUNCATED_KEY,
)

SIZE = (32, 40)


# -- idle-action filter (no scene) -------------------------------------------------------------
def test_idle_filter_uses_the_papers_thresholds():
    from vla_torchrl.envs.demos import is_idle

    a = torch.zeros(6, 7)
    a[:, 6] = 1.0
    a[1, 0] = 0.0099  # translation just under 1 cm, same gripper: idle
    a[2, 1] = 0.0101  # just over 1 cm: kept
    a[3, 3:6] = torch.tensor([0.03, 0.03, 0.03])  # |euler| = 0.052 < 0.06: idle
    a[4, 3:6] = torch.tensor([0.04, 0.04, 0.0])  # |euler| = 0.0566 < 0.06, but gripper closes
    a[4, 6] = -1.0
    a[5, 3] = 0.061  # rotation over 0.06: kept
    assert is_idle(a).tolist() == [False, True, False, True, False, False]


def test_idle_filter_is_a_per_step_rule_a_plain_loop_agrees():
    from vla_torchrl.envs.demos import is_idle

    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 7, generator=g) * 0.02
    a[:, 6] = torch.randint(0, 2, (200,), generator=g).float() * 2 - 1
    expected = [False]
    for t in range(1, 200):
        still = (
            sum(float(x) ** 2 for x in a[t, :3]) ** 0.5 < 0.01
            and sum(float(x) ** 2 for x in a[t, 3:6]) ** 0.5 < 0.06
        )
        expected.append(still and (a[t, 6] >= 0) == (a[t - 1, 6] >= 0))
    assert is_idle(a).tolist() == expected
    assert 0 < sum(expected) < 200  # the sample exercises both outcomes


# -- ManiSkill scenes ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env():
    from vla_torchrl.envs.builder import make_env

    env = make_env("ind", num_envs=1, image_size=SIZE, parallel=False, asset_source="procedural")
    yield env
    env.close()


def _reset(env, episode: int) -> TensorDict:
    return env.reset(TensorDict({EPISODE_ID_REQUEST_KEY: torch.tensor([episode])}, [1]))


def _instant_grasp(env) -> bool:
    task = env._envs[0].maniskill_env
    return bool(task.evaluate()["is_grasped"][0])


def _play(env, episode: int, policy, steps: int = 80):
    """Per-step records (reward, flags, instantaneous grasp) of one episode under ``policy``."""
    td = _reset(env, episode)
    records = []
    for t in range(steps):
        td.set(ACTION_KEY, policy(t).reshape(1, 7))
        nxt = env.step(td).get("next")
        rec = {k: bool(nxt.get(k).reshape(-1)[0]) for k in (GRASPED_KEY, CONTINUOUS_GRASP_KEY)}
        rec.update(
            {k: bool(nxt.get(k).reshape(-1)[0]) for k in (SUCCESS_KEY, DONE_KEY, TERMINATED_KEY)}
        )
        rec[TRUNCATED_KEY] = bool(nxt.get(TRUNCATED_KEY).reshape(-1)[0])
        rec["reward"] = float(nxt.get(REWARD_KEY).reshape(-1)[0])
        rec["grasp_now"] = _instant_grasp(env)
        records.append(rec)
        if rec[DONE_KEY]:
            break
        td = nxt
    return records


def _expected_potentials(records) -> list[float]:
    """The paper's potential after each step, from the instantaneous grasp flag (plain loop)."""
    held = grasped = success = False
    run = 0
    out = []
    for r in records:
        run = run + 1 if r["grasp_now"] else 0
        grasped = grasped or r["grasp_now"]
        held = held or run >= 5
        success = success or r[SUCCESS_KEY]
        out.append(0.1 * grasped + 0.1 * held + 1.0 * success)
    return out


@pytest.mark.maniskill
def test_expert_episode_follows_the_reward_contract(env):
    from vla_torchrl.envs.maniskill.expert import ExpertPolicy

    expert = ExpertPolicy(env)
    records = _play(env, 1, lambda t: expert.actions())
    rewards = [r["reward"] for r in records]
    # grasp: the first step with an instantaneous grasp pays 0.1 and sets `grasped`
    first = next(t for t, r in enumerate(records) if r["grasp_now"])
    assert rewards[first] == pytest.approx(0.1, abs=1e-6)
    assert records[first][GRASPED_KEY] and not any(r[GRASPED_KEY] for r in records[:first])
    # held 5 consecutive steps: +0.1 and `continuous_grasp` on exactly the 5th such step
    run, held = 0, None
    for t, r in enumerate(records):
        run = run + 1 if r["grasp_now"] else 0
        if run == 5:
            held = t
            break
    assert held is not None
    assert rewards[held] == pytest.approx(0.1, abs=1e-6)
    assert records[held][CONTINUOUS_GRASP_KEY]
    assert not any(r[CONTINUOUS_GRASP_KEY] for r in records[:held])
    # place: +1.0 on the success step, which terminates (not truncates) the episode
    last = records[-1]
    assert last[SUCCESS_KEY] and last[TERMINATED_KEY] and not last[TRUNCATED_KEY]
    assert rewards[-1] == pytest.approx(1.0, abs=1e-6)
    # every step's reward is the potential difference; the return is the final potential
    phi = _expected_potentials(records)
    diffs = [phi[0]] + [b - a for a, b in zip(phi[:-1], phi[1:])]
    assert rewards == pytest.approx(diffs, abs=1e-6)
    assert sum(rewards) == pytest.approx(1.2, abs=1e-5)


@pytest.mark.maniskill
def test_scripted_miss_returns_zero(env):
    # close the gripper high above the table and wander: nothing is ever grasped
    def miss(t):
        sign = 1.0 if (t // 5) % 2 == 0 else -1.0
        return torch.tensor([0.0, 0.02 * sign, 0.01 if t < 5 else 0.0, 0, 0, 0, -1.0])

    records = _play(env, 2, miss, steps=20)
    assert len(records) == 20
    assert sum(r["reward"] for r in records) == 0.0
    assert not any(r[GRASPED_KEY] or r[CONTINUOUS_GRASP_KEY] or r[SUCCESS_KEY] for r in records)
    assert not any(r[TERMINATED_KEY] for r in records)


@pytest.mark.maniskill
def test_expert_solves_a_handful_of_ind_episodes(env):
    from vla_torchrl.envs.maniskill.expert import ExpertPolicy

    expert = ExpertPolicy(env)
    results = []
    for episode in range(3, 7):
        records = _play(env, episode, lambda t: expert.actions())
        results.append(records[-1][SUCCESS_KEY] and any(r["grasp_now"] for r in records))
    assert sum(results) >= 3, results


@pytest.mark.maniskill
def test_camera_projection_is_maniskills_and_lands_on_the_objects(env):
    """``camera_projection`` equals ManiSkill's own camera matrices (the independent reference),
    and the projected object and receptacle centres fall on foreground pixels of the frame."""
    import sapien

    from vla_torchrl.envs.maniskill.expert import ExpertPolicy, maniskill_tasks
    from vla_torchrl.envs.maniskill.scene import CAMERA_UID, camera_projection, project_to_image
    from vla_torchrl.keys import FOREGROUND_MASK_KEY

    td = _reset(env, 4)
    (task,) = maniskill_tasks(env)
    params = task.scene.sensors[CAMERA_UID].get_params()
    root = task.agent.robot.pose.raw_pose[0].double().numpy()
    root_pose = sapien.Pose(root[:3], root[3:])
    reference = params["intrinsic_cv"][0].double() @ params["extrinsic_cv"][0].double()
    reference = reference @ torch.as_tensor(root_pose.to_transformation_matrix()).double()
    ours = torch.as_tensor(camera_projection(*SIZE, root_pose=root_pose))
    assert torch.allclose(ours, reference, atol=1e-4)
    expert = ExpertPolicy(env)
    hits = 0
    for _ in range(6):
        td.set(ACTION_KEY, expert.actions())
        state = expert.privileged_state()
        mask = td[FOREGROUND_MASK_KEY].reshape(*SIZE)
        for key in ("object_position", "receptacle_position"):
            uv, depth = project_to_image(state[key].reshape(1, 3).double(), *SIZE, root_pose)
            u, v = uv[0].round().long().tolist()
            assert 0 <= u < SIZE[1] and 0 <= v < SIZE[0] and float(depth[0]) > 0.1
            hits += int(mask[v, u])
        td = env.step(td).get("next")
    assert hits == 12


def test_expert_refuses_worker_processes():
    from torchrl.envs import ParallelEnv

    from vla_torchrl.envs.maniskill.expert import maniskill_tasks

    env = ParallelEnv.__new__(ParallelEnv)  # no workers started: only its type matters
    with pytest.raises(ValueError, match="parallel=False"):
        maniskill_tasks(env)


@pytest.mark.slow
@pytest.mark.maniskill
@pytest.mark.skipif(
    os.environ.get("VLA_TORCHRL_LONG_TESTS") != "1",
    reason="50 expert episodes take minutes on 2 cores; set VLA_TORCHRL_LONG_TESTS=1",
)
def test_expert_solves_most_of_50_ind_episodes():
    """Issue #3's bar: >= 80 % of 50 seeded ``ind`` episodes at the 80-step limit.

    Measured on the development machine (2 shared CPU cores, WidowX-250S, RL4VLA assets found
    under ../shared/assets, 64x80 camera): 45/50 (90 %), 3.3 s per episode with the cores
    shared by five jobs (about 0.9 s idle), so about 3 minutes for this test. Failures: the
    "plant" tips over while the scene settles (3), the "kitchen shovel" slips (2).
    """
    from vla_torchrl.envs.builder import make_env
    from vla_torchrl.envs.maniskill.expert import ExpertPolicy

    env = make_env("ind", num_envs=1, image_size=SIZE, parallel=False)
    try:
        expert = ExpertPolicy(env)
        successes = 0
        for episode in range(50):
            records = _play(env, episode, lambda t: expert.actions())
            successes += records[-1][SUCCESS_KEY]
    finally:
        env.close()
    assert successes >= 40, successes
