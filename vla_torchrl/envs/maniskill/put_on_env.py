"""TorchRL ``EnvBase`` around the ManiSkill "put O on R" task.

One instance drives one ManiSkill env object: on the CPU that is a single scene (ManiSkill's CPU
simulation allows one env per process; :func:`vla_torchrl.envs.builder.make_env` batches
instances across worker processes), on a GPU a batch of ``num_envs`` scenes.

Output keys (root after reset, ``"next"`` after step), with ``*B`` the batch dims:
``IMAGE_KEY`` uint8 [*B, H, W, 3] (green-screened), ``FOREGROUND_MASK_KEY`` bool [*B, H, W],
``INSTRUCTION_KEY`` str, ``EPISODE_ID_KEY`` int64 [*B], ``STATE_KEY`` float [*B, S] (joint
positions), ``REWARD_KEY`` float [*B, 1], done/terminated/truncated bool [*B, 1], and the
episode metrics ``GRASPED_KEY``, ``CONTINUOUS_GRASP_KEY``, ``SUCCESS_KEY`` bool [*B, 1].

Episodes: env instance ``i`` of ``n`` numbers its episodes ``i, i + n, i + 2n, ...``; episode
``e`` of base seed ``s`` is drawn from ``numpy.random.default_rng([s, e])``, so the same seed and
episode id give the same scene whatever the worker. A specific episode is requested by putting
``EPISODE_ID_REQUEST_KEY`` (int64, ``-1`` for "next in line") in the reset tensordict.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from tensordict import NonTensorData, NonTensorStack, TensorDict, TensorDictBase
from torchrl.envs import EnvBase

from vla_torchrl.envs.instructions import TRAIN_INSTRUCTION_TEMPLATE
from vla_torchrl.envs.specs import set_vla_specs
from vla_torchrl.keys import (
    ACTION_KEY,
    CONTINUOUS_GRASP_KEY,
    DONE_KEY,
    EPISODE_ID_KEY,
    EPISODE_ID_REQUEST_KEY,
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

__all__ = ["ACTION_HIGH", "ACTION_LOW", "PutOnEnv"]

logger = logging.getLogger(__name__)

# Action bounds in env units: metres per step, radians per step, gripper sign.
ACTION_LOW = (-0.1, -0.1, -0.1, -0.5, -0.5, -0.5, -1.0)
ACTION_HIGH = (0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 1.0)


class PutOnEnv(EnvBase):
    """TorchRL env for one ManiSkill "put O on R" env object.

    Args:
        scene_config: :class:`~vla_torchrl.envs.maniskill.PutOnSceneConfig`.
        image_size: ``(H, W)`` of the camera.
        seed: base seed of the episodes.
        episode_offset, episode_stride: this instance's episode ids are
            ``offset, offset + stride, ...``.
        num_envs: ManiSkill scenes in this instance (>1 needs the GPU simulation).
        sim_backend: ``"cpu"`` or ``"gpu"``.
        robot: ``"auto"``, ``"widowx"`` or ``"panda"``.
        max_steps: episode length (truncation), 80 in the paper.
        terminate_on_success: end the episode at its first success; if false, success is
            recorded (the metrics latch) and every episode lasts ``max_steps`` (the reference
            run's fixed 80-step episodes, ``collector.episodes=fixed``).
        instruction_template: template filled with the object/receptacle names.
        device: device of the output tensors.
    """

    def __init__(
        self,
        scene_config,
        *,
        image_size: tuple[int, int] = (480, 640),
        seed: int = 0,
        episode_offset: int = 0,
        episode_stride: int = 1,
        num_envs: int = 1,
        sim_backend: Literal["cpu", "gpu"] = "cpu",
        robot: Literal["auto", "widowx", "panda"] = "auto",
        max_steps: int = 80,
        terminate_on_success: bool = True,
        instruction_template: str = TRAIN_INSTRUCTION_TEMPLATE,
        device: str | torch.device = "cpu",
    ):
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps}; use a positive episode length")
        if sim_backend == "cpu" and num_envs != 1:
            raise ValueError(
                f"num_envs={num_envs} with sim_backend='cpu': ManiSkill's CPU simulation holds one "
                "env per process; batch with make_env(..., parallel=True) instead"
            )
        batch = torch.Size([]) if num_envs == 1 and sim_backend == "cpu" else torch.Size([num_envs])
        super().__init__(device=device, batch_size=batch)
        import gymnasium as gym

        from vla_torchrl.envs.maniskill import PUT_ON_ENV_ID

        self.image_size = tuple(image_size)
        self.max_steps = int(max_steps)
        self.terminate_on_success = bool(terminate_on_success)
        self.instruction_template = instruction_template
        self._seed = int(seed)
        self._episode_offset = int(episode_offset)
        self._next_episode = int(episode_offset)
        self._episode_stride = int(episode_stride)
        self._n = num_envs
        self._ms = gym.make(
            PUT_ON_ENV_ID,
            scene_config=scene_config,
            image_size=self.image_size,
            robot=robot,
            seed=self._seed,
            num_envs=num_envs,
            sim_backend=sim_backend,
            render_backend="cpu" if sim_backend == "cpu" else "gpu",
        ).unwrapped
        self._state_dim = int(self._ms.agent.robot.get_qpos().shape[-1])
        self._make_specs()

    @property
    def maniskill_env(self):
        """The underlying ManiSkill env (``PutOnTask``)."""
        return self._ms

    @property
    def robot_kind(self) -> str:
        """``"widowx"`` or ``"panda"``."""
        return self._ms.robot_kind

    def _make_specs(self) -> None:
        set_vla_specs(
            self,
            image_size=self.image_size,
            state_dim=self._state_dim,
            instruction_example="put carrot on plate",
            action_low=ACTION_LOW,
            action_high=ACTION_HIGH,
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _shape(self, t: torch.Tensor) -> torch.Tensor:
        """Drop the ManiSkill env dim for an unbatched (CPU) instance; move to self.device."""
        t = t.to(self.device)
        return t[0] if self.batch_size == torch.Size([]) else t

    def _observation(self, obs: dict, flags: dict[str, torch.Tensor]) -> TensorDict:
        rgb, fg = self._ms.composite(obs)
        text = self._ms.instructions(self.instruction_template)
        out = TensorDict(
            {
                IMAGE_KEY: self._shape(rgb),
                FOREGROUND_MASK_KEY: self._shape(fg),
                EPISODE_ID_KEY: self._shape(self._ms.episode_id.clone()),
                STATE_KEY: self._shape(self._ms.agent.robot.get_qpos().float()),
            },
            batch_size=self.batch_size,
            device=self.device,
        )
        for key, value in flags.items():
            out.set(key, self._shape(value.reshape(-1, 1)))
        if self.batch_size == torch.Size([]):
            out.set(INSTRUCTION_KEY, NonTensorData(text[0]))
        else:
            out.set(INSTRUCTION_KEY, NonTensorStack(*[NonTensorData(t) for t in text]))
        return out

    # -- EnvBase ---------------------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        env_idx = torch.arange(self._n)
        if tensordict is not None and "_reset" in tensordict.keys() and self.batch_size:  # noqa: SIM118
            env_idx = torch.nonzero(tensordict.get("_reset").reshape(-1)).flatten()
        requested = None
        if tensordict is not None and EPISODE_ID_REQUEST_KEY in tensordict.keys():  # noqa: SIM118
            requested = tensordict.get(EPISODE_ID_REQUEST_KEY).reshape(-1)[env_idx]
        ids = []
        for j in range(len(env_idx)):
            if requested is not None and int(requested[j]) >= 0:
                ids.append(int(requested[j]))
            else:
                ids.append(self._next_episode)
                self._next_episode += self._episode_stride
        options = {"episode_id": ids}
        if len(env_idx) != self._n:
            options["env_idx"] = env_idx.to(self._ms.device)
        obs, _ = self._ms.reset(options=options)
        zeros = torch.zeros(self._n, dtype=torch.bool)
        flags = {
            GRASPED_KEY: self._ms.grasped_so_far,
            CONTINUOUS_GRASP_KEY: self._ms.held_so_far,
            SUCCESS_KEY: self._ms.success_so_far,
            DONE_KEY: zeros,
            TERMINATED_KEY: zeros,
            TRUNCATED_KEY: zeros,
        }
        return self._observation(obs, flags)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(ACTION_KEY).reshape(self._n, 7)
        obs, reward, terminated, _, info = self._ms.step(action)
        truncated = self._ms.elapsed_steps.reshape(-1) >= self.max_steps
        terminated = terminated.reshape(-1)
        if not self.terminate_on_success:  # success recorded (latched flags), not an ending
            terminated = torch.zeros_like(terminated)
        truncated = truncated.to(terminated.device) & ~terminated
        flags = {
            GRASPED_KEY: info["grasped"],
            CONTINUOUS_GRASP_KEY: info["continuous_grasp"],
            SUCCESS_KEY: info["success"],
            TERMINATED_KEY: terminated,
            TRUNCATED_KEY: truncated,
            DONE_KEY: terminated | truncated,
        }
        out = self._observation(obs, flags)
        out.set(REWARD_KEY, self._shape(reward.reshape(-1, 1).float()))
        return out

    def _set_seed(self, seed: int | None) -> None:
        """Set the base seed and restart the episode ids, so the same episodes replay."""
        if seed is not None:
            self._seed = int(seed)
            self._ms.base_seed = int(seed)
        self._next_episode = self._episode_offset

    def close(self, *, raise_if_closed: bool = True) -> None:
        try:
            self._ms.close()
        finally:
            super().close(raise_if_closed=raise_if_closed)
