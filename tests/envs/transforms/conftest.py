"""A tiny mock env for the transform tests: fixed images, a fixed mask, fixed instructions."""

from __future__ import annotations

import pytest
import torch
from tensordict import NonTensorStack, TensorDict
from torchrl.data import Binary, Bounded, Categorical, Composite, NonTensor, Unbounded
from torchrl.envs import EnvBase

from vla_torchrl.keys import (
    ACTION_KEY,
    DONE_KEY,
    FOREGROUND_MASK_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    REWARD_KEY,
    TERMINATED_KEY,
    TRUNCATED_KEY,
)


class MockEnv(EnvBase):
    """Batched env whose observation never changes: ``image``, ``mask`` and ``instructions``."""

    def __init__(self, image: torch.Tensor, mask: torch.Tensor | None, instructions: list[str]):
        batch = image.shape[0]
        super().__init__(batch_size=torch.Size([batch]))
        self.image, self.mask, self.instructions = image, mask, instructions
        h, w = image.shape[1:3]
        self.observation_spec = Composite(shape=(batch,))
        self.observation_spec[IMAGE_KEY] = Bounded(0, 255, (batch, h, w, 3), dtype=torch.uint8)
        if mask is not None:
            self.observation_spec[FOREGROUND_MASK_KEY] = Binary(w, (batch, h, w), dtype=torch.bool)
        self.observation_spec[INSTRUCTION_KEY] = NonTensor(
            shape=(batch,), example_data="put a on b"
        )
        self.action_spec = Bounded(-1.0, 1.0, (batch, 7))
        self.reward_spec = Unbounded((batch, 1))
        self.done_spec = Composite(
            {
                k: Categorical(2, (batch, 1), dtype=torch.bool)
                for k in (DONE_KEY, TERMINATED_KEY, TRUNCATED_KEY)
            },
            shape=(batch,),
        )

    def _obs(self) -> TensorDict:
        td = TensorDict({IMAGE_KEY: self.image.clone()}, self.batch_size)
        if self.mask is not None:
            td.set(FOREGROUND_MASK_KEY, self.mask.clone())
        td.set(INSTRUCTION_KEY, NonTensorStack(*self.instructions))
        return td

    def _reset(self, tensordict=None, **kwargs):
        td = self._obs()
        for k in (DONE_KEY, TERMINATED_KEY, TRUNCATED_KEY):
            td.set(k, torch.zeros(*self.batch_size, 1, dtype=torch.bool))
        return td

    def _step(self, tensordict):
        assert tensordict.get(ACTION_KEY).shape[-1] == 7
        td = self._obs()
        td.set(REWARD_KEY, torch.zeros(*self.batch_size, 1))
        for k in (DONE_KEY, TERMINATED_KEY, TRUNCATED_KEY):
            td.set(k, torch.zeros(*self.batch_size, 1, dtype=torch.bool))
        return td

    def _set_seed(self, seed):
        return None


@pytest.fixture
def mock_env():
    """``mock_env(image, mask=None, instructions=None)`` builds a :class:`MockEnv`."""

    def build(image, mask=None, instructions=None):
        batch = image.shape[0]
        if instructions is None:
            instructions = [f"put object{i} on receptacle{i}" for i in range(batch)]
        return MockEnv(image, mask, instructions)

    return build
