"""Build the environment a recipe asks for: the ManiSkill SUITE task or the toy task.

This is the one place where recipes turn an :class:`~vla_torchrl.config.train_schema.EnvConfig` into a
TorchRL env, so that training, evaluation and demo collection see the same environments.

Examples:
    >>> from vla_torchrl.config.train_schema import EnvConfig
    >>> env = make_recipe_env(EnvConfig(backend="toy", num_envs=2, width=16, height=16), seed=0)
    >>> tuple(env.batch_size), env.reset()["observation", "image"].shape[-3:]
    ((2,), torch.Size([16, 16, 3]))
"""

from __future__ import annotations

import torch
from torchrl.envs import EnvBase

from vla_torchrl.config.train_schema import EnvConfig
from vla_torchrl.envs.toy import TOY_TASKS as TOY_TASK_OPTIONS
from vla_torchrl.errors import ConfigError

__all__ = ["TOY_TASKS", "make_recipe_env", "make_recipe_env_groups", "task_names"]

#: Tasks of the toy backend (``ind`` stands in for the SUITE's ``ind`` in fast CPU runs;
#: ``reach-corner`` is the one RL learns in a CPU test budget): ``vla_torchrl.envs.toy.TOY_TASKS``.
TOY_TASKS = tuple(TOY_TASK_OPTIONS)


def task_names(backend: str) -> list[str]:
    """Names of the tasks a backend offers (for config validation and evaluation loops)."""
    if backend == "toy":
        return list(TOY_TASKS)
    if backend == "maniskill":
        from vla_torchrl.envs import SUITE

        return list(SUITE)
    raise ConfigError(f"env.backend={backend!r} is unknown; use 'maniskill' or 'toy'")


def make_recipe_env(
    env: EnvConfig,
    *,
    seed: int,
    task: str | None = None,
    num_envs: int | None = None,
    device: str | torch.device = "cpu",
    terminate_on_success: bool = True,
    same_start_groups: int = 1,
) -> EnvBase:
    """Build the env of ``env`` (``task`` / ``num_envs`` override the config's).

    Args:
        env: the env config group.
        seed: seed of the env's randomness (scene sampling, perturbations).
        task: a task name of the backend (default: ``env.task``).
        num_envs: batch size (default: ``env.num_envs``).
        device: where the env's tensors live.
        terminate_on_success: end an episode at its first success; false gives fixed-length
            episodes of ``env.max_episode_steps`` with success recorded (the training loop's
            ``collector.episodes=fixed``, :func:`~vla_torchrl.config.train_schema.episode_mode`).
        same_start_groups: each run of this many consecutive envs plays the same episodes
            (same initial states): the groups of GRPO(s), ``algo.group_size``. Both backends;
            ManiSkill on the CPU simulation only.

    Raises:
        ConfigError: unknown task for the backend.
    """
    (base,) = _make_base_envs(
        env,
        groups=1,
        seed=seed,
        task=task,
        num_envs=num_envs,
        device=device,
        terminate_on_success=terminate_on_success,
        same_start_groups=same_start_groups,
    )
    return append_user_transforms(base, env.transforms)


def make_recipe_env_groups(
    env: EnvConfig,
    *,
    groups: int,
    seed: int,
    task: str | None = None,
    device: str | torch.device = "cpu",
    terminate_on_success: bool = True,
    same_start_groups: int = 1,
) -> list[EnvBase]:
    """The scenes of :func:`make_recipe_env` as ``groups`` envs of consecutive scenes (each with
    the config's transforms), for the training loop's
    :class:`~vla_torchrl.training.overlapped_collector.OverlappedCollector`
    (``collector.env_groups``); see :func:`vla_torchrl.envs.make_env_groups`.

    Raises:
        ConfigError: ``groups > 1`` on the toy backend (it steps in this process: there is
            nothing to overlap), or a bad task / option as in :func:`make_recipe_env`.
    """
    if groups > 1 and env.backend != "maniskill":
        raise ConfigError(
            f"collector.env_groups={groups} needs env.backend=maniskill: the {env.backend} env "
            "steps in the training process, so its steps cannot overlap the policy; use 1"
        )
    bases = _make_base_envs(
        env,
        groups=groups,
        seed=seed,
        task=task,
        num_envs=None,
        device=device,
        terminate_on_success=terminate_on_success,
        same_start_groups=same_start_groups,
    )
    return [append_user_transforms(base, env.transforms) for base in bases]


