"""``make_env``: a suite task as a batched TorchRL env.

Examples:
    >>> from vla_torchrl.envs.builder import make_env
    >>> env = make_env("ind", num_envs=2, image_size=(224, 224))  # doctest: +SKIP
    >>> td = env.rollout(3)                                          # doctest: +SKIP
    >>> td["next", "observation", "image"].shape                     # doctest: +SKIP
    torch.Size([2, 3, 224, 224, 3])
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torchrl.envs import EnvBase, ParallelEnv, SerialEnv, TransformedEnv

from vla_torchrl.envs.asset_library import AssetLibrary, AssetSource, resolve_asset_source
from vla_torchrl.envs.suite import SUITE, TaskSpec
from vla_torchrl.errors import ConfigError
from vla_torchrl.utils.lifetime import in_worker

__all__ = [
    "build_scene_config",
    "episode_numbering",
    "make_env",
    "make_env_groups",
    "perturbation_transform",
]

logger = logging.getLogger(__name__)


def build_scene_config(spec: TaskSpec, library: AssetLibrary):
    """The :class:`PutOnSceneConfig` of ``spec`` with the assets of ``library``."""
    from vla_torchrl.envs.maniskill import PutOnSceneConfig

    s = spec.scene
    return PutOnSceneConfig(
        objects=library.pool(s.object_pool),
        receptacles=library.pool(s.receptacle_pool),
        tables=library.pool(s.table_pool),
        num_objects=s.num_objects,
        num_receptacles=s.num_receptacles,
        distractor_receptacles=library.pool(s.distractor_pool) if s.distractor_pool else (),
        placement=s.placement,
        random_robot_pose=s.random_robot_pose,
        reposition_step=s.reposition_step,
    )


def _single_env(
    task: str | TaskSpec,
    asset_source: str,
    asset_seed: int,
    rl4vla_dir: str | None,
    env_kwargs: dict,
):
    """Build one CPU ``PutOnEnv`` (runs in the worker process for ``ParallelEnv``)."""
    from vla_torchrl.envs.maniskill.put_on_env import PutOnEnv

    library = AssetLibrary.load(asset_source, rl4vla_dir=rl4vla_dir, seed=asset_seed)  # type: ignore[arg-type]
    # the spec itself travels to ParallelEnv's (spawned) workers, so tasks registered at run
    # time (register_task) need no registration there
    spec = task if isinstance(task, TaskSpec) else SUITE[task]
    return PutOnEnv(build_scene_config(spec, library), **env_kwargs)


def _guarded_single_env(
    task: str | TaskSpec,
    asset_source: str,
    asset_seed: int,
    rl4vla_dir: str | None,
    env_kwargs: dict,
):
    """:func:`_single_env` inside a :class:`~vla_torchrl.envs.sim_errors.SimErrorGuard`: a
    simulator error resets this scene only, instead of killing its ``ParallelEnv`` worker."""
    from vla_torchrl.envs.sim_errors import SimErrorGuard

    return SimErrorGuard(_single_env(task, asset_source, asset_seed, rl4vla_dir, env_kwargs))


def _unseen_templates() -> Sequence[str]:
    from vla_torchrl.envs.instruction_templates import UNSEEN_INSTRUCTION_TEMPLATES

    return UNSEEN_INSTRUCTION_TEMPLATES


def perturbation_transform(spec: TaskSpec, library: AssetLibrary, *, seed: int | None = 0):
    """The TorchRL transform of ``spec``'s perturbation, or ``None`` when it has none.

    Texture/noise use ``DynamicTextureOverlay`` with the library's 16 distractor textures;
    ``instruct`` uses ``InstructionRephrase`` with the 16 unseen templates (Appendix A.4).
    """
    p = spec.perturbation
    if p is None:
        return None
    transforms = importlib.import_module("vla_torchrl.envs.transforms")
    if p.kind in ("texture", "noise"):
        textures = [torch.from_numpy(t.image().copy()) for t in library.textures]
        return transforms.DynamicTextureOverlay(textures, alpha=p.alpha, region=p.region, seed=seed)
    return transforms.InstructionRephrase(_unseen_templates(), seed=seed)


def episode_numbering(num_envs: int, same_start_groups: int = 1) -> list[tuple[int, int]]:
    """``(episode_offset, episode_stride)`` of each of ``num_envs`` CPU envs (one per worker).

    Env ``i`` plays episodes ``offset, offset + stride, ...``. With ``same_start_groups = g``
    each run of ``g`` consecutive envs shares its offset, so the k-th episode of every env of a
    group is the same episode id, hence the same initial state (GRPO(s), paper Sec. 4.1): the
    groups start together when the envs reset together (one episode per env per rollout); with
    resets at different times a group's envs still play the same sequence of episodes.

    Examples:
        >>> episode_numbering(4)
        [(0, 4), (1, 4), (2, 4), (3, 4)]
        >>> episode_numbering(4, same_start_groups=2)
        [(0, 2), (0, 2), (1, 2), (1, 2)]
    """
    if same_start_groups < 1:
        raise ConfigError(f"same_start_groups={same_start_groups} must be >= 1")
    stride = -(-num_envs // same_start_groups)  # number of groups (the last may be smaller)
    return [(i // same_start_groups, stride) for i in range(num_envs)]


def make_env(task: str = "ind", **kwargs) -> EnvBase:
    """A task of :data:`SUITE` as a TorchRL env with batch size ``[num_envs]``.

    Keyword arguments: those of :func:`make_env_groups` but ``groups`` (its signature is this
    function's: ``inspect.signature(make_env)``).

    Returns:
        the env (a ``TransformedEnv`` when a perturbation is appended).
    """
    if "groups" in kwargs:
        raise TypeError("make_env() builds one env; use make_env_groups(..., groups=G)")
    (env,) = make_env_groups(task, groups=1, **kwargs)
    return env


def make_env_groups(
    task: str = "ind",
    *,
    groups: int,
    num_envs: int = 1,
    asset_source: AssetSource = "auto",
    image_size: tuple[int, int] = (480, 640),
    seed: int = 0,
    device: str | torch.device | None = None,
    parallel: bool | None = None,
    sim_backend: Literal["auto", "cpu", "gpu"] = "auto",
    robot: Literal["auto", "widowx", "panda"] = "auto",
    max_steps: int = 80,
    terminate_on_success: bool = True,
    rl4vla_dir: str | None = None,
    asset_seed: int = 0,
    perturb: bool = True,
    guard_sim_errors: bool = True,
    same_start_groups: int = 1,
) -> list[EnvBase]:
    """The ``num_envs`` scenes of ``make_env(task, num_envs=num_envs, ...)`` as ``groups`` envs of
    consecutive scenes (CPU: one ``ParallelEnv`` each), for
    :class:`~vla_torchrl.training.overlapped_collector.OverlappedCollector`: each scene plays
    the episodes it plays in the one env (the same episode numbering; seeded with
    :func:`~vla_torchrl.training.overlapped_collector.seed_env_groups`, the same seeds).

    Args:
        task: a key of :data:`vla_torchrl.envs.suite.SUITE` (``"ind"``, ``"obj-rep"``...).
        groups: number of envs to split the scenes into (1: :func:`make_env`'s one env); it
            must divide ``num_envs``; more than 1 only on the CPU simulation.
        num_envs: number of parallel scenes (in all groups together).
        asset_source: ``"auto"`` (RL4VLA when found, else procedural), ``"rl4vla"``,
            ``"procedural"``.
        image_size: camera ``(H, W)``; the paper uses ``(480, 640)``.
        seed: base seed: episode ``e`` is the same scene for the same seed, in any worker.
        device: output device (default: CPU for the CPU simulation, CUDA for the GPU one).
        parallel: CPU only: one worker process per env (``ParallelEnv``, default when
            ``num_envs > 1``) or all in this process (``SerialEnv``). Same tensordicts either way.
        sim_backend: ``"auto"`` picks the GPU simulation when CUDA is present (untested here).
        robot: ``"auto"`` (WidowX when its description is found, else Panda).
        max_steps: episode length (80 in the paper).
        terminate_on_success: end an episode at its first success (default); false: record
            success and run every episode to ``max_steps`` (fixed-length episodes).
        rl4vla_dir: RL4VLA asset directory (default: found by :class:`AssetPaths`).
        asset_seed: seed of the procedural images.
        perturb: append the task's perturbation transform (texture/noise/instruct).
        guard_sim_errors: wrap each scene (CPU) or the batched simulation (GPU) in a
            :class:`~vla_torchrl.envs.sim_errors.SimErrorGuard`: a simulator error resets the
            failing env and marks its step ``SIM_ERROR_KEY`` instead of ending the run.
        same_start_groups: CPU only: each run of this many consecutive envs plays the same
            episode ids (same initial states), the groups of GRPO(s); see
            :func:`episode_numbering`.

    Returns:
        the ``groups`` envs, ``num_envs / groups`` scenes each (``TransformedEnv``s when a
        perturbation is appended; each group its own transform, seeded alike).
    """
    if task not in SUITE:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(SUITE)}")
    if num_envs < 1:
        raise ValueError(f"num_envs={num_envs}; use at least 1")
    if groups < 1 or num_envs % groups:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide num_envs={num_envs} (equal groups of scenes)"
        )
    spec = SUITE[task]
    source = resolve_asset_source(asset_source, rl4vla_dir=rl4vla_dir)
    if sim_backend == "auto":
        sim_backend = "gpu" if torch.cuda.is_available() else "cpu"
    env_kwargs = dict(
        image_size=tuple(image_size),
        seed=seed,
        robot=robot,
        max_steps=max_steps,
        terminate_on_success=terminate_on_success,
    )
    numbering = episode_numbering(num_envs, same_start_groups)
    if sim_backend == "gpu" and same_start_groups > 1:
        raise ConfigError(
            f"same_start_groups={same_start_groups} is implemented for the CPU simulation only "
            "(one env per worker); use sim_backend='cpu' or same_start_groups=1"
        )
    if same_start_groups > 1 and (num_envs // groups) % same_start_groups:
        raise ValueError(
            f"groups={groups} would split the same-start groups of {same_start_groups} envs: each "
            f"env group's {num_envs // groups} scenes must hold whole same-start groups"
        )
    if sim_backend == "gpu" and groups > 1:
        raise ConfigError(
            f"groups={groups}: env groups are implemented for the CPU simulation only (one "
            "process per scene); the GPU simulation steps all its scenes in one call"
        )
    if sim_backend == "gpu":
        # GPU simulation: one ManiSkill env object holding num_envs scenes (not tested on CPU CI)
        env_kwargs.update(num_envs=num_envs, sim_backend="gpu", device=device or "cuda")
        build = _guarded_single_env if guard_sim_errors else _single_env
        envs: list[EnvBase] = [build(spec, source, asset_seed, rl4vla_dir, env_kwargs)]
    else:
        env_kwargs["device"] = device or "cpu"
        fns = [
            functools.partial(
                _guarded_single_env if guard_sim_errors else _single_env,
                spec,
                source,
                asset_seed,
                rl4vla_dir,
                {**env_kwargs, "episode_offset": offset, "episode_stride": stride},
            )
            for offset, stride in numbering
        ]
        parallel = num_envs > 1 if parallel is None else parallel
        if parallel:
            # workers end with this process, also when it is SIGKILLed (no orphaned scenes)
            fns = [functools.partial(in_worker, fn) for fn in fns]
            # use_buffers=False: the workers answer through their pipes, which the parent
            # blocks on. With shared buffers TorchRL 0.14's parent spin-polls a done flag and
            # so takes a whole core while the workers step; on 2 cores, 4 scenes at 96x96
            # stepped in 71 ms that way and in 57 ms through the pipes.
            # metadata_from_workers: each worker reports its env's specs as it starts, instead
            # of the parent building (and closing) every scene once just to read them, one
            # after the other (~5.5 s per 96 px ManiSkill scene: 44 s of startup for 8 envs).
            batched = functools.partial(
                ParallelEnv, serial_for_single=False, use_buffers=False, metadata_from_workers=True
            )
        else:
            batched = SerialEnv
        size = num_envs // groups
        envs = [batched(size, fns[g * size : (g + 1) * size]) for g in range(groups)]
    if perturb and spec.perturbation is not None:
        library = AssetLibrary.load(source, rl4vla_dir=rl4vla_dir, seed=asset_seed)
        envs = [
            TransformedEnv(env, perturbation_transform(spec, library, seed=seed)) for env in envs
        ]
    return envs


_signature = inspect.signature(make_env_groups)
make_env.__signature__ = _signature.replace(  # type: ignore[attr-defined]
    parameters=[p for name, p in _signature.parameters.items() if name != "groups"],
    return_annotation=EnvBase,
)
