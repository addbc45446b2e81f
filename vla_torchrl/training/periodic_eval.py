"""Evaluation during training: the same episodes at the evaluation temperature, every N env steps.

The paper's training curves (Fig. 5, 6) plot the success of evaluation episodes against environment
steps. :class:`PeriodicEvaluation` runs ``collector.eval_episodes`` episodes of the training task
with the current weights at ``model.eval_temperature`` (paper: 0.6), on an env of its own whose
seed is fixed for the whole run (or on the training env between rollouts,
``collector.eval_env=training``), so every evaluation replays the same episodes and the curve
measures the policy, not the draw of episodes. Action sampling is seeded too and runs inside
``torch.random.fork_rng``: evaluating does not change the training's random streams, so a resumed
run stays identical to an uninterrupted one.

Logged (``eval/`` names): ``success``, ``grasped``, ``continuous_grasp``, ``episode_return``,
``episodes``, and ``perf/eval_s``.

Examples:
    >>> from vla_torchrl.training.periodic_eval import eval_due
    >>> [eval_due(step, 128, every=512, total=2048) for step in (384, 512, 640, 2048)]
    [False, True, False, True]
"""

from __future__ import annotations

import time

import torch
from torchrl.envs import EnvBase

from vla_torchrl.config.train_schema import TrainConfig
from vla_torchrl.envs.episodes import run_episodes
from vla_torchrl.envs.sim_errors import guard_sim_errors
from vla_torchrl.keys import METRIC_KEYS
from vla_torchrl.modules import PolicyBundle
from vla_torchrl.training.environments import make_recipe_env
from vla_torchrl.utils.threads import keep_torch_threads

__all__ = ["EVAL_SEED_OFFSET", "PeriodicEvaluation", "due", "eval_due"]

#: The evaluation env's seed is ``seed + EVAL_SEED_OFFSET``: episodes the training never sees.
EVAL_SEED_OFFSET = 1_000_000_007


def due(step: int, frames: int, *, every: int, total: int | None = None) -> bool:
    """The one "is it due?" of the loops: the last ``frames`` env steps (up to ``step``) crossed a
    multiple of ``every`` (``every <= 0``: never), or ``step`` reached ``total`` (when given).

    Examples:
        >>> [due(s, 16, every=32) for s in (16, 32, 48, 64)]
        [False, True, False, True]
        >>> due(80, 16, every=0, total=80)  # checkpoints: always at the end
        True
    """
    crossed = every > 0 and step // every != (step - frames) // every
    return crossed or (total is not None and step >= total)


def eval_due(step: int, frames: int, *, every: int, total: int) -> bool:
    """Evaluation: every ``every`` env steps and at the end; never with ``every=0``."""
    return every > 0 and due(step, frames, every=every, total=total)


class PeriodicEvaluation:
    """Evaluates the current policy of a run on fixed episodes (see the module docstring).

    Args:
        cfg: the run's config (``env``, ``collector.eval_episodes`` / ``eval_num_envs``,
            ``model.eval_temperature``).
        bundle: the policy being trained (its weights are used as they are at each call).
        training_env: the training env, to evaluate on between rollouts instead of building
            one (``collector.eval_env=training``; the config's ``validate`` checks that it is
            the env an evaluation of its own would build). It is reseeded for the evaluation
            and left open: the training loop reseeds it before its next rollout.
    """

    def __init__(
        self, cfg: TrainConfig, bundle: PolicyBundle, training_env: EnvBase | None = None
    ) -> None:
        self.cfg = cfg
        self.episodes = cfg.collector.eval_episodes
        self.num_envs = min(cfg.collector.eval_num_envs or cfg.env.num_envs, self.episodes)
        self.seed = cfg.seed + EVAL_SEED_OFFSET
        self.actor = bundle.eval_actor(temperature=cfg.model.eval_temperature)
        self._env = None
        self._training_env = training_env

    def __call__(self) -> dict[str, float]:
        """Run the evaluation episodes; returns the ``eval/`` and ``perf/eval_s`` entries.

        Training continues on the torch threads it had: the evaluation env, a ``ParallelEnv``
        on ManiSkill, lowers this process's count while it is open (see
        :mod:`vla_torchrl.utils.threads`).
        """
        with keep_torch_threads():
            return self._evaluate()

    def _evaluate(self) -> dict[str, float]:
        t0 = time.perf_counter()
        if self._training_env is not None:
            self._env = self._training_env
        elif self._env is None:  # built on first use: a run that never evaluates pays nothing
            env = make_recipe_env(self.cfg.env, seed=self.seed, num_envs=self.num_envs)
            self._env = guard_sim_errors(env)
        env = self._env
        env.set_seed(self.seed)  # restart the episode ids: the same episodes every time
        with torch.random.fork_rng():  # CPU and every CUDA generator
            torch.manual_seed(self.seed)
            records = run_episodes(
                env, self.actor, episodes=self.episodes, max_steps=self.cfg.env.max_episode_steps
            )
        n = max(len(records), 1)
        out = {f"eval/{key}": sum(r[key] for r in records) / n for key in METRIC_KEYS}
        out["eval/episode_return"] = sum(r["return"] for r in records) / n
        out["eval/episodes"] = float(len(records))
        out["perf/eval_s"] = time.perf_counter() - t0
        return out

    def close(self) -> None:
        """Close the evaluation env (if it was built; the training env is the loop's)."""
        if self._env is not None and self._env is not self._training_env:
            self._env.close()
            self._env = None
