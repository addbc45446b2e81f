"""The paper's OOD evaluation suite (Appendix A.4): 16 tasks over three axes plus training.

Each :class:`TaskSpec` is declarative: which asset pools the scene draws from, scene options
(number of objects/receptacles, placement region, robot pose, mid-episode reposition) and an
optional image/instruction perturbation that :func:`vla_torchrl.envs.builder.make_env` appends
as a TorchRL transform.

==============  =========  ==================================================================
task            axis       what changes w.r.t. ``ind`` (training)
==============  =========  ==================================================================
ind             ind        16 train objects, training plate, 16 train tables
table           vision     table from the 5 unseen appearances
texture-w/-s    vision     dynamic texture on object/receptacle/robot pixels, alpha 0.3/0.5
noise-w/-s      vision     dynamic texture on the whole image, alpha 0.3/0.5
obj             semantics  object from the 9 unseen objects
recep           semantics  receptacle from the 16 unseen receptacles
instruct        semantics  instruction from the 16 unseen templates
m-obj-ind       semantics  two different train objects; instruction names the first
m-obj-ood       semantics  two different unseen objects; instruction names the first
disturb-recep   semantics  an extra unused receptacle from the 16 unseen ones
m-recep         semantics  two different unseen receptacles; instruction names the first
obj-pos         execution  object and plate placed in the frame around the training rectangle
robot-pose      execution  randomized initial arm joints
obj-rep         execution  object teleported to a new table position at step 5
==============  =========  ==================================================================

Examples:
    >>> len(SUITE), SUITE["obj"].scene.object_pool
    (16, 'objects_unseen')
    >>> SUITE["texture-s"].perturbation
    Perturbation(kind='texture', alpha=0.5, region='foreground')
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "SUITE",
    "Axis",
    "Perturbation",
    "SceneOptions",
    "TaskSpec",
    "register_task",
    "task_names",
]

Axis = Literal["ind", "vision", "semantics", "execution"]
ObjectPool = Literal["objects_train", "objects_unseen"]
ReceptaclePool = Literal["receptacle_train", "receptacles_unseen"]
TablePool = Literal["tables_train", "tables_unseen"]


@dataclass(frozen=True)
class SceneOptions:
    """Scene content of a task (pool names refer to :class:`AssetLibrary` attributes)."""

    object_pool: ObjectPool = "objects_train"
    receptacle_pool: ReceptaclePool = "receptacle_train"
    table_pool: TablePool = "tables_train"
    num_objects: int = 1
    num_receptacles: int = 1
    distractor_pool: ReceptaclePool | None = None
    placement: Literal["train", "frame"] = "train"
    random_robot_pose: bool = False
    reposition_step: int | None = None


@dataclass(frozen=True)
class Perturbation:
    """An observation perturbation applied by a transform.

    Attributes:
        kind: ``"texture"`` / ``"noise"`` (``DynamicTextureOverlay``) or ``"instruction"``
            (``InstructionRephrase`` with the unseen templates).
        alpha: image mixing transparency (texture/noise).
        region: ``"foreground"`` (texture) or ``"image"`` (noise).
    """

    kind: Literal["texture", "noise", "instruction"]
    alpha: float = 0.0
    region: Literal["foreground", "image"] = "image"

    def __post_init__(self) -> None:
        kinds = ("texture", "noise", "instruction")
        if self.kind not in kinds:
            raise ValueError(
                f"Perturbation kind={self.kind!r} is unknown; use one of {kinds} (for another "
                "perturbation, build the task with perturb=False and append your transform)"
            )
        if self.region not in ("foreground", "image"):
            raise ValueError(
                f"Perturbation region={self.region!r} is unknown; use 'foreground' or 'image'"
            )
        if self.kind != "instruction" and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"Perturbation alpha={self.alpha}; use a value in (0, 1]")


@dataclass(frozen=True)
class TaskSpec:
    """One task of the suite."""

    name: str
    axis: Axis
    description: str
    scene: SceneOptions = field(default_factory=SceneOptions)
    perturbation: Perturbation | None = None


_WEAK, _STRONG = 0.3, 0.5  # Appendix A.4: image mixing transparency 0.3 (weak), 0.5 (strong)

_TASKS = (
    TaskSpec("ind", "ind", "training: one of 16 objects on the plate, 16 tables"),
    TaskSpec(
        "table",
        "vision",
        "table appearance from the 5 unseen ones",
        SceneOptions(table_pool="tables_unseen"),
    ),
    TaskSpec(
        "texture-w",
        "vision",
        "dynamic texture over object/receptacle/robot, alpha 0.3",
        perturbation=Perturbation("texture", _WEAK, "foreground"),
    ),
    TaskSpec(
        "texture-s",
        "vision",
        "dynamic texture over object/receptacle/robot, alpha 0.5",
        perturbation=Perturbation("texture", _STRONG, "foreground"),
    ),
    TaskSpec(
        "noise-w",
        "vision",
        "dynamic texture over the whole image, alpha 0.3",
        perturbation=Perturbation("noise", _WEAK, "image"),
    ),
    TaskSpec(
        "noise-s",
        "vision",
        "dynamic texture over the whole image, alpha 0.5",
        perturbation=Perturbation("noise", _STRONG, "image"),
    ),
    TaskSpec(
        "obj",
        "semantics",
        "object from the 9 unseen objects",
        SceneOptions(object_pool="objects_unseen"),
    ),
    TaskSpec(
        "recep",
        "semantics",
        "receptacle from the 16 unseen ones replaces the plate",
        SceneOptions(receptacle_pool="receptacles_unseen"),
    ),
    TaskSpec(
        "instruct",
        "semantics",
        "instruction from the 16 unseen templates",
        perturbation=Perturbation("instruction"),
    ),
    TaskSpec(
        "m-obj-ind",
        "semantics",
        "two different train objects, move the first",
        SceneOptions(num_objects=2),
    ),
    TaskSpec(
        "m-obj-ood",
        "semantics",
        "two different unseen objects, move the first",
        SceneOptions(object_pool="objects_unseen", num_objects=2),
    ),
    TaskSpec(
        "disturb-recep",
        "semantics",
        "an unused unseen receptacle on the table",
        SceneOptions(distractor_pool="receptacles_unseen"),
    ),
    TaskSpec(
        "m-recep",
        "semantics",
        "two different unseen receptacles, use the first",
        SceneOptions(receptacle_pool="receptacles_unseen", num_receptacles=2),
    ),
    TaskSpec(
        "obj-pos",
        "execution",
        "object and plate in the frame around the training area",
        SceneOptions(placement="frame"),
    ),
    TaskSpec(
        "robot-pose",
        "execution",
        "randomized initial robot joints",
        SceneOptions(random_robot_pose=True),
    ),
    TaskSpec(
        "obj-rep",
        "execution",
        "object teleported to a new position at step 5",
        SceneOptions(reposition_step=5),
    ),
)

SUITE: dict[str, TaskSpec] = {t.name: t for t in _TASKS}


def task_names(axis: Axis | None = None) -> list[str]:
    """Task names, all or of one axis.

    Examples:
        >>> task_names("execution")
        ['obj-pos', 'robot-pose', 'obj-rep']
    """
    return [t.name for t in SUITE.values() if axis is None or t.axis == axis]


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add ``spec`` to :data:`SUITE` (so ``make_env(spec.name)``, the recipes' ``env.task`` and
    ``task_names()`` know it); works with ``ParallelEnv`` workers, which receive the spec itself.

    Args:
        spec: the new task.
        replace: allow replacing a task of the same name.

    Raises:
        ValueError: the name is taken (without ``replace``) or the axis is unknown.

    Examples:
        >>> spec = register_task(TaskSpec("big-plate", "semantics", "a larger plate"))
        >>> "big-plate" in task_names("semantics")
        True
        >>> register_task(spec)
        Traceback (most recent call last):
        ...
        ValueError: task 'big-plate' is already in SUITE; pass replace=True to replace it
        >>> _ = SUITE.pop("big-plate")
    """
    axes = typing.get_args(Axis)
    if spec.axis not in axes:
        raise ValueError(f"TaskSpec axis={spec.axis!r} is unknown; use one of {axes}")
    if spec.name in SUITE and not replace:
        raise ValueError(f"task {spec.name!r} is already in SUITE; pass replace=True to replace it")
    SUITE[spec.name] = spec
    return spec
