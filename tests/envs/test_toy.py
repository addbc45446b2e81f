"""ToyReachEnv: specs, step semantics on scripted actions, resets, reproducibility, oracle vs random."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from vla_torchrl.envs.toy import TOY_TASKS, ToyReachConfig, ToyReachEnv, make_toy_env
from vla_torchrl.keys import (
    ACTION_KEY,
    CONTINUOUS_GRASP_KEY,
    DONE_KEY,
    EPISODE_ID_KEY,
    FOREGROUND_MASK_KEY,
    GRASPED_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    REWARD_KEY,
    STATE_KEY,
    SUCCESS_KEY,
    TERMINATED_KEY,
    TRUNCATED_KEY,
)

RGB = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 205, 40),
}
BACKGROUND = (40, 40, 40)


def _act(x: float, y: float, gripper: float, batch: int = 1) -> torch.Tensor:
    action = torch.zeros(batch, 7)
    action[:, 0], action[:, 1], action[:, 6] = x, y, gripper
    return action


def _step(env, td, action):
    td.set(ACTION_KEY, action)
    td = env.step(td)
    return td, td["next"]


def _scripted_env() -> tuple[ToyReachEnv, object]:
    """Dot at the origin, target square (index 0) centred at (0.6, 0), a distractor far away."""
    env = ToyReachEnv(1, seed=0)
    td = env.reset()
    env.agent[:] = torch.tensor([[0.0, 0.0]])
    env.targets[:] = torch.tensor([[[0.6, 0.0], [-0.6, 0.6]]])
    return env, td


def _flags(nxt) -> tuple[bool, ...]:
    keys = (GRASPED_KEY, CONTINUOUS_GRASP_KEY, SUCCESS_KEY, TERMINATED_KEY, TRUNCATED_KEY, DONE_KEY)
    return tuple(bool(nxt[k]) for k in keys)


def test_specs_pass_check_env_specs():
    check_env_specs(make_toy_env(3, seed=0))
    check_env_specs(make_toy_env(2, seed=0, image_size=16, use_gripper=False, num_targets=1))


def test_transformed_toy_env_passes_check_env_specs():
    from vla_torchrl.envs.instruction_templates import UNSEEN_INSTRUCTION_TEMPLATES
    from vla_torchrl.envs.transforms import DynamicTextureOverlay, InstructionRephrase

    texture = torch.randint(0, 256, (20, 20, 3), dtype=torch.uint8)
    env = TransformedEnv(
        make_toy_env(2, seed=0),
        DynamicTextureOverlay([texture], alpha=0.3, region="foreground", seed=0),
    )
    env.append_transform(InstructionRephrase(UNSEEN_INSTRUCTION_TEMPLATES, seed=0))
    check_env_specs(env)


def test_reset_writes_the_contract_keys():
    env = make_toy_env(4, seed=0)
    td = env.reset()
    assert td[IMAGE_KEY].shape == (4, 32, 32, 3) and td[IMAGE_KEY].dtype == torch.uint8
    assert (
        td[FOREGROUND_MASK_KEY].shape == (4, 32, 32) and td[FOREGROUND_MASK_KEY].dtype == torch.bool
    )
    assert td[EPISODE_ID_KEY].tolist() == [0, 1, 2, 3]
    assert td[STATE_KEY].shape == (4, 2)
    for key in (
        GRASPED_KEY,
        CONTINUOUS_GRASP_KEY,
        SUCCESS_KEY,
        DONE_KEY,
        TERMINATED_KEY,
        TRUNCATED_KEY,
    ):
        assert td[key].shape == (4, 1) and not td[key].any()
    for text in td.get(INSTRUCTION_KEY).tolist():
        assert text in {f"put dot on {c} square" for c in RGB}


def test_image_shows_the_named_square_and_the_dot():
    env = make_toy_env(16, seed=3)
    td = env.reset()
    image, mask = td[IMAGE_KEY], td[FOREGROUND_MASK_KEY]
    for b, text in enumerate(td.get(INSTRUCTION_KEY).tolist()):
        colour = text.split()[-2]
        cx, cy = env.targets[b, 0].tolist()
        col, row = int((cx + 1) / 2 * 32), int((1 - cy) / 2 * 32)
        assert tuple(image[b, row, col].tolist()) == RGB[colour]
        ax, ay = env.agent[b].tolist()
        col, row = min(int((ax + 1) / 2 * 32), 31), min(int((1 - ay) / 2 * 32), 31)
        assert tuple(image[b, row, col].tolist()) == (255, 255, 255)
    # the foreground is exactly what is not background (squares + dot)
    not_background = (image != torch.tensor(BACKGROUND, dtype=torch.uint8)).any(-1)
    assert torch.equal(mask, not_background)
    # two squares of 0.7 x 0.7 (11 px a side) and a 3x3 dot (possibly on top)
    assert ((mask.sum((1, 2)) >= 2 * 10 * 10) & (mask.sum((1, 2)) <= 2 * 12 * 12 + 9)).all()


def test_scripted_success_rewards_and_metrics_by_hand():
    env, td = _scripted_env()
    # step 1: x = 0.2, 0.4 from the centre, off the target (half size 0.35)
    td, nxt = _step(env, td, _act(0.5, 0.0, -1.0))
    assert nxt[STATE_KEY][0].tolist() == pytest.approx([0.2, 0.0])
    assert float(nxt[REWARD_KEY]) == 0.0
    assert _flags(nxt) == (False, False, False, False, False, False)
    # step 2: x = 0.4, on the target: grasped, reward 0.1
    td, nxt = _step(env, nxt, _act(0.5, 0.0, -1.0))
    assert float(nxt[REWARD_KEY]) == pytest.approx(0.1)
    assert _flags(nxt) == (True, False, False, False, False, False)
    # step 3: stays (2 consecutive steps = held): continuous grasp, reward 0.1; gripper closed
    td, nxt = _step(env, nxt, _act(0.0, 0.0, -1.0))
    assert float(nxt[REWARD_KEY]) == pytest.approx(0.1)
    assert _flags(nxt) == (True, True, False, False, False, False)
    # step 4: held and released: success, reward 1.0, terminated
    td, nxt = _step(env, nxt, _act(0.0, 0.0, 1.0))
    assert float(nxt[REWARD_KEY]) == pytest.approx(1.0)
    assert _flags(nxt) == (True, True, True, True, False, True)


def test_leaving_the_target_restarts_the_hold_count():
    env, td = _scripted_env()
    rewards = []
    for x in (0.5, 0.5, -0.5, 0.5):  # x: 0.2 off, 0.4 on, 0.2 off, 0.4 on
        td, nxt = _step(env, td, _act(x, 0.0, 1.0))
        rewards.append(float(nxt[REWARD_KEY]))
        td = nxt
    assert rewards == pytest.approx([0.0, 0.1, 0.0, 0.0])
    assert _flags(nxt)[:3] == (True, False, False)
    td, nxt = _step(env, td, _act(0.0, 0.0, 1.0))  # second consecutive step on: held + released
    assert float(nxt[REWARD_KEY]) == pytest.approx(1.1)
    assert _flags(nxt) == (True, True, True, True, False, True)


def test_without_gripper_holding_is_success():
    env = ToyReachEnv(1, config=ToyReachConfig(use_gripper=False), seed=0)
    td = env.reset()
    env.agent[:] = torch.tensor([[0.4, 0.0]])
    env.targets[:] = torch.tensor([[[0.6, 0.0], [-0.6, 0.6]]])
    td, nxt = _step(env, td, _act(0.0, 0.0, -1.0))
    td, nxt = _step(env, nxt, _act(0.0, 0.0, -1.0))
    assert _flags(nxt)[:4] == (True, True, True, True)


def test_truncated_at_the_step_limit_only():
    env, td = _scripted_env()
    for t in range(1, 11):
        td, nxt = _step(env, td, _act(0.0, 0.0, 1.0))  # never moves: never on the target
        assert float(nxt[REWARD_KEY]) == 0.0
        assert bool(nxt[TRUNCATED_KEY]) == (t == 10) and bool(nxt[DONE_KEY]) == (t == 10)
        assert not bool(nxt[TERMINATED_KEY])
        td = nxt


def test_moves_are_scaled_and_clipped_to_the_arena():
    env, td = _scripted_env()
    env.agent[:] = torch.tensor([[0.9, -0.9]])
    td, nxt = _step(env, td, _act(1.0, -0.25, 0.0))
    assert nxt[STATE_KEY][0].tolist() == pytest.approx([1.0, -1.0])
    td, nxt = _step(env, nxt, _act(-1.0, 2.0, 0.0))  # out-of-range actions are clipped to [-1, 1]
    assert nxt[STATE_KEY][0].tolist() == pytest.approx([0.6, -0.6])


def test_partial_reset_resets_only_the_flagged_envs():
    env = make_toy_env(3, seed=0)
    td = env.reset()
    for _ in range(3):
        td, td = _step(env, td, torch.zeros(3, 7))
    state_before = td[STATE_KEY].clone()
    td.set("_reset", torch.tensor([[False], [True], [False]]))
    td = env.reset(td)
    assert td[EPISODE_ID_KEY].tolist() == [0, 3, 2]
    assert torch.equal(td[STATE_KEY][[0, 2]], state_before[[0, 2]])
    assert env.step_count.tolist() == [3, 0, 3]
    # zero actions: envs 0 and 2 hit the limit after 7 more steps (and stay done), env 1 after 10
    for t in range(1, 11):
        td, nxt = _step(env, td, torch.zeros(3, 7))
        assert nxt[TRUNCATED_KEY].flatten().tolist() == [t >= 7, t == 10, t >= 7]
        td = nxt


def test_same_seed_and_episode_id_reproduce_the_episode():
    def rollout(seed):
        env = make_toy_env(4, seed=seed)
        td = env.reset()
        g = torch.Generator().manual_seed(0)
        frames, rewards = [td[IMAGE_KEY].clone()], []
        for _ in range(5):
            td, nxt = _step(env, td, torch.rand(4, 7, generator=g) * 2 - 1)
            frames.append(nxt[IMAGE_KEY].clone())
            rewards.append(nxt[REWARD_KEY].clone())
            td = nxt
        return torch.stack(frames), torch.stack(rewards)

    a, b, c = rollout(5), rollout(5), rollout(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0][0], c[0][0])
    # an episode id replays that episode in another env, whatever its batch position
    many = make_toy_env(4, seed=5).reset()
    one = make_toy_env(1, seed=5).reset(episode_id=torch.tensor([2]))
    assert one[EPISODE_ID_KEY].tolist() == [2]
    assert torch.equal(one[IMAGE_KEY][0], many[IMAGE_KEY][2])
    assert one.get(INSTRUCTION_KEY).tolist()[0] == many.get(INSTRUCTION_KEY).tolist()[2]
    # set_seed restarts the episode counter
    env = make_toy_env(2, seed=9)
    env.reset()
    env.set_seed(5)
    again = env.reset()
    assert again[EPISODE_ID_KEY].tolist() == [0, 1]
    assert torch.equal(again[IMAGE_KEY], many[IMAGE_KEY][:2])


def _decode_tokens(ids: torch.Tensor) -> torch.Tensor:
    """OpenVLA's action decoding (FACTS.md): centers[clip(32000 - id - 1, 0, 254)]."""
    bins = torch.linspace(-1, 1, 256)
    centers = (bins[:-1] + bins[1:]) / 2
    return centers[(32000 - ids - 1).clamp(0, 254)]


