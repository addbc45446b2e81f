"""Advantage modules that run on collector output (``[B, T]`` tensordicts with ``"next"``).

They only move tensors between the tensordict and :mod:`.functional`:

* :class:`GAEAdvantage` - GAE, Eq. (2) (PPO; PPO-ORZ with ``gamma = lmbda = 1``);
* :class:`GroupRelativeAdvantage` - GRPO's group-relative advantages, Eq. (3)-(6).

Why not TorchRL's ``GAE`` module: it evaluates the value network on **every** next
observation (or reads a stored ``("next", "state_value")``). For a 7B VLA a value call is a full
forward pass, and ``V(s_{t+1})`` is already known: it is the stored value of the following step
of the same trajectory, except at the last step of the rollout and at truncated steps, where the next
observation is the final one of an episode that the rollout never stored at the root.
:class:`GAEAdvantage` evaluates only those. When ``("next", VALUE_KEY)`` is present the two
modules compute the same thing (checked in the tests); the recursion itself is TorchRL's
functional GAE.

Why not TorchRL's group utilities for GRPO: ``group_key`` on its value estimators standardises
the *advantages* per group, and ``torchrl.objectives.llm.MCAdvantage`` gives one outcome reward
per LLM completion; neither normalises per-step (non-zero) rewards over a group of
trajectories and sums them over the future steps of each trajectory, as Eq. (3)-(6) do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor

from vla_torchrl.keys import (
    ADVANTAGE_KEY,
    DONE_KEY,
    REWARD_KEY,
    TERMINATED_KEY,
    VALUE_KEY,
    VALUE_TARGET_KEY,
    next_key,
)
from vla_torchrl.objectives import functional as F

__all__ = ["GAEAdvantage", "GroupRelativeAdvantage"]


def _per_step(x: Tensor, batch_shape: torch.Size, name: NestedKey) -> Tensor:
    """``[*B, T, 1]`` or ``[*B, T]`` -> ``[*B, T]``."""
    if x.shape == batch_shape:
        return x
    if x.shape == (*batch_shape, 1):
        return x.squeeze(-1)
    raise ValueError(
        f"{name!r} has shape {tuple(x.shape)}; expected the tensordict's batch shape "
        f"{tuple(batch_shape)} or that plus a trailing 1."
    )


class _KeyedModule(TensorDictModuleBase):
    """``_AcceptedKeys`` + ``set_keys`` as on TorchRL losses and value estimators."""

    @dataclass
    class _AcceptedKeys:
        pass

    def __init__(self) -> None:
        super().__init__()
        self.tensor_keys = self._AcceptedKeys()

    def set_keys(self, **kwargs: NestedKey) -> _KeyedModule:
        """Rename the keys this module reads or writes (``None`` restores the default)."""
        fields = self._AcceptedKeys.__dataclass_fields__
        for name, value in kwargs.items():
            if name not in fields:
                raise ValueError(
                    f"{name!r} is not a key of {type(self).__name__}; accepted: {sorted(fields)}."
                )
            setattr(
                self.tensor_keys,
                name,
                getattr(self._AcceptedKeys(), name) if value is None else value,
            )
        return self


class GAEAdvantage(_KeyedModule):
    """Generalized advantage estimation on a ``[..., T]`` rollout (Eq. 2).

    Reads ``("next", reward)``, ``("next", done)``, ``("next", terminated)``, the rollout values
    ``VALUE_KEY`` and the next values ``("next", VALUE_KEY)`` when present. Without stored next
    values it needs ``value_network`` (any module reading the observation keys and writing
    ``VALUE_KEY``, e.g. the actor with its critic attached: the value comes from ``h^0``, which
    does not depend on the action tokens) and evaluates it, under ``no_grad``, only on the ``"next"`` observations of the
    last time step and of truncated steps; elsewhere ``V(s_{t+1})`` is the following step's value,
    and at terminated steps it is not used. Missing ``VALUE_KEY`` is computed (and written) too.
    A step counts as truncated when it is ``done`` and not ``terminated`` (so
    ``("next", truncated)`` need not be present).

    Writes ``ADVANTAGE_KEY`` and ``VALUE_TARGET_KEY`` (``[..., T, 1]``).

    Args:
        gamma: discount (paper/RL4VLA 0.99; PPO-ORZ 1.0).
        lmbda: GAE ``lambda`` (0.95; PPO-ORZ 1.0).
        value_network: optional value module, see above.

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({
        ...     "state_value": torch.tensor([[[0.5], [0.5]]]),
        ...     "next": {"reward": torch.tensor([[[0.0], [1.0]]]),
        ...              "done": torch.tensor([[[False], [True]]]),
        ...              "terminated": torch.tensor([[[False], [True]]])}}, batch_size=[1, 2])
        >>> GAEAdvantage(gamma=1.0, lmbda=1.0)(td)["advantage"].squeeze(-1)
        tensor([[0.5000, 0.5000]])
    """

    @dataclass
    class _AcceptedKeys:
        value: NestedKey = VALUE_KEY
        reward: NestedKey = REWARD_KEY
        done: NestedKey = DONE_KEY
        terminated: NestedKey = TERMINATED_KEY
        advantage: NestedKey = ADVANTAGE_KEY
        value_target: NestedKey = VALUE_TARGET_KEY

    def __init__(
        self,
        *,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        value_network: TensorDictModuleBase | None = None,
    ) -> None:
        super().__init__()
        for name, v in {"gamma": gamma, "lmbda": lmbda}.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v} must lie in [0, 1] (PPO-ORZ uses 1.0).")
        self.gamma = gamma
        self.lmbda = lmbda
        self.value_network = value_network

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        return [k.value, next_key(k.reward), next_key(k.done), next_key(k.terminated)]

    @property
    def out_keys(self) -> list[NestedKey]:
        return [self.tensor_keys.advantage, self.tensor_keys.value_target]

    def _values(self, td: TensorDictBase, key: NestedKey) -> Tensor:
        if self.value_network is None:
            raise KeyError(
                f"{key!r} is not in the rollout and GAEAdvantage has no value_network to "
                "compute it: pass value_network=... or store the values at collection time."
            )
        with torch.no_grad():
            return self.value_network(td.copy()).get(self.tensor_keys.value)

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        k = self.tensor_keys
        if tensordict.ndim < 1:
            raise ValueError("GAEAdvantage needs a time dimension: batch dims [..., T].")
        bs = tensordict.batch_size
        nxt = tensordict.get("next")
        reward = _per_step(nxt.get(k.reward), bs, next_key(k.reward))
        terminated = _per_step(nxt.get(k.terminated), bs, next_key(k.terminated)).bool()
        done = _per_step(nxt.get(k.done), bs, next_key(k.done)).bool() | terminated
        value = tensordict.get(k.value, None)
        if value is None:
            value = self._values(tensordict, k.value)
            tensordict.set(k.value, value)
        value = _per_step(value, bs, k.value).to(reward.dtype)
        next_value = nxt.get(k.value, None)
        if next_value is not None:
            next_value = _per_step(next_value, bs, next_key(k.value)).to(reward.dtype)
        else:
            # V(s_{t+1}) = V of the following step, unless the episode ended at t
            next_value = torch.zeros_like(value)
            next_value[..., :-1] = value[..., 1:]
            # evaluate the final observation only where it is bootstrapped from:
            # the rollout's last step (not terminated) and truncated steps
            need = done & ~terminated
            need[..., -1] = ~terminated[..., -1]
            if bool(need.any()):
                out = self._values(nxt[need], next_key(k.value))
                next_value[need] = out.reshape(-1).to(next_value.dtype)
        adv, target = F.generalized_advantage_estimate(
            reward,
            value,
            next_value,
            done=done,
            terminated=terminated,
            gamma=self.gamma,
            lmbda=self.lmbda,
        )  # Eq. (2)
        tensordict.set(k.advantage, adv.unsqueeze(-1))
        tensordict.set(k.value_target, target.unsqueeze(-1))
        return tensordict


class GroupRelativeAdvantage(_KeyedModule):
    """GRPO's group-relative advantages on a ``[B, T]`` rollout (Eq. 3-4 or Eq. 5-6).

    Trajectories are cut at ``("next", done)``. Groups (Sec. 4.1):

    * ``group_key=None`` (GRPO): every trajectory of the tensordict is in one group, i.e. "the
      trajectories collected from all parallel environments for one task episode" - pass one
      task episode's rollout at a time;
    * ``group_key=EPISODE_ID_KEY`` (GRPO(s)): trajectories are grouped by the id read at each
      step, so those reset from the same initial state share a group.

    See :func:`.functional.group_relative_advantage` for the edge cases (equal rewards,
    single valid reward, masks). Writes ``ADVANTAGE_KEY`` ``[B, T, 1]``.

    Args:
        mode: ``"process"`` (Eq. 3-4, non-zero rewards only) or ``"whole"`` (Eq. 5-6).
        group_key: key of the per-step group ids, or ``None``.
        mask_key: optional key of a ``[B, T]`` bool mask of real (not padded) steps.

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"next": {
        ...     "reward": torch.tensor([[[0.0], [1.0]], [[0.0], [0.0]]]),
        ...     "done": torch.zeros(2, 2, 1, dtype=torch.bool)}}, batch_size=[2, 2])
        >>> GroupRelativeAdvantage(mode="whole")(td)["advantage"].squeeze(-1)
        tensor([[ 1.0000,  1.5000],
                [-1.0000, -0.5000]])
    """

    @dataclass
    class _AcceptedKeys:
        reward: NestedKey = REWARD_KEY
        done: NestedKey = DONE_KEY
        advantage: NestedKey = ADVANTAGE_KEY

    def __init__(
        self,
        *,
        mode: Literal["process", "whole"] = "process",
        group_key: NestedKey | None = None,
        mask_key: NestedKey | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("process", "whole"):
            raise ValueError(f"mode={mode!r} must be 'process' (Eq. 3-4) or 'whole' (Eq. 5-6).")
        self.mode = mode
        self.group_key = group_key
        self.mask_key = mask_key

    @property
    def in_keys(self) -> list[NestedKey]:
        keys = [next_key(self.tensor_keys.reward), next_key(self.tensor_keys.done)]
        return keys + [k for k in (self.group_key, self.mask_key) if k is not None]

    @property
    def out_keys(self) -> list[NestedKey]:
        return [self.tensor_keys.advantage]

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        k = self.tensor_keys
        if tensordict.ndim < 1:
            raise ValueError("GroupRelativeAdvantage needs a time dimension: batch dims [..., T].")
        bs = tensordict.batch_size
        nxt = tensordict.get("next")
        reward = _per_step(nxt.get(k.reward), bs, next_key(k.reward))
        done = _per_step(nxt.get(k.done), bs, next_key(k.done)).bool()
        t = bs[-1]
        group = mask = None
        if self.group_key is not None:
            group = _per_step(tensordict.get(self.group_key), bs, self.group_key).reshape(-1, t)
        if self.mask_key is not None:
            mask = _per_step(tensordict.get(self.mask_key), bs, self.mask_key).reshape(-1, t)
        adv = F.group_relative_advantage(
            reward.reshape(-1, t),
            group=group,
            done=done.reshape(-1, t),
            mask=mask,
            mode=self.mode,
        )  # Eq. (3)-(6)
        tensordict.set(k.advantage, adv.reshape(bs).unsqueeze(-1))
        return tensordict
