"""ManiSkill scenes: built once per module (SerialEnv, small images) to keep the suite fast."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.keys import (
    ACTION_KEY,
    EPISODE_ID_KEY,
    EPISODE_ID_REQUEST_KEY,
    FOREGROUND_MASK_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    REWARD_KEY,
)

pytestmark = pytest.mark.maniskill
SIZE = (64, 80)


@pytest.fixture(scope="module")
def ind_env():
    from vla_torchrl.envs.builder import make_env

    env = make_env("ind", num_envs=2, image_size=SIZE, parallel=False, asset_source="procedural")
    yield env
    env.close()


def test_specs_images_and_unseen_objects_never_in_ind(ind_env):
    from torchrl.envs.utils import check_env_specs

    from vla_torchrl.envs.asset_library import AssetLibrary

    check_env_specs(ind_env)
    lib = AssetLibrary.procedural()
    unseen = {o.name for o in lib.objects_unseen}
    train = {o.name for o in lib.objects_train}
    for _ in range(4):
        td = ind_env.reset()
        img = td[IMAGE_KEY].float()
        assert td[IMAGE_KEY].shape == (2, *SIZE, 3) and img.std() > 10
        assert td[FOREGROUND_MASK_KEY].any(dim=(1, 2)).all()
        for text in td[INSTRUCTION_KEY]:
            obj = text.removeprefix("put ").removesuffix(" on plate")
            assert obj in train and obj not in unseen


def test_same_seed_and_episode_id_same_first_image(ind_env):
    req = TensorDict({EPISODE_ID_REQUEST_KEY: torch.tensor([11, 12])}, [2])
    a = ind_env.reset(req.clone())
    ind_env.reset()
    b = ind_env.reset(req.clone())
    assert a[EPISODE_ID_KEY].tolist() == [11, 12]
    assert torch.equal(a[IMAGE_KEY], b[IMAGE_KEY])
    assert not torch.equal(a[IMAGE_KEY][0], a[IMAGE_KEY][1])


def test_zero_action_gives_zero_return_and_no_metrics(ind_env):
    ind_env.reset()
    td = ind_env.rand_step(ind_env.reset())
    cur = ind_env.reset()
    for _ in range(6):
        cur.set(ACTION_KEY, torch.zeros(2, 7))
        out = ind_env.step(cur)
        assert out["next", REWARD_KEY].sum() == 0
        assert not out["next", "grasped"].any() and not out["next", "success"].any()
        cur = out["next"].clone()
    assert td["next", REWARD_KEY].shape == (2, 1)


def test_parked_assets_hidden_from_the_renderer_without_changing_the_frame(ind_env):
    import sapien

    from vla_torchrl.envs.maniskill.put_on_task import CAMERA_UID, _set_render_visibility

    ind_env.reset()
    ms = ind_env._envs[0].maniskill_env
    active = {int(i) for i in ms.object_index[0]}, {int(i) for i in ms.receptacle_index[0]}
    pools = [(ms.object_actors, active[0]), (ms.receptacle_actors, active[1])]

    def visibility(actor):
        return actor._objs[0].find_component_by_type(sapien.render.RenderBodyComponent).visibility

    for actors, shown in pools:
        assert [visibility(a) for a in actors] == [float(i in shown) for i in range(len(actors))]
    hidden = ms.get_obs()["sensor_data"][CAMERA_UID]["rgb"].clone()
    for actors, _ in pools:
        for actor in actors:
            _set_render_visibility(actor, True)
    try:  # everything rendered: the parked assets are out of view, so the frame is the same
        shown = ms.get_obs()["sensor_data"][CAMERA_UID]["rgb"]
        assert torch.equal(hidden, shown) and hidden.float().std() > 10
    finally:
        ind_env.reset()  # the next episode hides its parked assets again


def _target_xy(env, i):
    return env._envs[i].maniskill_env.target_object_pose()[0][0, :2].clone()


@pytest.mark.slow
@pytest.mark.parametrize("task,moves", [("obj-rep", True), ("ind", False)])
def test_object_reposition_at_step_5(task, moves):
    from vla_torchrl.envs.builder import make_env

    env = make_env(task, num_envs=2, image_size=SIZE, parallel=False, asset_source="procedural")
    try:
        env.reset()
        zero = TensorDict({ACTION_KEY: torch.zeros(2, 7)}, [2])
        jumps = []
        for _ in range(6):
            before = _target_xy(env, 0)
            env.step(zero.clone())
            jumps.append(float((_target_xy(env, 0) - before).norm()))
        assert (jumps[4] > 0.07) == moves  # teleport happens at the 5th step only
        assert max(jumps[:4] + jumps[5:]) < 0.01
    finally:
        env.close()


def _suite_cases():
    from vla_torchrl.assets import AssetPaths
    from vla_torchrl.envs.suite import SUITE

    sources = ["procedural"] + (["rl4vla"] if AssetPaths.resolve().rl4vla_dir else [])
    return [(t, s) for s in sources for t in SUITE]


@pytest.mark.slow
@pytest.mark.parametrize("task,source", _suite_cases())
def test_every_suite_task_builds_resets_and_steps(task, source):
    from torchrl.envs.utils import check_env_specs

    from vla_torchrl.envs.builder import make_env
    from vla_torchrl.envs.suite import SUITE

    if SUITE[task].perturbation is not None:
        pytest.importorskip("vla_torchrl.envs.transforms")
    env = make_env(task, num_envs=2, image_size=(48, 64), parallel=False, asset_source=source)
    try:
        check_env_specs(env)
        td = env.rollout(3, break_when_any_done=False)
        img = td["next", *IMAGE_KEY].float() if isinstance(IMAGE_KEY, tuple) else None
        assert img is not None and img.std() > 10
        assert td["next", REWARD_KEY].shape == (2, 3, 1)
    finally:
        env.close()


def _drop_target_on_receptacle(task) -> None:
    """Teleport env 0's target object 1 cm above the middle of its receptacle, at rest."""
    from mani_skill.utils.structs.pose import Pose

    obj_asset, rec_asset = task.target_assets(0)
    actor = task.object_actors[int(task.object_index[0, 0])]
    rec_p = task.target_receptacle_position()[0]
    p = actor.pose.p.clone()
    p[0] = rec_p.to(p.dtype)
    p[0, 2] = float(rec_p[2]) + rec_asset.bbox_max[2] - obj_asset.bbox_min[2] + 0.01
    actor.set_pose(Pose.create_from_pq(p=p, q=actor.pose.q))
    actor.set_linear_velocity(torch.zeros_like(p))
    actor.set_angular_velocity(torch.zeros_like(p))