def _encode_actions(action: torch.Tensor) -> torch.Tensor:
    """OpenVLA's action encoding: 32000 - digitize(clip(a, -1, 1), bins)."""
    bins = torch.linspace(-1, 1, 256)
    return 32000 - torch.bucketize(action.clamp(-1, 1), bins, right=True)


def _success_rate(env, policy) -> dict[str, float]:
    td = env.reset()
    n = env.batch_size[0]
    finished = torch.zeros(n, dtype=torch.bool)
    final = torch.zeros(n, 3, dtype=torch.bool)
    for _ in range(env.config.max_steps):
        td, nxt = _step(env, td, policy(env))
        metrics = torch.cat([nxt[k] for k in (GRASPED_KEY, CONTINUOUS_GRASP_KEY, SUCCESS_KEY)], -1)
        final[~finished] = metrics[~finished]
        finished |= nxt[DONE_KEY].flatten()
        td = nxt
    assert finished.all()  # every episode ends within max_steps
    return dict(zip(("grasped", "continuous_grasp", "success"), final.float().mean(0).tolist()))


@pytest.mark.parametrize("quantized", [False, True])
def test_oracle_always_succeeds(quantized):
    def oracle(env):
        action = env.oracle_action()
        return _decode_tokens(_encode_actions(action)) if quantized else action

    rates = _success_rate(make_toy_env(300, seed=0), oracle)
    assert rates == {"grasped": 1.0, "continuous_grasp": 1.0, "success": 1.0}


