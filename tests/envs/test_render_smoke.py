"""Smoke test: ManiSkill renders a non-blank RGB frame on this machine (lavapipe on a CPU)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.maniskill


def test_maniskill_renders_a_non_blank_frame():
    from vla_torchrl.assets import configure_maniskill_assets
    from vla_torchrl.utils import configure_vulkan

    configure_vulkan()
    configure_maniskill_assets()
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the tasks)

    env = gym.make("PickCube-v1", obs_mode="rgb", sim_backend="cpu", render_backend="cpu")
    try:
        obs, _ = env.reset(seed=0)
        frame = obs["sensor_data"]["base_camera"]["rgb"][0].float()
    finally:
        env.close()
    assert frame.shape[-1] == 3
    # not blank: a real scene has many distinct colours and spread-out intensities
    assert frame.std() > 10.0
    assert len(frame.reshape(-1, 3).unique(dim=0)) > 100