def test_success_needs_a_grasp_not_a_release(ind_env, monkeypatch):
    # issue 15 item 1, scripted on a real scene (env 0): the target object is put on its
    # receptacle by teleport and the gripper's grasp is faked; rewards are written by hand
    ind_env.reset()  # starts the SerialEnv's envs
    task = ind_env._envs[0].maniskill_env
    still = torch.zeros(1, 7)  # arm at rest, gripper open
    grasp = {"now": False}

    def fake_is_grasping(*args, **kwargs):
        return torch.full((task.num_envs,), grasp["now"], dtype=torch.bool, device=task.device)

    def step():
        _, reward, terminated, _, info = task.step(still)
        return round(float(reward[0]), 6), bool(terminated[0]), info

    monkeypatch.setattr(task.agent, "is_grasping", fake_is_grasping)
    # 1. never grasped, on the target: no reward, no success, the episode goes on
    _drop_target_on_receptacle(task)
    for _ in range(4):
        reward, terminated, info = step()
        assert (reward, terminated, bool(info["success"][0])) == (0.0, False, False)
    assert bool(task.evaluate()["on_target"][0])  # the scripted state is what it claims
    # 2. grasped while on the target, still holding: grasp 0.1 + success 1.0, episode ends
    grasp["now"] = True
    reward, terminated, info = step()
    assert bool(info["is_grasped"][0]) and bool(info["on_target"][0])
    assert (reward, terminated, bool(info["success"][0])) == (1.1, True, True)

    # 3. grasped (off target), dropped, re-grasped for 5 steps, then on the target
    ind_env.reset()
    rewards = []
    for now in [True, True, False, False, True, True, True, True, True]:
        grasp["now"] = now
        rewards.append(step()[0])
    assert rewards == [0.1, 0, 0, 0, 0, 0, 0, 0, 0.1]
    _drop_target_on_receptacle(task)
    reward, terminated, info = step()
    assert bool(info["on_target"][0]) and (reward, terminated) == (1.0, True)


def test_same_start_groups_reset_to_the_same_scene():
    from vla_torchrl.envs.builder import make_env

    env = make_env(
        "ind",
        num_envs=2,
        image_size=SIZE,
        parallel=False,
        asset_source="procedural",
        same_start_groups=2,
    )
    try:
        for expected in (0, 1):  # the group's k-th episode: id k for both envs
            td = env.reset()
            assert td[EPISODE_ID_KEY].tolist() == [expected, expected]
            assert torch.equal(td[IMAGE_KEY][0], td[IMAGE_KEY][1])
    finally:
        env.close()


@pytest.mark.slow
def test_env_groups_in_worker_processes_play_the_one_envs_episodes(ind_env):
    """make_env_groups: the scenes of the one env as ParallelEnvs of consecutive scenes (their
    specs read from the workers as they start, metadata_from_workers), rolled out by the
    OverlappedCollector, give the in-process SerialEnv's rollout value for value."""
    from tensordict.nn import TensorDictModule

    from vla_torchrl.envs.builder import make_env_groups
    from vla_torchrl.training.overlapped_collector import OverlappedCollector

    def steer(image):  # deterministic, row by row: the same actions in groups or not
        mean = image.float().mean(dim=(-3, -2)) / 255.0
        action = torch.zeros(*image.shape[:-3], 7)
        action[..., :3] = 0.5 * torch.tanh(8 * (mean - mean.mean(dim=-1, keepdim=True)))
        return action

    policy = TensorDictModule(steer, in_keys=[IMAGE_KEY], out_keys=[ACTION_KEY])
    groups = make_env_groups(
        "ind", groups=2, num_envs=2, image_size=SIZE, parallel=True, asset_source="procedural"
    )
    collector = OverlappedCollector(groups, policy, steps_per_env=3)
    try:
        assert [tuple(env.batch_size) for env in groups] == [(1,), (1,)]
        assert groups[0].action_spec.shape == (1, *ind_env.action_spec.shape[1:])
        collector.set_seed(5)
        got = collector.rollout()
    finally:
        collector.shutdown()
    ind_env.set_seed(5)
    td, steps = ind_env.reset(), []
    for _ in range(3):
        out, td = ind_env.step_and_maybe_reset(policy(td))
        steps.append(out)
    want = torch.stack(steps, dim=1)
    assert got.batch_size == want.batch_size == torch.Size([2, 3])
    for key in want.keys(True, True):
        if isinstance(want[key], torch.Tensor):
            assert torch.equal(got[key], want[key]), key
    assert got[:, 0][INSTRUCTION_KEY] == want[:, 0][INSTRUCTION_KEY]
    assert got[IMAGE_KEY].float().std() > 0  # rendered scenes, not zeros