def append_user_transforms(base: EnvBase, specs) -> EnvBase:
    """``base`` with the transforms of ``env.transforms`` appended in order (none: ``base``).

    Each entry is ``{_target_: package.Transform, <its arguments>}``, built with Hydra's
    ``instantiate``; a spec that does not build, or builds something other than a TorchRL
    ``Transform``, raises ConfigError naming it.
    """
    if not specs:
        return base
    from hydra.utils import instantiate
    from torchrl.envs import Transform, TransformedEnv

    env = base if isinstance(base, TransformedEnv) else TransformedEnv(base)
    for i, spec in enumerate(specs):
        try:
            transform = instantiate(dict(spec), _convert_="all")
        except Exception as err:  # noqa: BLE001 - one line naming the entry
            cause = err.__cause__ or err
            raise ConfigError(
                f"env.transforms[{i}]={dict(spec)} cannot be built: {type(cause).__name__}: "
                f"{str(cause).splitlines()[0] if str(cause) else ''}"
            ) from err
        if not isinstance(transform, Transform):
            raise ConfigError(
                f"env.transforms[{i}]: {spec.get('_target_')} built a {type(transform).__name__}, "
                "not a torchrl.envs.Transform"
            )
        env.append_transform(transform)
    return env


def _make_base_envs(
    env: EnvConfig,
    *,
    groups: int,
    seed,
    task,
    num_envs,
    device,
    terminate_on_success: bool = True,
    same_start_groups: int = 1,
) -> list[EnvBase]:
    task = task or env.task
    num_envs = num_envs or env.num_envs
    known = task_names(env.backend)
    if task not in known:
        raise ConfigError(
            f"env.task={task!r} is not a task of the {env.backend} backend; known: {known}"
        )
    if "terminate_on_success" in env.options:
        raise ConfigError(
            "env.options.terminate_on_success is set by the training loop from "
            "collector.episodes (fixed: success does not end an episode); set that instead"
        )
    if "same_start_groups" in env.options:
        raise ConfigError(
            "env.options.same_start_groups is set by the training loop: algo=grpo-s starts "
            "each group of algo.group_size envs from the same state; set algo.group_size instead"
        )
    if env.backend == "toy":
        from vla_torchrl.envs.toy import make_toy_env

        if env.width != env.height:
            raise ConfigError(
                f"the toy env is square: env.width={env.width} and env.height={env.height} differ"
            )
        # the task's preset, then the config's episode length and image size, then env.options
        options = {
            **TOY_TASK_OPTIONS[task],
            "image_size": env.width,
            "max_steps": env.max_episode_steps,
            **env.options,
            "terminate_on_success": terminate_on_success,
            "same_start_groups": same_start_groups,
        }
        try:
            return [make_toy_env(num_envs, seed=seed, device=device, **options)]
        except (TypeError, ValueError) as err:
            raise ConfigError(f"env.options for the toy backend: {err}") from err
    import inspect

    from vla_torchrl.envs import make_env
    from vla_torchrl.envs.asset_library import resolve_asset_source
    from vla_torchrl.envs.builder import make_env_groups

    allowed = set(inspect.signature(make_env).parameters) - {
        "task",
        "num_envs",
        "image_size",
        "seed",
        "max_steps",
        "device",
        "terminate_on_success",
        "same_start_groups",
    }
    unknown = sorted(set(env.options) - allowed)
    if unknown:
        raise ConfigError(
            f"env.options {unknown} are not options of the maniskill backend; known: "
            f"{', '.join(sorted(allowed))}"
        )
    try:  # assets first: a missing asset folder is reported before any scene is built
        resolve_asset_source(
            env.options.get("asset_source", "auto"), rl4vla_dir=env.options.get("rl4vla_dir")
        )
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"env.options: {err}") from err
    return make_env_groups(
        task,
        groups=groups,
        num_envs=num_envs,
        image_size=(env.height, env.width),
        seed=seed,
        max_steps=env.max_episode_steps,
        device=device,
        terminate_on_success=terminate_on_success,
        same_start_groups=same_start_groups,
        **env.options,
    )
