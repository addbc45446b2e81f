"""Rollouts whose policy passes overlap the env steps: the envs in groups, stepped in turn.

TorchRL's ``Collector`` alternates: the policy acts on every env, then every env steps, so on a
CPU machine the env workers idle while the policy runs and the policy's core idles while the
envs step. :class:`OverlappedCollector` splits the envs into groups (one ``ParallelEnv`` each)
and, while one group steps in its worker processes, runs the policy on the group that has just
answered. Each rollout is what the ``Collector`` of the training loop yields
(``reset_at_each_iter=True``): every env reset, then ``steps_per_env`` steps of
``env.step_and_maybe_reset``, as a ``[num_envs, steps_per_env]`` TensorDict with the groups'
envs in order. The groups are stepped in a fixed order, so a run is reproducible: with the
same seeds it draws the same actions in every rollout (but not the ``Collector``'s, which
samples all envs in one policy call).

Examples:
    >>> import torch
    >>> from tensordict.nn import TensorDictModule
    >>> from vla_torchrl.envs.toy import ToyReachEnv
    >>> from vla_torchrl.keys import ACTION_KEY, IMAGE_KEY
    >>> still = TensorDictModule(lambda image: torch.zeros(*image.shape[:-3], 7),
    ...                          in_keys=[IMAGE_KEY], out_keys=[ACTION_KEY])
    >>> collector = OverlappedCollector([ToyReachEnv(2), ToyReachEnv(3)], still,
    ...                                 steps_per_env=4)
    >>> next(iter(collector)).batch_size
    torch.Size([5, 4])
    >>> collector.shutdown()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

__all__ = ["OverlappedCollector", "seed_env_groups"]


def seed_env_groups(envs: Sequence[EnvBase], seed: int) -> int:
    """Seed ``envs`` in turn, each with the seed the previous one returns, as a TorchRL batched
    env seeds its workers (``ParallelEnv.set_seed`` hands worker ``i + 1`` the seed that worker
    ``i`` returns): the scenes of ``make_env_groups`` then get the seeds they get in the one
    env of ``make_env``, and play its episodes. Returns the next seed.

    Examples:
        >>> from vla_torchrl.envs.toy import ToyReachEnv
        >>> one, two = ToyReachEnv(1), ToyReachEnv(1)
        >>> after = seed_env_groups([one, two], 3)
        >>> one.seed == 3 and two.seed == ToyReachEnv(1).set_seed(3) and after != two.seed
        True
    """
    for env in envs:
        seed = env.set_seed(seed)
    return seed


class OverlappedCollector:
    """Fresh-episode rollouts of env ``groups``, the policy of one group overlapping the others'
    steps.

    Args:
        groups: the envs, each with batch size ``[n_g]`` (e.g. ``ParallelEnv``s of the scenes
            of :func:`vla_torchrl.envs.make_env_groups`); a rollout concatenates them in order.
        policy: maps an env's TensorDict to its action (sampling: run under
            ``ExplorationType.RANDOM``, as TorchRL's collectors do).
        steps_per_env: steps of each env per rollout.

    A group's ``step_and_maybe_reset`` runs in a thread of this process; a ``ParallelEnv``
    waits on its worker processes' pipes there, so the policy, in the calling thread, has the
    cores the workers leave. Two groups suffice to hide one behind the other.
    """

    def __init__(
        self,
        groups: Sequence[EnvBase],
        policy: TensorDictModuleBase,
        *,
        steps_per_env: int,
    ) -> None:
        if len(groups) < 1:
            raise ValueError("OverlappedCollector needs at least one env group")
        if steps_per_env < 1:
            raise ValueError(f"steps_per_env={steps_per_env}; use at least 1")
        for index, env in enumerate(groups):
            if len(env.batch_size) != 1:
                raise ValueError(
                    f"env group {index} has batch size {tuple(env.batch_size)}; each group must "
                    "be a flat batch of envs [n]"
                )
        self.groups = list(groups)
        self.policy = policy
        self.steps_per_env = steps_per_env
        self._threads = ThreadPoolExecutor(
            max_workers=len(self.groups), thread_name_prefix="env-group"
        )

    @property
    def num_envs(self) -> int:
        return sum(env.batch_size[0] for env in self.groups)

    def set_seed(self, seed: int) -> int:
        """Seed the groups as one env of all their scenes would be: see
        :func:`seed_env_groups`."""
        return seed_env_groups(self.groups, seed)

    def __iter__(self) -> Iterator[TensorDictBase]:
        while True:
            yield self.rollout()

    def rollout(self) -> TensorDictBase:
        """One rollout: every env reset, then ``steps_per_env`` steps; ``[num_envs, T]``."""
        groups, steps = self.groups, self.steps_per_env
        # resets overlap too: group g + 1 resets while the policy acts on group g
        pending: list[Future] = [self._threads.submit(env.reset) for env in groups]
        for g, env in enumerate(groups):
            pending[g] = self._threads.submit(env.step_and_maybe_reset, self._act(pending[g]))
        trajectories: list[list[TensorDictBase]] = [[] for _ in groups]
        for t in range(steps):
            for g, env in enumerate(groups):
                out, following = pending[g].result()
                trajectories[g].append(out)
                if t + 1 < steps:
                    pending[g] = self._threads.submit(
                        env.step_and_maybe_reset, self._act_now(following)
                    )
        return torch.cat([torch.stack(steps_g, dim=1) for steps_g in trajectories], dim=0)

    def _act(self, future: Future) -> TensorDictBase:
        return self._act_now(future.result())

    def _act_now(self, tensordict: TensorDictBase) -> TensorDictBase:
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            return self.policy(tensordict)

    def shutdown(self) -> None:
        """Stop the threads and close the groups (as TorchRL's ``Collector.shutdown``)."""
        self._threads.shutdown(wait=True)
        for env in self.groups:
            if not env.is_closed:
                env.close()