def test_uniform_random_tokens_succeed_sometimes():
    g = torch.Generator().manual_seed(0)

    def random_tokens(env):
        return _decode_tokens(torch.randint(31744, 32000, (env.batch_size[0], 7), generator=g))

    rates = _success_rate(make_toy_env(2000, seed=1), random_tokens)
    print(f"uniform random token policy on ToyReachEnv defaults: {rates}")
    assert 0.03 < rates["success"] < 0.5  # measured about 0.10 (2000 episodes)
    assert rates["success"] <= rates["continuous_grasp"] <= rates["grasped"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_targets": 5}, "num_targets"),
        ({"max_steps": 0}, "max_steps"),
        ({"hold_steps": 0}, "hold_steps"),
        ({"instruction_template": "go to {receptacle}"}, "instruction_template"),
        ({"image_size": 4}, "image_size"),
        ({"target_box": (0.5, 0.0, 0.2, 0.3)}, "target_box"),
        ({"start_box": (-2.0, 0.0, 0.0, 0.3)}, "start_box"),
        ({"start_box": (0.0, 0.0, 0.3)}, "start_box"),
    ],
)
def test_bad_config_is_refused(options, match):
    with pytest.raises(ValueError, match=match):
        ToyReachConfig(**options)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="unknown options"):
        make_toy_env(1, seed=0, colour="red")


