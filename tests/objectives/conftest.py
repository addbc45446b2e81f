"""Fixtures of the objectives tests (the mocks live in ``objectives_mocks.py``)."""

from __future__ import annotations

import pytest
import torch
from objectives_mocks import MockEvaluator, make_rollout
from tensordict import TensorDict


@pytest.fixture
def evaluator() -> MockEvaluator:
    return MockEvaluator()


@pytest.fixture
def rollout() -> TensorDict:
    """4 envs x 6 steps: env 0 succeeds at t=2 and resets, env 1 is truncated at t=3 and
    resets, env 2 runs through, env 3 succeeds at the last step."""
    b, t = 4, 6
    reward = torch.zeros(b, t)
    reward[0, 1], reward[0, 2], reward[0, 5] = 0.1, 1.1, 0.1
    reward[1, 0] = 0.1
    reward[3, 3], reward[3, 5] = 0.2, 1.0
    done = torch.zeros(b, t, dtype=torch.bool)
    term = torch.zeros(b, t, dtype=torch.bool)
    done[0, 2] = term[0, 2] = True
    done[1, 3] = True
    done[3, 5] = term[3, 5] = True
    ep = torch.tensor([[0, 0, 0, 4, 4, 4], [1, 1, 1, 1, 5, 5], [0, 0, 0, 0, 0, 0], [1] * 6])
    return make_rollout(reward, done, term, episode_id=ep)
