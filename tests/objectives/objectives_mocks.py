"""Mocks for the objectives tests: an evaluator with the brief's contract, a value module and
synthetic collector rollouts. (A uniquely named module, not ``conftest``, so that test files can
import it even when other test folders have their own ``conftest.py``.)"""

from __future__ import annotations

import contextlib

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    EPISODE_ID_KEY,
    EVAL_ENTROPY_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    INSTRUCTION_KEY,
    STATE_KEY,
    TOKEN_LOG_PROBS_KEY,
    VALUE_KEY,
)

FIRST_ACTION_ID = 31744
N_BINS = 256
FEAT = 5


class MockEvaluator(TensorDictModuleBase):
    """Feature vector (``STATE_KEY``) -> 7 categoricals over 256 ids, plus a value head.

    Like a LoRA model: logits = frozen base + trainable delta; ``reference()`` disables the
    delta. ``calls`` counts forward passes, ``ref_calls`` those under ``reference()``.
    """

    in_keys = [STATE_KEY, INSTRUCTION_KEY, ACTION_TOKENS_KEY]
    out_keys = [EVAL_TOKEN_LOG_PROBS_KEY, EVAL_ENTROPY_KEY, VALUE_KEY]

    def __init__(self, *, with_critic: bool = True) -> None:
        super().__init__()
        self.base = nn.Linear(FEAT, 7 * N_BINS)
        self.base.requires_grad_(False)
        self.delta = nn.Linear(FEAT, 7 * N_BINS)
        nn.init.normal_(self.delta.weight, std=0.3)
        self.value_head = nn.Linear(FEAT, 1) if with_critic else None
        self._reference = False
        self.calls = 0
        self.ref_calls = 0

    @contextlib.contextmanager
    def reference(self):
        self._reference = True
        try:
            yield self
        finally:
            self._reference = False

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        out = self.base(features)
        if not self._reference:
            out = out + self.delta(features)
        return out.unflatten(-1, (7, N_BINS))

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        self.calls += 1
        self.ref_calls += int(self._reference)
        feats = td.get(STATE_KEY)
        logp = self.logits(feats).log_softmax(-1)
        ids = td.get(ACTION_TOKENS_KEY) - FIRST_ACTION_ID
        td.set(EVAL_TOKEN_LOG_PROBS_KEY, logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1))
        td.set(EVAL_ENTROPY_KEY, -(logp.exp() * logp).sum(-1))
        if self.value_head is not None and not self._reference:
            td.set(VALUE_KEY, self.value_head(feats))
        return td


class MockValue(TensorDictModuleBase):
    """``V(s) = w . features`` that records how many rows it evaluated."""

    in_keys = [STATE_KEY]
    out_keys = [VALUE_KEY]

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.arange(1.0, FEAT + 1) / 10
        self.rows = 0

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        feats = td.get(STATE_KEY)
        self.rows += feats.shape[:-1].numel()
        td.set(VALUE_KEY, (feats * self.w).sum(-1, keepdim=True))
        return td


def make_rollout(
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    *,
    episode_id: torch.Tensor | None = None,
    seed: int = 0,
) -> TensorDict:
    """A ``[B, T]`` collector-like rollout: ``("next", obs)`` at done steps is a final obs that
    differs from the next root obs (the reset one)."""
    g = torch.Generator().manual_seed(seed)
    b, t = reward.shape
    state = torch.randn(b, t, FEAT, generator=g)
    next_state = torch.zeros_like(state)
    next_state[:, :-1] = state[:, 1:]
    final = torch.randn(b, t, FEAT, generator=g)
    next_state = torch.where(done.unsqueeze(-1), final, next_state)
    next_state[:, -1] = final[:, -1]
    if episode_id is None:
        episode_id = torch.zeros(b, t, dtype=torch.long)
    tokens = torch.randint(FIRST_ACTION_ID, FIRST_ACTION_ID + N_BINS, (b, t, 7), generator=g)
    tok_lp = -torch.rand(b, t, 7, generator=g) * 5
    td = TensorDict(
        {
            STATE_KEY: state,
            EPISODE_ID_KEY: episode_id,
            ACTION_TOKENS_KEY: tokens,
            TOKEN_LOG_PROBS_KEY: tok_lp,
            ACTION_LOG_PROB_KEY: tok_lp.sum(-1),
            "next": {
                STATE_KEY: next_state,
                "reward": reward.unsqueeze(-1),
                "done": done.unsqueeze(-1),
                "terminated": terminated.unsqueeze(-1),
                "truncated": (done & ~terminated).unsqueeze(-1),
            },
        },
        batch_size=[b, t],
    )
    td.set(INSTRUCTION_KEY, [[f"put object {i} on plate" for _ in range(t)] for i in range(b)])
    return td