def test_partial_steps_advance_only_the_flagged_envs():
    env = make_toy_env(2, seed=0)
    td = env.reset()
    start = td[STATE_KEY].clone()
    td.set("_step", torch.tensor([True, False]))
    td, nxt = _step(env, td, torch.full((2, 7), 0.5))
    assert nxt[STATE_KEY][0].tolist() != start[0].tolist()
    assert nxt[STATE_KEY][1].tolist() == start[1].tolist()
    assert env.step_count.tolist() == [1, 0]
    assert float(nxt[REWARD_KEY][1]) == 0.0


def test_rollout_until_all_done_with_the_oracle():
    env = make_toy_env(8, seed=2)

    def oracle(td):
        return td.set(ACTION_KEY, env.oracle_action())

    rollout = env.rollout(10, oracle, break_when_any_done=False, break_when_all_done=True)
    success = rollout["next", SUCCESS_KEY].squeeze(-1)
    assert success.any(-1).all()
    # the return of each episode is the final potential 0.1 + 0.1 + 1.0 (Sec. 5.1 reward)
    returns = (rollout["next", REWARD_KEY].squeeze(-1) * ~_after_done(rollout)).sum(-1)
    assert returns.tolist() == pytest.approx([1.2] * 8)


def _after_done(rollout) -> torch.Tensor:
    """True at the steps after an env's first done (padding of a rollout until all are done)."""
    done = rollout["next", DONE_KEY].squeeze(-1)
    return (done.cumsum(-1) - done.long()) > 0


def test_same_start_groups_share_initial_state_on_full_reset_only():
    env = make_toy_env(6, seed=3, same_start_groups=3)
    td = env.reset()
    ids = td[EPISODE_ID_KEY].tolist()
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] == ids[5] and ids[0] != ids[3]
    image = td[IMAGE_KEY]
    assert torch.equal(image[0], image[2]) and not torch.equal(image[0], image[3])
    # a partial reset draws a fresh, unshared episode
    partial = td.clone()
    partial["_reset"] = torch.tensor([True, False, False, False, False, False]).unsqueeze(-1)
    again = env.reset(partial)
    assert again[EPISODE_ID_KEY][0].item() not in ids


def test_boxes_bound_the_square_centres_and_the_start():
    env = make_toy_env(
        200,
        seed=3,
        num_targets=1,
        target_box=(0.2, -0.1, 0.4, 0.3),
        start_box=(-0.9, 0.5, -0.6, 0.8),
    )
    env.reset()
    cx, cy = env.targets[:, 0, 0], env.targets[:, 0, 1]
    assert ((cx >= 0.2) & (cx <= 0.4) & (cy >= -0.1) & (cy <= 0.3)).all()
    ax, ay = env.agent[:, 0], env.agent[:, 1]
    assert ((ax >= -0.9) & (ax <= -0.6) & (ay >= 0.5) & (ay <= 0.8)).all()
    # the boxes are filled, not collapsed to a point
    assert cx.std() > 0.03 and ay.std() > 0.03


def test_reach_corner_task_rates_random_vs_moving_up_right():
    """The learning-test task: ~14 % for uniform random tokens, 100 % for "always up-right"."""
    options = {**TOY_TASKS["reach-corner"], "max_steps": 6}
    g = torch.Generator().manual_seed(0)

    def random_tokens(env):
        return _decode_tokens(torch.randint(31744, 32000, (env.batch_size[0], 7), generator=g))

    def up_right(env):
        return _act(1.0, 1.0, 0.0, env.batch_size[0])

    rand = _success_rate(make_toy_env(2000, seed=1, **options), random_tokens)["success"]
    assert 0.09 < rand < 0.2, rand  # binomial std ~0.008 around the documented 14 %
    assert _success_rate(make_toy_env(300, seed=1, **options), up_right)["success"] == 1.0
