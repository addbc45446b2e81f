"""Auxiliary perception objectives on privileged simulator labels (issue 14).

OpenVLA's vision towers arrive pretrained (DINOv2, SigLIP, then the OXE robot data). A small
model trained at the CPU scale starts from random towers, and SFT alone on a few thousand demo
frames teaches them to ignore the image. These losses stand in for that pretraining: from the
frame alone, the towers learn where the gripper, the object and the receptacle are, whether the
object is held, which phase of the task the expert is in, how the gripper is turned and how the
object lies. The simulator gives the labels for free (``vla-torchrl-collect privileged=true``).
At the CPU scale they pretrain the towers, stay on as auxiliary terms during SFT, and can anchor
the towers during RL (``docs/results/maniskill-cpu``: ``pretrain_vision.py``,
``sft_experiment.py``, ``ppo_perception.py``).

Three heads read the projected patch embeddings ``[B, P, H]`` (``OpenVLA.embed_images``); none
is part of the policy:

* :class:`PositionHead`: 12 standardized positions (tcp, object, receptacle, tcp - object),
  a grasp logit and 8 expert-phase logits; :func:`position_loss` = MSE + BCE + CE.
* :class:`KeypointHead`: per point and patch a logit (is the point in this patch?), its offset
  inside the patch and its depth, CenterNet-style; :func:`keypoint_loss`, with
  :func:`encode_keypoints` / :func:`decode_keypoints` as its exact inverse pair.
* :class:`OrientationHead`: the gripper's rotation (9 numbers) and the object's yaw as
  ``(cos 2y, sin 2y)``, standardized; MSE, decoded by :func:`decode_orientation`.

:class:`PerceptionLoss` is the ``LossModule`` that runs an image encoder and the heads on a
TensorDict of frames and targets (:func:`position_targets`, :func:`orientation_targets`; the
keypoint targets need the camera, ``envs.maniskill.scene.project_to_image``).

Examples:
    >>> t = torch.tensor([[[0.30, 0.70, 0.5]]])  # one point: x 0.3, y 0.7, 0.5 m deep
    >>> perfect = encode_keypoints(t, grid=4, depth_mean=0.5, depth_std=0.1)
    >>> decode_keypoints(perfect, 4, 0.5, 0.1)
    tensor([[[0.3000, 0.7000, 0.5000]]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from vla_torchrl.keys import IMAGE_KEY

__all__ = [
    "N_PHASES",
    "POSITIONS",
    "TARGETS_KEY",
    "KeypointHead",
    "OrientationHead",
    "PerceptionLoss",
    "PositionHead",
    "decode_keypoints",
    "decode_orientation",
    "encode_keypoints",
    "keypoint_loss",
    "orientation_errors_deg",
    "orientation_targets",
    "position_loss",
    "position_targets",
    "shift_images",
]

#: the labelled points of the privileged state, in the order of the targets
POSITIONS: tuple[str, ...] = ("tcp_position", "object_position", "receptacle_position")
#: phases of the scripted expert (``privileged.expert_phase``)
N_PHASES = 8
#: where :class:`PerceptionLoss` reads its targets (a sub-TensorDict, see its docstring)
TARGETS_KEY: NestedKey = "perception_targets"


# -- targets ------------------------------------------------------------------------------------
def position_targets(state: TensorDictBase) -> torch.Tensor:
    """``[N, 12]`` from the privileged state: tcp, object, receptacle, tcp - object (metres).

    Examples:
        >>> s = TensorDict({"tcp_position": torch.tensor([[1.0, 2.0, 3.0]]),
        ...                 "object_position": torch.tensor([[0.5, 0.5, 0.5]]),
        ...                 "receptacle_position": torch.zeros(1, 3)}, [1])
        >>> position_targets(s)[0, 9:].tolist()
        [0.5, 1.5, 2.5]
    """
    p = [state[k].float() for k in POSITIONS]
    return torch.cat([*p, p[0] - p[1]], dim=-1)


def orientation_targets(state: TensorDictBase) -> torch.Tensor:
    """``[N, 11]``: the gripper's rotation matrix (row-major) and ``(cos 2y, sin 2y)`` of the
    object's yaw ``y`` (a long object lies the same at ``y`` and ``y + pi``)."""
    yaw = state["object_yaw"].float()
    rot = state["tcp_rotation"].float().flatten(1)
    return torch.cat([rot, torch.stack([torch.cos(2 * yaw), torch.sin(2 * yaw)], -1)], -1)


