"""Survive simulator errors: the failing env is reset and its unfinished episode marked void.

A physics or rendering error in one of 64 simulated scenes should cost that scene's episode, not
a run of several days. :class:`SimErrorGuard` wraps an env (best: each single scene, inside its
``ParallelEnv`` worker, where an uncaught exception would kill the worker and with it the whole
batched env: TorchRL then raises "Cannot proceed, worker i dead"). When the wrapped env's step
raises, the guard

1. logs the exception (with its traceback) and counts it;
2. resets the wrapped env (retrying a few times; a simulator that cannot be reset ends the run
   with :class:`SimulatorError`);
3. returns the reset observation as the step's next observation with ``done = truncated = True``,
   ``terminated = False``, a zero reward and ``SIM_ERROR_KEY = True``.

The collector then starts a fresh episode in that env as after any episode end (TorchRL resets
done envs: the scene is reset once more, which costs one extra reset per error). Everything the
guarded env writes carries ``SIM_ERROR_KEY`` (bool ``[*B, 1]``, ``False`` on normal steps).

Consumers discard the void episode with :func:`void_step_mask` (every step of an episode that
ended in a simulator error): losses skip those steps, statistics skip those episodes, and the
number of errors is :func:`count_sim_errors`. A batched simulator without per-scene isolation
(the toy env, ManiSkill's GPU simulation) is guarded as a whole: an error resets all its scenes.

Errors in a row without one good step in between (``max_consecutive_errors``) mean the simulator
is broken, not flaky: the guard then raises :class:`SimulatorError` instead of looping forever.

Examples:
    >>> from vla_torchrl.envs.toy import ToyReachEnv
    >>> from vla_torchrl.keys import ACTION_KEY, DONE_KEY, SIM_ERROR_KEY, next_key
    >>> class Flaky(ToyReachEnv):  # raises on its 2nd step
    ...     calls = 0
    ...     def _step(self, td):
    ...         Flaky.calls += 1
    ...         if Flaky.calls == 2:
    ...             raise RuntimeError("PhysX: invalid contact")
    ...         return super()._step(td)
    >>> env = SimErrorGuard(Flaky(2, seed=0))
    >>> td = env.rollout(3, break_when_any_done=False)
    >>> td[next_key(SIM_ERROR_KEY)].squeeze(-1).tolist()
    [[False, True, False], [False, True, False]]
    >>> td[next_key(DONE_KEY)].squeeze(-1).tolist()
    [[False, True, False], [False, True, False]]
    >>> env.num_errors
    1
"""

from __future__ import annotations

import logging

import torch
from tensordict import TensorDictBase
from torchrl.data import Categorical
from torchrl.envs import EnvBase

from vla_torchrl.keys import DONE_KEY, SIM_ERROR_KEY, TERMINATED_KEY, next_key

__all__ = [
    "SimErrorGuard",
    "SimulatorError",
    "count_sim_errors",
    "guard_sim_errors",
    "void_step_mask",
]

_log = logging.getLogger(__name__)


class SimulatorError(RuntimeError):
    """The simulator keeps failing (errors in a row, or it cannot be reset)."""


