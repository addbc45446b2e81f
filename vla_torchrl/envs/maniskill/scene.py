"""The numbers of the put-on scene: camera, robot poses, placement regions, and where they are used.

Kept apart from the task's hooks (:class:`~vla_torchrl.envs.maniskill.put_on_task.PutOnTask`),
like ManiSkill's ``pick_cube_cfgs.py``: the third-view camera (intrinsics and pose in the robot
base frame), the WidowX / Panda base poses and initial joint positions, the training and frame
regions objects are placed in (and their minimum separation), and :class:`PutOnSceneConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import sapien
from mani_skill import ASSET_DIR
from mani_skill.agents.registration import register_agent
from mani_skill.envs.tasks.digital_twins.bridge_dataset_eval.base_env import (
    WidowX250SBridgeDatasetFlatTable,
)
from mani_skill.sensors.camera import CameraConfig

from vla_torchrl.envs.asset_library import ImageAsset, SceneAsset

__all__ = [
    "CAMERA_UID",
    "FRAME_HALF_EXTENT",
    "MIN_SEPARATION",
    "PANDA_BASE_POSE",
    "PANDA_INIT_QPOS",
    "TRAIN_CENTER",
    "TRAIN_HALF_EXTENT",
    "WIDOWX_BASE_POSE",
    "WIDOWX_INIT_QPOS",
    "PutOnSceneConfig",
    "camera_projection",
    "project_to_image",
    "unproject_from_image",
    "sample_positions",
    "widowx_available",
]

CAMERA_UID = "third_view"


# Scene geometry (world frame, metres; table top at z = 0). The WidowX base and its camera follow
# ManiSkill's Bridge flat-table setup, moved down so that the table top is z = 0.
WIDOWX_BASE_POSE = sapien.Pose([0.147, 0.028, 0.0], [0, 0, 0, 1])


PANDA_BASE_POSE = sapien.Pose([0.42, 0.0, 0.0], [0, 0, 0, 1])


_CAMERA_IN_BASE = sapien.Pose([0.0, -0.16, 0.36], [0.8992917, -0.09263245, 0.35892478, 0.23209205])


_CAMERA_K_640x480 = np.array([[623.588, 0.0, 319.501], [0.0, 623.588, 239.545], [0.0, 0.0, 1.0]])


# Bridge flat-table initial joints (ManiSkill's measured values) and Panda's rest pose.
WIDOWX_INIT_QPOS = np.array(
    [-0.01840777, 0.0398835, 0.22242722, -0.00460194, 1.36524296, 0.00153398, 0.037, 0.037]
)


PANDA_INIT_QPOS = np.array(
    [0.0, np.pi / 8, 0.0, -5 * np.pi / 8, 0.0, 3 * np.pi / 4, np.pi / 4, 0.04, 0.04]
)


# Placement regions: the training rectangle, and the surrounding frame for `obj-pos`.
TRAIN_CENTER = (-0.17, 0.0)


TRAIN_HALF_EXTENT = (0.08, 0.12)


FRAME_HALF_EXTENT = (0.13, 0.19)


MIN_SEPARATION = 0.07  # "more than 7 cm apart"


def widowx_available() -> bool:
    """Whether the WidowX-250S description is present under ManiSkill's asset dir."""
    return (Path(ASSET_DIR) / "robots" / "widowx" / "wx250s.urdf").is_file()


@register_agent()
class _WidowXNoCamera(WidowX250SBridgeDatasetFlatTable):
    """The Bridge flat-table WidowX without its own camera (the task owns the camera)."""

    uid = "vla_torchrl_widowx250s"

    @property
    def _sensor_configs(self):
        return []


