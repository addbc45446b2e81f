"""envs layer: the paper's pick-and-place benchmark and its OOD suite as TorchRL envs.

* :func:`make_env` builds a SUITE task (``"ind"``, ``"table"``, ``"texture-s"``, ...) as a batched
  TorchRL env on ManiSkill3 (imported lazily: ``import vla_torchrl.envs`` does not load sapien);
* :data:`SUITE` maps task names to :class:`TaskSpec` (axis, description, scene options,
  perturbation);
* :func:`make_toy_env` is a batched toy task with the same keys, for fast tests;
* :mod:`vla_torchrl.envs.transforms` holds the image / instruction perturbations as transforms.

Examples:
    >>> from vla_torchrl.envs import SUITE, task_names
    >>> len(SUITE), task_names("execution")
    (16, ['obj-pos', 'robot-pose', 'obj-rep'])
"""

from __future__ import annotations

from vla_torchrl.envs.builder import make_env, make_env_groups
from vla_torchrl.envs.suite import SUITE, TaskSpec, task_names
from vla_torchrl.envs.toy import ToyReachConfig, ToyReachEnv, make_toy_env
from vla_torchrl.envs.transforms import DynamicTextureOverlay, InstructionRephrase

__all__ = [
    "SUITE",
    "DynamicTextureOverlay",
    "InstructionRephrase",
    "TaskSpec",
    "ToyReachConfig",
    "ToyReachEnv",
    "make_env",
    "make_env_groups",
    "make_toy_env",
    "task_names",
]