class SimErrorGuard(EnvBase):
    """Wrap ``env`` so that an exception in its step resets it instead of ending the run.

    Args:
        env: the env to guard (a single scene, or a batched simulator as a whole).
        max_consecutive_errors: raise :class:`SimulatorError` after this many failed steps
            without a good step in between.
        max_reset_attempts: resets tried after an error (or for a failing reset) before
            raising :class:`SimulatorError`.

    Attributes:
        num_errors: failed steps and resets so far (in this process: inside a ``ParallelEnv``
            worker the count stays there; read the errors from ``SIM_ERROR_KEY`` instead).
    """

    def __init__(
        self, env: EnvBase, *, max_consecutive_errors: int = 3, max_reset_attempts: int = 3
    ) -> None:
        if max_consecutive_errors < 1 or max_reset_attempts < 1:
            raise ValueError(
                f"max_consecutive_errors={max_consecutive_errors} and max_reset_attempts="
                f"{max_reset_attempts} must be >= 1"
            )
        super().__init__(device=env.device, batch_size=env.batch_size)
        self.base_env = env
        self.max_consecutive_errors = max_consecutive_errors
        self.max_reset_attempts = max_reset_attempts
        self.num_errors = 0
        self._errors_in_a_row = 0
        observation_spec = env.full_observation_spec.clone()
        observation_spec[SIM_ERROR_KEY] = Categorical(
            2, shape=(*env.batch_size, 1), dtype=torch.bool, device=env.device
        )
        self.full_observation_spec = observation_spec
        self.full_action_spec = env.full_action_spec.clone()
        self.full_reward_spec = env.full_reward_spec.clone()
        self.full_done_spec = env.full_done_spec.clone()
        self.full_state_spec = env.full_state_spec.clone()

    def __getattr__(self, name: str):
        # attributes of the wrapped env (e.g. ``oracle_action`` of the toy env), as
        # TransformedEnv offers them
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base_env")
            if base is None or name.startswith("__"):
                raise
            return getattr(base, name)

    def _flag(self, value: bool) -> torch.Tensor:
        return torch.full((*self.batch_size, 1), value, dtype=torch.bool, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        self.base_env.set_seed(seed)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        out = self._reset_base(tensordict, **kwargs)
        out.set(SIM_ERROR_KEY, self._flag(False))
        return out

    def _reset_base(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        last: Exception | None = None
        for _ in range(self.max_reset_attempts):
            try:
                return self.base_env._reset(tensordict, **kwargs)
            except Exception as err:  # noqa: BLE001 - any simulator failure
                self.num_errors += 1
                last = err
                _log.warning("simulator reset failed; retrying", exc_info=True)
                tensordict = None  # retry with a plain full reset
        raise SimulatorError(
            f"the simulator could not be reset in {self.max_reset_attempts} attempts (last "
            f"error: {type(last).__name__}: {last}); check the scene/assets, or lower the load "
            "on the machine"
        ) from last

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        try:
            out = self.base_env._step(tensordict)
        except Exception as err:  # noqa: BLE001 - any simulator failure
            self.num_errors += 1
            self._errors_in_a_row += 1
            if self._errors_in_a_row >= self.max_consecutive_errors:
                raise SimulatorError(
                    f"{self._errors_in_a_row} simulator steps in a row failed (last error: "
                    f"{type(err).__name__}: {err}); the simulator seems broken rather than flaky"
                ) from err
            _log.warning(
                "simulator step failed (%s: %s); the env is reset and its unfinished episode "
                "discarded",
                type(err).__name__,
                err,
                exc_info=True,
            )
            return self._void_step()
        self._errors_in_a_row = 0
        out.set(SIM_ERROR_KEY, self._flag(False))
        return out

    def _void_step(self) -> TensorDictBase:
        out = self._reset_base(None)
        out.update(self.full_reward_spec.zero())
        for key in self.full_done_spec.keys(True, True):
            name = key[-1] if isinstance(key, tuple) else key
            out.set(key, self._flag(name != TERMINATED_KEY))  # done and truncated
        out.set(SIM_ERROR_KEY, self._flag(True))
        return out

    def close(self, *, raise_if_closed: bool = True) -> None:
        self.base_env.close(raise_if_closed=raise_if_closed)
        super().close(raise_if_closed=raise_if_closed)


def guard_sim_errors(env: EnvBase, **kwargs) -> EnvBase:
    """``env`` guarded by a :class:`SimErrorGuard`, unless it already reports ``SIM_ERROR_KEY``
    (e.g. a ``ParallelEnv`` of guarded scenes from :func:`vla_torchrl.envs.make_env`).

    Examples:
        >>> from vla_torchrl.envs.toy import ToyReachEnv
        >>> guarded = guard_sim_errors(ToyReachEnv(2))
        >>> type(guarded).__name__, guard_sim_errors(guarded) is guarded
        ('SimErrorGuard', True)
    """
    if SIM_ERROR_KEY in env.full_observation_spec.keys(True):
        return env
    return SimErrorGuard(env, **kwargs)


def void_step_mask(rollout: TensorDictBase) -> torch.Tensor:
    """Bool ``[B, T]``: the steps of episodes cut short by a simulator error (to discard).

    An episode is the run of steps up to a ``("next", done)``; it is void when its last step
    has ``("next", SIM_ERROR_KEY)``. All False when the rollout has no such key.

    Examples:
        >>> from tensordict import TensorDict
        >>> flags = lambda *rows: torch.tensor(rows)[..., None]
        >>> td = TensorDict({"next": {
        ...     "done": flags([False, True, False, True], [False, False, True, False]),
        ...     "sim_error": flags([False, False, False, True], [False, False, False, False])}},
        ...     [2, 4])
        >>> void_step_mask(td).tolist()
        [[False, False, True, True], [False, False, False, False]]
    """
    done = rollout.get(next_key(DONE_KEY)).reshape(*rollout.batch_size)
    error = rollout.get(next_key(SIM_ERROR_KEY), None)
    if error is None:
        return torch.zeros_like(done, dtype=torch.bool)
    error = error.reshape(*rollout.batch_size).bool()
    ends = (done.bool() | error).reshape(-1, done.shape[-1])
    # episode ids along each row (a new one after every end), made unique across rows
    starts = torch.zeros_like(ends, dtype=torch.long)
    starts[:, 1:] = ends[:, :-1].long()
    ids = starts.cumsum(-1) + torch.arange(ends.shape[0])[:, None] * (ends.shape[1] + 1)
    void_ids = ids[error.reshape(ends.shape)]
    return torch.isin(ids, void_ids).reshape(done.shape)


def count_sim_errors(rollout: TensorDictBase) -> int:
    """Number of simulator errors in a rollout (0 when it has no ``SIM_ERROR_KEY``).

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"next": {"sim_error": torch.tensor([[[True], [False]]])}}, [1, 2])
        >>> count_sim_errors(td)
        1
    """
    error = rollout.get(next_key(SIM_ERROR_KEY), None)
    return 0 if error is None else int(error.sum())