@dataclass(frozen=True)
class PutOnSceneConfig:
    """What an episode of "put O on R" may contain.

    Attributes:
        objects: object pool (the first object of an episode is the one to move).
        receptacles: receptacle pool (the first receptacle is the target).
        tables: table appearances (green-screen images).
        num_objects: objects on the table per episode (1 or 2, all different).
        num_receptacles: receptacles per episode (1 or 2, all different).
        distractor_receptacles: extra receptacle pool whose member is placed as an unused
            distractor (`disturb-recep`); empty for none.
        placement: ``"train"`` rectangle or the surrounding ``"frame"`` (`obj-pos`).
        random_robot_pose: randomize the initial arm joints (`robot-pose`).
        reposition_step: teleport the object to a new table position after this step
            (`obj-rep`: 5); ``None`` for never.
        yaw_choices: number of object yaw angles in [0, pi).
    """

    objects: tuple[SceneAsset, ...]
    receptacles: tuple[SceneAsset, ...]
    tables: tuple[ImageAsset, ...]
    num_objects: int = 1
    num_receptacles: int = 1
    distractor_receptacles: tuple[SceneAsset, ...] = ()
    placement: Literal["train", "frame"] = "train"
    random_robot_pose: bool = False
    reposition_step: int | None = None
    yaw_choices: int = 4

    def __post_init__(self) -> None:
        if self.num_objects not in (1, 2) or len(self.objects) < self.num_objects:
            raise ValueError(
                f"num_objects={self.num_objects} with {len(self.objects)} objects in the pool; "
                "use 1 or 2 and a pool at least that large"
            )
        if self.num_receptacles not in (1, 2) or len(self.receptacles) < self.num_receptacles:
            raise ValueError(
                f"num_receptacles={self.num_receptacles} with {len(self.receptacles)} "
                "receptacles in the pool; use 1 or 2 and a pool at least that large"
            )
        if not self.tables:
            raise ValueError("PutOnSceneConfig.tables is empty; give at least one table image")
        if self.placement not in ("train", "frame"):
            raise ValueError(f"placement={self.placement!r}; use 'train' or 'frame'")
        if self.reposition_step is not None and self.reposition_step < 1:
            raise ValueError(f"reposition_step={self.reposition_step}; use a step >= 1 or None")


def _camera_config(height: int, width: int) -> CameraConfig:
    k = _CAMERA_K_640x480.copy()
    k[0] *= width / 640.0  # resize the 640x480 camera to (height, width)
    k[1] *= height / 480.0
    return CameraConfig(
        uid=CAMERA_UID,
        pose=WIDOWX_BASE_POSE * _CAMERA_IN_BASE,
        width=width,
        height=height,
        intrinsic=k,
        near=0.01,
        far=10.0,
    )


# SAPIEN cameras look along +x with +z up; OpenCV's camera frame has x right, y down, z forward.
_SAPIEN_TO_CV = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def camera_projection(
    height: int, width: int, root_pose: sapien.Pose = WIDOWX_BASE_POSE
) -> np.ndarray:
    """``[3, 4]`` pinhole projection of the task camera at ``(height, width)``, from points in
    the robot root frame (the frame of the privileged labels) to homogeneous pixels.

    ``P @ [x, y, z, 1] = w * [u, v, 1]``: ``u`` is the column, ``v`` the row (OpenCV's
    convention: the centre of pixel ``(0, 0)`` is at ``(0, 0)``) and ``w`` the point's depth
    along the optical axis (metres). The same matrix as ManiSkill's
    ``camera.get_params()``: ``intrinsic_cv @ extrinsic_cv @ root_pose``.

    Examples:
        >>> p = camera_projection(96, 96)
        >>> p.shape
        (3, 4)
        >>> optical_axis = _CAMERA_IN_BASE.to_transformation_matrix()[:3, 0]  # the camera's x
        >>> ahead = _CAMERA_IN_BASE.p + 0.5 * optical_axis  # 0.5 m in front, root frame
        >>> u, v, w = p @ np.append(ahead, 1.0)
        >>> [round(float(u / w), 2), round(float(v / w), 2), round(float(w), 2)]  # (cx, cy)
        [47.93, 47.91, 0.5]
    """
    k = _CAMERA_K_640x480.copy()
    k[0] *= width / 640.0
    k[1] *= height / 480.0
    world_from_cam = (WIDOWX_BASE_POSE * _CAMERA_IN_BASE).to_transformation_matrix()
    cam_from_root = np.linalg.inv(world_from_cam) @ root_pose.to_transformation_matrix()
    return k @ _SAPIEN_TO_CV @ cam_from_root[:3]