# -- heads --------------------------------------------------------------------------------------
class PositionHead(torch.nn.Module):
    """Patch embeddings ``[B, P, H]`` -> (positions ``[B, 12]``, grasp logit ``[B]``, phase
    logits ``[B, 8]``): ``width`` features per patch, then one linear map of all patches."""

    def __init__(self, hidden: int, patches: int, width: int = 16) -> None:
        super().__init__()
        self.reduce = torch.nn.Sequential(torch.nn.Linear(hidden, width), torch.nn.GELU())
        self.out = torch.nn.Linear(width * patches, 12 + 1 + N_PHASES)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.out(self.reduce(patches).flatten(1))
        return y[:, :12], y[:, 12], y[:, 13:]


class OrientationHead(torch.nn.Module):
    """Patch embeddings ``[B, P, H]`` -> the 11 standardized :func:`orientation_targets`."""

    def __init__(self, hidden: int, patches: int, width: int = 16) -> None:
        super().__init__()
        self.reduce = torch.nn.Sequential(torch.nn.Linear(hidden, width), torch.nn.GELU())
        self.out = torch.nn.Linear(width * patches, 11)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.out(self.reduce(patches).flatten(1))


class KeypointHead(torch.nn.Module):
    """Patch embeddings ``[B, G*G, H]`` -> ``[B, K, G*G, 4]``: per point and patch a logit, the
    offset ``(x, y)`` inside the patch (patch units, 0..1) and the standardized depth."""

    def __init__(self, hidden: int, points: int = len(POSITIONS), width: int = 64) -> None:
        super().__init__()
        self.points = points
        self.net = torch.nn.Sequential(
            torch.nn.Linear(hidden, width), torch.nn.GELU(), torch.nn.Linear(width, 4 * points)
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, p, _ = patches.shape
        return self.net(patches).view(b, p, self.points, 4).transpose(1, 2)


# -- losses -------------------------------------------------------------------------------------
def position_loss(
    head_out: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    target_z: torch.Tensor,
    grasped: torch.Tensor,
    phase: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE of the standardized positions + grasp BCE + phase CE (each about 1 at chance), and
    the three parts as floats."""
    reg, grasp_logit, phase_logits = head_out
    mse = torch.nn.functional.mse_loss(reg, target_z)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(grasp_logit, grasped.float())
    ce = torch.nn.functional.cross_entropy(phase_logits, phase)
    parts = {"mse": float(mse.detach()), "bce": float(bce.detach()), "ce": float(ce.detach())}
    return mse + bce + ce, parts


def _cells(xy: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-major patch index, patch corner in patch units) of normalized points."""
    cell = (xy.clamp(0, 1 - 1e-6) * grid).floor()
    return (cell[..., 1] * grid + cell[..., 0]).long(), cell


def keypoint_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    grid: int,
    depth_mean: float,
    depth_std: float,
    shift: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over the ``grid x grid`` patches + 10 x L1 of the in-patch offset (patch
    units) + squared error of the standardized depth, the last two at the true patch; averaged
    over the points inside the frame (those outside are skipped).

    Args:
        pred: :class:`KeypointHead` output ``[B, K, G*G, 4]``.
        target: ``[B, K, 3]``: normalized image ``(x, y)`` (pixel edges at 0 and 1) and depth (m).
        shift: ``[B, 2]`` normalized ``(x, y)`` displacement of each image's content
            (:func:`shift_images`), added to the targets.

    Examples:
        >>> t = torch.tensor([[[0.30, 0.70, 0.5]]])
        >>> perfect = encode_keypoints(t, grid=4, depth_mean=0.5, depth_std=0.1)
        >>> round(float(keypoint_loss(perfect, t, 4, 0.5, 0.1)[0]), 4)  # only the CE floor
        0.0
    """
    if shift is not None:
        target = torch.cat([target[..., :2] + shift[:, None], target[..., 2:]], -1)
    xy = target[..., :2]
    inside = ((xy >= 0) & (xy < 1)).all(-1)  # [B, K]
    index, cell = _cells(xy, grid)
    offset = xy * grid - cell
    at = pred.gather(2, index[..., None, None].expand(*index.shape, 1, 4)).squeeze(2)
    ce = torch.nn.functional.cross_entropy(pred[..., 0][inside], index[inside], reduction="sum")
    l1 = (at[..., 1:3] - offset).abs().sum(-1)[inside].sum()
    dz = (at[..., 3] - (target[..., 2] - depth_mean) / depth_std).pow(2)[inside].sum()
    n = inside.sum().clamp_min(1)
    parts = {k: float(v.detach() / n) for k, v in (("kp_ce", ce), ("kp_l1", l1), ("kp_dz", dz))}
    return (ce + 10.0 * l1 + dz) / n, parts


def encode_keypoints(
    target: torch.Tensor, grid: int, depth_mean: float, depth_std: float
) -> torch.Tensor:
    """The head output :func:`keypoint_loss` rates best for ``target`` ``[B, K, 3]`` (a logit of
    30 at the true patch, 0 elsewhere): the reference for :func:`decode_keypoints`."""
    b, k, _ = target.shape
    out = torch.zeros(b, k, grid * grid, 4)
    index, cell = _cells(target[..., :2], grid)
    value = torch.cat(
        [
            torch.full((b, k, 1), 30.0),
            target[..., :2] * grid - cell,
            ((target[..., 2] - depth_mean) / depth_std)[..., None],
        ],
        -1,
    )
    out.scatter_(2, index[..., None, None].expand(b, k, 1, 4), value[:, :, None])
    return out


def decode_keypoints(
    pred: torch.Tensor, grid: int, depth_mean: float, depth_std: float
) -> torch.Tensor:
    """``[B, K, 3]`` (normalized ``x, y``; depth in metres) read at each point's argmax patch."""
    index = pred[..., 0].argmax(-1)  # [B, K]
    at = pred.gather(2, index[..., None, None].expand(*index.shape, 1, 4)).squeeze(2)
    cell = torch.stack([index % grid, index // grid], -1).float()
    xy = (cell + at[..., 1:3]) / grid
    return torch.cat([xy, (at[..., 3:] * depth_std + depth_mean)], -1)


def decode_orientation(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rotation ``[N, 3, 3]``: the nearest rotation matrix, by SVD; yaw ``[N]`` in
    ``(-pi/2, pi/2]``) from unstandardized :func:`orientation_targets`-style values.

    Examples:
        >>> import math
        >>> r = torch.eye(3).flatten()
        >>> rot, yaw = decode_orientation(torch.cat([1.1 * r, torch.tensor([0.0, 2.0])])[None])
        >>> torch.allclose(rot[0], torch.eye(3)), round(float(yaw[0]) / math.pi, 3)
        (True, 0.25)
    """
    u, _, vh = torch.linalg.svd(values[:, :9].reshape(-1, 3, 3))
    d = torch.linalg.det(u @ vh)
    u = torch.cat([u[..., :2], u[..., 2:] * d[:, None, None]], -1)
    return u @ vh, 0.5 * torch.atan2(values[:, 10], values[:, 9])


def orientation_errors_deg(
    rot: torch.Tensor, yaw: torch.Tensor, true_rot: torch.Tensor, true_yaw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: the angle between two rotations and the yaw error modulo pi, in degrees."""
    cos = ((rot.transpose(1, 2) @ true_rot).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    d_rot = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    d_yaw = torch.rad2deg(torch.remainder(yaw - true_yaw + torch.pi / 2, torch.pi) - torch.pi / 2)
    return d_rot, d_yaw.abs()


def shift_images(
    images: torch.Tensor, shift: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image ``[N, H, W, C]`` translated by its own random whole-pixel offset in
    ``[-shift, shift]`` (edges replicated), and the normalized ``(x, y)`` displacement ``[N, 2]``
    of its content, for :func:`keypoint_loss`'s ``shift``.

    Examples:
        >>> img = torch.zeros(1, 8, 8, 1)
        >>> img[0, 2, 5] = 1.0  # row 2, column 5
        >>> out, moved = shift_images(img, 3, torch.Generator().manual_seed(0))
        >>> row, col = divmod(int(out[0, ..., 0].argmax()), 8)
        >>> (col - 5) / 8 == float(moved[0, 0]), (row - 2) / 8 == float(moved[0, 1])
        (True, True)
    """
    n, h, w = images.shape[:3]
    if shift == 0:
        return images, torch.zeros(n, 2)
    off = torch.randint(-shift, shift + 1, (n, 2), generator=generator)  # (row, col)
    rows = (torch.arange(h)[None] + off[:, :1]).clamp(0, h - 1)
    cols = (torch.arange(w)[None] + off[:, 1:]).clamp(0, w - 1)
    out = images[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out, torch.stack([-off[:, 1] / w, -off[:, 0] / h], -1).float()


# -- the loss module ----------------------------------------------------------------------------
class PerceptionLoss(LossModule):
    """The perception losses of frames and their targets, as ``loss_perception_*`` terms.

    Reads ``IMAGE_KEY`` (the frames as the encoder takes them) and, under :data:`TARGETS_KEY`:
    ``position_z`` ``[B, 12]`` (standardized :func:`position_targets`), ``grasped`` ``[B]``,
    ``phase`` ``[B]``; with a keypoint head ``keypoints`` ``[B, K, 3]`` and optionally
    ``shift`` ``[B, 2]``; with an orientation head ``orientation_z`` ``[B, 11]``. Writes
    ``loss_perception_position``, ``loss_perception_keypoint`` and
    ``loss_perception_orientation`` (each times its ``*_coeff``) and, detached, the raw values
    as ``perception_*``.

    Args:
        encoder: frames ``[B, ...]`` -> patch embeddings ``[B, P, H]``; for an OpenVLA,
            ``lambda images: model.embed_images(processor.image_processor(images))``.
        position_head: a :class:`PositionHead`.
        keypoint_head: a :class:`KeypointHead` (with ``grid``, ``depth_mean``, ``depth_std``).
        orientation_head: an :class:`OrientationHead`.
        grid: the patch grid's side (``P = grid**2``).
        depth_mean, depth_std: the keypoint depths' standardization.
        position_coeff, keypoint_coeff, orientation_coeff: the terms' weights.

    Frozen heads (``requires_grad_(False)``) make the loss an anchor: the encoder must keep
    features from which those heads read the scene.

    Examples:
        >>> torch.manual_seed(0) is not None
        True
        >>> encoder = torch.nn.Linear(3, 8)  # "frames" [B, 4, 3] -> 4 patches of width 8
        >>> loss = PerceptionLoss(lambda x: encoder(x), position_head=PositionHead(8, 4))
        >>> td = TensorDict({IMAGE_KEY: torch.randn(2, 4, 3), TARGETS_KEY: {
        ...     "position_z": torch.zeros(2, 12), "grasped": torch.tensor([True, False]),
        ...     "phase": torch.tensor([0, 3])}}, [2])
        >>> out = loss(td)
        >>> sorted(k for k in out.keys() if k.startswith("loss_"))
        ['loss_perception_position']
        >>> out["loss_perception_position"].backward(); encoder.weight.grad is not None
        True
    """

    def __init__(
        self,
        encoder: Callable[[torch.Tensor], torch.Tensor],
        *,
        position_head: PositionHead | None = None,
        keypoint_head: KeypointHead | None = None,
        orientation_head: OrientationHead | None = None,
        grid: int | None = None,
        depth_mean: float = 0.0,
        depth_std: float = 1.0,
        position_coeff: float = 1.0,
        keypoint_coeff: float = 1.0,
        orientation_coeff: float = 1.0,
        image_key: NestedKey = IMAGE_KEY,
    ) -> None:
        super().__init__()
        if position_head is None and keypoint_head is None and orientation_head is None:
            raise ValueError("PerceptionLoss needs at least one head")
        if keypoint_head is not None and (grid is None or grid < 1 or depth_std <= 0):
            raise ValueError(
                f"PerceptionLoss: a keypoint head needs grid >= 1 and depth_std > 0 "
                f"(got grid={grid}, depth_std={depth_std}): pass the patch grid's side and the "
                "standardization of the training depths"
            )
        self.encoder = encoder
        self.position_head = position_head
        self.keypoint_head = keypoint_head
        self.orientation_head = orientation_head
        self.grid, self.depth_mean, self.depth_std = grid, float(depth_mean), float(depth_std)
        self.coeffs = {
            "position": float(position_coeff),
            "keypoint": float(keypoint_coeff),
            "orientation": float(orientation_coeff),
        }
        self.image_key = image_key

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        z = self.encoder(tensordict.get(self.image_key))
        t = tensordict.get(TARGETS_KEY)
        values: dict[str, torch.Tensor] = {}
        if self.position_head is not None:
            values["position"], _ = position_loss(
                self.position_head(z), t.get("position_z"), t.get("grasped"), t.get("phase")
            )
        if self.keypoint_head is not None:
            values["keypoint"], _ = keypoint_loss(
                self.keypoint_head(z),
                t.get("keypoints"),
                self.grid,
                self.depth_mean,
                self.depth_std,
                shift=t.get("shift", None),
            )
        if self.orientation_head is not None:
            values["orientation"] = torch.nn.functional.mse_loss(
                self.orientation_head(z), t.get("orientation_z")
            )
        out = TensorDict({}, [])
        for name, value in values.items():
            out.set(f"loss_perception_{name}", self.coeffs[name] * value)
            out.set(f"perception_{name}", value.detach())
        return out
