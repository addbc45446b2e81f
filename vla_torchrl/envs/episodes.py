"""Episode statistics of rollouts, and rounds of fresh episodes on a batched env."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tensordict import TensorDictBase

from vla_torchrl.envs.sim_errors import void_step_mask
from vla_torchrl.keys import (
    DONE_KEY,
    EPISODE_ID_KEY,
    METRIC_KEYS,
    REWARD_KEY,
    SIM_ERROR_KEY,
    next_key,
)
from vla_torchrl.objectives import functional as F

__all__ = ["episode_records", "episode_stats", "run_episodes", "unfinished_step_mask"]


# -- rollout statistics -------------------------------------------------------------------------
def episode_stats(rollout: TensorDictBase) -> dict[str, float]:
    """Return / metrics of the episodes that END inside ``rollout`` ([B, T]).

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"next": {"reward": torch.tensor([[[0.1], [1.0], [0.0]]]),
        ...     "done": torch.tensor([[[False], [True], [False]]]),
        ...     "success": torch.tensor([[[False], [True], [False]]]),
        ...     "grasped": torch.tensor([[[True], [True], [False]]]),
        ...     "continuous_grasp": torch.tensor([[[False], [True], [False]]])}}, [1, 3])
        >>> stats = episode_stats(td)
        >>> stats["episodes"], round(stats["episode_return"], 3), stats["success"]
        (1, 1.1, 1.0)
    """
    reward = rollout.get(next_key(REWARD_KEY)).squeeze(-1)
    done = rollout.get(next_key(DONE_KEY)).squeeze(-1)
    ids = F.segment_ids(done)
    returns = F.segment_sum(reward, ids, int(ids.max()) + 1)
    # an episode cut by a simulator error is void: it did not end, it was discarded
    error = rollout.get(next_key(SIM_ERROR_KEY), None)
    if error is not None:
        done = done & ~error.squeeze(-1)
    ended = torch.zeros_like(returns, dtype=torch.bool)
    ended[ids[done]] = True
    episodes = int(ended.sum())
    out: dict[str, float] = {"episodes": episodes}
    if episodes:
        out["episode_return"] = float(returns[ended].mean())
        for key in METRIC_KEYS:
            out[key] = float(rollout.get(next_key(key)).squeeze(-1)[done].float().mean())
    return out


def unfinished_step_mask(rollout: TensorDictBase) -> torch.Tensor:
    """``[B, T]`` bool: steps of a trajectory the rollout's end cut off (no ``done`` after them).

    Such a fragment neither terminated nor reached the step limit: it is no finished trajectory,
    so GRPO groups and TPO pairs must leave it out (a 1-step fragment with return 0 would count
    as a failure). ``done`` covers both endings (``terminated | truncated``).

    Examples:
        >>> from tensordict import TensorDict
        >>> done = torch.tensor([[False, True, False], [False, False, True]])[..., None]
        >>> unfinished_step_mask(TensorDict({"next": {"done": done}}, [2, 3]))
        tensor([[False, False,  True],
                [False, False, False]])
    """
    done = rollout.get(next_key(DONE_KEY)).reshape(*rollout.batch_size).bool()
    # number of episode ends at or after each step; zero = the step's trajectory never ends
    ends_ahead = done.flip(-1).long().cumsum(-1).flip(-1)
    return ends_ahead == 0


def episode_records(rollout: TensorDictBase) -> list[dict]:
    """The first episode of each env row of a ``[B, T]`` rollout that started with a reset.

    A row whose first episode was cut short by a simulator error (``SIM_ERROR_KEY``, see
    :mod:`vla_torchrl.envs.sim_errors`) gives no record: that episode is void, not a failure.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> flags = torch.tensor([[[False], [True], [True]]])
        >>> td = TensorDict({"episode_id": torch.tensor([[7, 7, 8]]),
        ...     "next": {"reward": torch.tensor([[[0.1], [1.1], [0.0]]]), "done": flags,
        ...              "grasped": flags, "continuous_grasp": flags, "success": flags}}, [1, 3])
        >>> episode_records(td)[0]["episode_id"], episode_records(td)[0]["length"]
        (7, 2)
    """
    done = rollout.get(next_key("done")).squeeze(-1)
    reward = rollout.get(next_key(REWARD_KEY)).squeeze(-1)
    void = void_step_mask(rollout)
    records = []
    for row in range(done.shape[0]):
        ends = done[row].nonzero()
        last = int(ends[0]) if len(ends) else done.shape[1] - 1
        if void[row, last]:
            continue
        record = {
            "episode_id": int(rollout.get(EPISODE_ID_KEY)[row, 0]),
            "return": float(reward[row, : last + 1].sum()),
            "length": last + 1,
        }
        for key in METRIC_KEYS:
            record[key] = int(rollout.get(next_key(key))[row, last].item())
        records.append(record)
    return records


def run_episodes(
    env,
    actor,
    *,
    episodes: int,
    max_steps: int,
    on_first_rollout: Callable[[TensorDictBase], None] | None = None,
) -> list[dict]:
    """Roll ``actor`` out until ``episodes`` episode records are in (see :func:`episode_records`).

    Each round resets every env and runs until every env's first episode has ended (at most
    ``max_steps`` steps); that episode of each env row counts. An env whose episode ended early
    (a success) waits for the others (TorchRL's partial steps) instead of starting another one,
    so every round draws exactly one episode id per env and round ``r`` plays the same episodes
    whatever the policy: every policy evaluated from the same seed gets the same scenes. (With
    auto-resets inside a round, a policy that succeeds early used up episode ids and played
    other scenes in the following rounds.) Extra rounds (at most as many again) make up for
    episodes void by a simulator error; the episode ids go on, so the replacements are new
    episodes. ``on_first_rollout`` sees the first round's rollout (e.g. to write videos).
    """
    records: list[dict] = []
    rounds = math.ceil(episodes / env.batch_size[0])
    for round_index in range(2 * rounds):
        if len(records) >= episodes:
            break
        with torch.no_grad():
            rollout = env.rollout(
                max_steps, actor, break_when_any_done=False, break_when_all_done=True
            )
        records.extend(episode_records(rollout))
        if round_index == 0 and on_first_rollout is not None:
            on_first_rollout(rollout)
    return records[:episodes]