def project_to_image(points, height: int, width: int, root_pose: sapien.Pose = WIDOWX_BASE_POSE):
    """Pixel coordinates ``[..., 2]`` (column ``u``, row ``v``) and depth ``[...]`` of root-frame
    points ``[..., 3]`` (a torch tensor) in the task camera at ``(height, width)``; see
    :func:`camera_projection`.

    Examples:
        >>> import torch
        >>> uv, depth = project_to_image(torch.zeros(2, 3), 96, 96)  # the robot's base
        >>> uv.shape, depth.shape, bool((depth > 0).all())
        (torch.Size([2, 2]), torch.Size([2]), True)
    """
    import torch

    p = torch.as_tensor(camera_projection(height, width, root_pose), dtype=points.dtype)
    h = points @ p[:, :3].T + p[:, 3]
    return h[..., :2] / h[..., 2:], h[..., 2]


def unproject_from_image(
    uv, depth, height: int, width: int, root_pose: sapien.Pose = WIDOWX_BASE_POSE
):
    """Root-frame points ``[..., 3]`` from pixel coordinates ``uv`` ``[..., 2]`` (column, row)
    and depths ``[...]`` in the task camera at ``(height, width)``: the inverse of
    :func:`project_to_image`.

    Examples:
        >>> import torch
        >>> points = torch.tensor([[0.30, 0.05, 0.02], [0.25, -0.10, 0.10]], dtype=torch.float64)
        >>> uv, depth = project_to_image(points, 96, 96)
        >>> torch.allclose(unproject_from_image(uv, depth, 96, 96), points)
        True
    """
    import torch

    p = torch.as_tensor(camera_projection(height, width, root_pose), dtype=torch.float64)
    uv, depth = uv.double(), depth.double()
    homogeneous = torch.cat([uv * depth[..., None], depth[..., None]], -1)  # = P[:, :3] X + P[:, 3]
    return torch.linalg.solve(p[:, :3], (homogeneous - p[:, 3]).unsqueeze(-1)).squeeze(-1)


def _uniform_in_region(rng: np.random.Generator, placement: str) -> np.ndarray:
    cx, cy = TRAIN_CENTER
    if placement == "train":
        hx, hy = TRAIN_HALF_EXTENT
        return np.array([cx + rng.uniform(-hx, hx), cy + rng.uniform(-hy, hy)])
    hx, hy = FRAME_HALF_EXTENT
    ix, iy = TRAIN_HALF_EXTENT
    while True:  # the frame: inside the outer rectangle, outside the training one
        x, y = rng.uniform(-hx, hx), rng.uniform(-hy, hy)
        if abs(x) > ix or abs(y) > iy:
            return np.array([cx + x, cy + y])


def sample_positions(
    rng: np.random.Generator,
    radii: list[float],
    *,
    placement: Literal["train", "frame"] = "train",
    max_tries: int = 10_000,
) -> np.ndarray:
    """Sample non-overlapping table positions, centres > max(7 cm, r_i + r_j) apart.

    Args:
        rng: the episode's generator.
        radii: footprint radius of each item (metres).
        placement: ``"train"`` rectangle or the surrounding ``"frame"``.
        max_tries: rejection-sampling budget.

    Returns:
        ``[len(radii), 2]`` xy positions.

    Examples:
        >>> xy = sample_positions(np.random.default_rng(0), [0.03, 0.05])
        >>> bool(np.linalg.norm(xy[0] - xy[1]) > 0.08)
        True
    """
    for _ in range(max_tries):
        xy = np.stack([_uniform_in_region(rng, placement) for _ in radii])
        ok = all(
            np.linalg.norm(xy[i] - xy[j]) > max(MIN_SEPARATION, radii[i] + radii[j])
            for i in range(len(radii))
            for j in range(i)
        )
        if ok:
            return xy
    raise RuntimeError(
        f"could not place {len(radii)} items of radii {radii} in the {placement!r} region "
        f"after {max_tries} tries; use fewer or smaller assets"
    )
