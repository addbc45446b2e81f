"""The specs every VLA env of this package declares (the brief's env contract), built once.

Observation: ``IMAGE_KEY`` uint8 ``[*B, H, W, 3]``, ``FOREGROUND_MASK_KEY`` bool ``[*B, H, W]``,
``INSTRUCTION_KEY`` (non-tensor string), ``EPISODE_ID_KEY`` int64 ``[*B]``, ``STATE_KEY`` float
``[*B, S]`` and the episode flags ``GRASPED_KEY``, ``CONTINUOUS_GRASP_KEY``, ``SUCCESS_KEY``
bool ``[*B, 1]``; action: ``ACTION_KEY`` float ``[*B, 7]`` within bounds; reward float
``[*B, 1]``; done / terminated / truncated bool ``[*B, 1]``. Boolean ``[*B, 1]`` entries use
``Categorical(2, dtype=torch.bool)``, TorchRL's own done spec.

Examples:
    >>> import torch
    >>> from torchrl.envs import EnvBase
    >>> from vla_torchrl.keys import IMAGE_KEY, STATE_KEY
    >>> class Env(EnvBase):
    ...     def __init__(self):
    ...         super().__init__(batch_size=torch.Size([2]))
    ...         set_vla_specs(self, image_size=(4, 6), state_dim=3,
    ...                       instruction_example="put dot on red square")
    ...     _reset = _step = _set_seed = None
    >>> env = Env()
    >>> env.observation_spec[IMAGE_KEY].shape, env.observation_spec[STATE_KEY].shape
    (torch.Size([2, 4, 6, 3]), torch.Size([2, 3]))
    >>> env.action_spec.shape, env.reward_spec.shape, env.done_spec["done"].dtype
    (torch.Size([2, 7]), torch.Size([2, 1]), torch.bool)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchrl.data import Binary, Bounded, Categorical, Composite, NonTensor, Unbounded
from torchrl.envs import EnvBase

from vla_torchrl.keys import (
    CONTINUOUS_GRASP_KEY,
    DONE_KEY,
    EPISODE_ID_KEY,
    FOREGROUND_MASK_KEY,
    GRASPED_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    STATE_KEY,
    SUCCESS_KEY,
    TERMINATED_KEY,
    TRUNCATED_KEY,
)

__all__ = ["ACTION_DIM", "set_vla_specs"]

#: Action width: xyz delta, euler delta, gripper.
ACTION_DIM = 7


def set_vla_specs(
    env: EnvBase,
    *,
    image_size: tuple[int, int],
    state_dim: int,
    instruction_example: str,
    state_range: tuple[float, float] | None = None,
    action_low: float | Sequence[float] = -1.0,
    action_high: float | Sequence[float] = 1.0,
) -> None:
    """Declare observation, action, reward and done specs on ``env`` (batch dims ``env.batch_size``).

    Args:
        env: the env (its ``batch_size`` and ``device`` are set already).
        image_size: ``(H, W)`` of the camera image and the foreground mask.
        state_dim: width ``S`` of ``STATE_KEY``.
        instruction_example: an example instruction (the ``NonTensor`` spec's example data).
        state_range: ``(low, high)`` bounds of the state, or ``None`` for unbounded.
        action_low, action_high: action bounds, one number or ``ACTION_DIM`` numbers.

    Returns:
        Nothing: sets ``env.observation_spec``, ``action_spec``, ``reward_spec``, ``done_spec``.
    """
    b, device = tuple(env.batch_size), env.device
    h, w = image_size

    def flag() -> Categorical:
        return Categorical(2, shape=(*b, 1), dtype=torch.bool, device=device)

    if state_range is None:
        state = Unbounded(shape=(*b, state_dim), dtype=torch.float32, device=device)
    else:
        state = Bounded(*state_range, shape=(*b, state_dim), dtype=torch.float32, device=device)
    env.observation_spec = Composite(
        {
            IMAGE_KEY: Bounded(0, 255, shape=(*b, h, w, 3), dtype=torch.uint8, device=device),
            FOREGROUND_MASK_KEY: Binary(n=w, shape=(*b, h, w), dtype=torch.bool, device=device),
            STATE_KEY: state,
            INSTRUCTION_KEY: NonTensor(shape=b, example_data=instruction_example, device=device),
            EPISODE_ID_KEY: Unbounded(shape=b, dtype=torch.int64, device=device),
            GRASPED_KEY: flag(),
            CONTINUOUS_GRASP_KEY: flag(),
            SUCCESS_KEY: flag(),
        },
        shape=b,
        device=device,
    )
    low = torch.as_tensor(action_low, dtype=torch.float32).expand(*b, ACTION_DIM)
    high = torch.as_tensor(action_high, dtype=torch.float32).expand(*b, ACTION_DIM)
    env.action_spec = Bounded(low, high, shape=(*b, ACTION_DIM), dtype=torch.float32, device=device)
    env.reward_spec = Unbounded(shape=(*b, 1), dtype=torch.float32, device=device)
    env.done_spec = Composite(
        {k: flag() for k in (DONE_KEY, TERMINATED_KEY, TRUNCATED_KEY)}, shape=b, device=device
    )
