"""Perception co-training in the recipes (issue 14): the privileged-label losses of
:mod:`vla_torchrl.objectives.perception` on demonstration frames, beside the recipe's own loss.

:class:`WithPerceptionLoss` is the recipe's loss (SFT, PPO, GRPO...: ``algo.name``) with the
vision towers trainable and anchored: at every minibatch it adds the perception losses of a
minibatch of demonstration frames, read by heads trained earlier (``heads.pt`` of
``vla-torchrl-pretrain-vision``, or ``head.pt`` of the recorded scripts) and kept **frozen**, so
that the towers must keep producing features from which those heads read the scene, while the
recipe's gradient reshapes them::

    L = L_algo(batch) + c * (L_position + L_keypoint + L_orientation)(demos)

SFT from pretrained towers, keeping what they learned (the CPU-scale pipeline)::

    vla-torchrl-train algo=sft model=small env=maniskill_cpu model.init_from=runs/pv/policy \\
        'algo.demos=[data/demos-s1,data/demos-s2]' ... \\
        algo.loss._target_=vla_torchrl.training.perception_anchor.WithPerceptionLoss \\
        '+algo.loss.demos=[data/demos-s1,data/demos-s2]' +algo.loss.heads=runs/pv/heads.pt \\
        +algo.loss.perception_coeff=1.0

PPO with the towers unfrozen (``PPOWithPerceptionLoss`` is the same class, its earlier name)::

    vla-torchrl-train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \\
        model.init_from=runs/sft/policy model.freeze_vision=false ... \\
        algo.loss._target_=vla_torchrl.training.perception_anchor.WithPerceptionLoss \\
        '+algo.loss.demos=[data/demos-s1,data/demos-s2]' +algo.loss.heads=runs/pv/heads.pt

The demonstrations need privileged labels (``vla-torchrl-collect privileged=true``). Each call
draws ``perception_batch_size`` frames and their random shifts from torch's global RNG, which
the recipe checkpoints, so a resumed run draws the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from vla_torchrl.errors import UserError
from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, PRIVILEGED_KEY
from vla_torchrl.objectives.perception import (
    POSITIONS,
    TARGETS_KEY,
    KeypointHead,
    OrientationHead,
    PerceptionLoss,
    PositionHead,
    orientation_targets,
    position_targets,
    shift_images,
)

__all__ = [
    "PPOWithPerceptionLoss",
    "WithPerceptionLoss",
    "keypoint_targets",
    "load_perception_heads",
    "load_privileged_frames",
    "perception_targets",
]


def keypoint_targets(state: TensorDictBase, height: int, width: int) -> torch.Tensor:
    """``[N, K, 3]``: each labelled point (:data:`POSITIONS`) in the ``height x width`` camera
    of the ManiSkill scene: normalized image ``(x, y)`` (pixel edges at 0 and 1) and depth (m)."""
    from vla_torchrl.envs.maniskill.scene import project_to_image  # sapien: imported on use

    out = []
    for key in POSITIONS:
        uv, depth = project_to_image(state[key].double(), height, width)
        xy = (uv + 0.5) / torch.tensor([width, height], dtype=uv.dtype)
        out.append(torch.cat([xy, depth[..., None]], -1))
    return torch.stack(out, 1).float()


def load_perception_heads(path: str | Path, hidden: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """The heads saved in ``head.pt`` (``position_head`` / ``keypoint_head`` /
    ``orientation_head`` for :class:`~vla_torchrl.objectives.perception.PerceptionLoss`, those
    present) and their target statistics (``mean``, ``std``, ``depth_mean``, ``depth_std``,
    ``orient_mean``, ``orient_std``). ``hidden``: the patch embeddings' width."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"heads={str(path)!r} does not exist; pass the head.pt of the pretraining or SFT run"
        )
    saved = torch.load(path, weights_only=True, map_location="cpu")
    if "head" not in saved:
        raise UserError(f"heads={str(path)!r} has no 'head' entry: not a perception head.pt")
    # the flat heads read every patch: their input width says how many
    patches = saved["head"]["out.weight"].shape[1] // saved["head"]["reduce.0.weight"].shape[0]
    heads: dict = {"position_head": PositionHead(hidden, patches)}
    heads["position_head"].load_state_dict(saved["head"])
    if "keypoint_head" in saved:
        heads["keypoint_head"] = KeypointHead(hidden)
        heads["keypoint_head"].load_state_dict(saved["keypoint_head"])
    if "orientation_head" in saved:
        heads["orientation_head"] = OrientationHead(hidden, patches)
        heads["orientation_head"].load_state_dict(saved["orientation_head"])
    stats = {k: v for k, v in saved.items() if not k.endswith("head")}
    return heads, stats


def perception_targets(
    state: TensorDictBase, stats: dict, image_hw: tuple[int, int] | None = None
) -> TensorDict:
    """The targets :class:`~vla_torchrl.objectives.perception.PerceptionLoss` reads, from the
    privileged state ``[N]``: standardized with ``stats`` (:func:`load_perception_heads`);
    keypoints only with ``image_hw`` (the frames' camera size) and orientation only when
    ``stats`` has ``orient_mean``."""
    n = state.shape[0]
    out = TensorDict(
        {
            "position_z": (position_targets(state) - stats["mean"]) / stats["std"],
            "grasped": state["is_grasped"].bool().reshape(n),
            "phase": state["expert_phase"].long().reshape(n),
        },
        [n],
    )
    if image_hw is not None:
        out.set("keypoints", keypoint_targets(state, *image_hw))
    if "orient_mean" in stats:
        orient = orientation_targets(state)
        out.set("orientation_z", (orient - stats["orient_mean"]) / stats["orient_std"])
    return out


def load_privileged_frames(demos: Sequence[str | Path] | TensorDictBase) -> TensorDictBase:
    """Frames and privileged labels of demonstration folders (or a TensorDict), concatenated,
    with their episode ids when the demos have them (folder ``i``'s offset by ``100_000 * i``)."""
    if isinstance(demos, TensorDictBase):
        parts = [demos]
    else:
        from vla_torchrl.envs.demos import load_demos

        if isinstance(demos, str | Path):
            demos = [demos]
        parts = []
        for i, folder in enumerate(demos):
            if not Path(folder).is_dir():
                raise UserError(f"demos: {str(folder)!r} does not exist")
            td = load_demos(folder).to_tensordict()
            if EPISODE_ID_KEY in td.keys():  # noqa: SIM118 (TensorDict has no __contains__)
                td.set(EPISODE_ID_KEY, td.get(EPISODE_ID_KEY) + 100_000 * i)
            parts.append(td)
    for td in parts:
        if td.get(PRIVILEGED_KEY, None) is None:
            raise UserError(
                "demos without privileged labels: collect them with "
                "vla-torchrl-collect privileged=true"
            )
    frames = torch.cat(parts) if len(parts) > 1 else parts[0]
    keys = [IMAGE_KEY, PRIVILEGED_KEY]
    if frames.get(EPISODE_ID_KEY, None) is not None:
        keys.append(EPISODE_ID_KEY)  # whole episodes held out (vision_pretraining)
    return frames.select(*keys)


class WithPerceptionLoss(LossModule):
    """``L_algo + perception_coeff * L_perception(demos)``; see the module docstring.

    Args:
        evaluator: the policy's teacher-forced evaluator (its ``model`` and ``processor``).
        algo: the recipe's ``AlgoConfig``: the first term is the recipe's own loss for
            ``algo.name`` (:func:`~vla_torchrl.training.loop.stock_loss`).
        demos: demonstration folders collected with ``privileged=true`` (or a TensorDict with
            ``IMAGE_KEY`` and ``PRIVILEGED_KEY``).
        heads: a ``heads.pt`` / ``head.pt`` (:func:`load_perception_heads`); the heads are
            frozen.
        perception_coeff: weight of each perception term. 0.3 (issue 14): its gradient norm on
            the small model's towers is ~4-6, against PPO's ~11, so the global clip at 10
            shrinks PPO's step about as much as without it.
        perception_batch_size: demonstration frames per call.
        shift: largest random shift of the frames (pixels); the keypoint labels move with them.

    Without gradient (e.g. SFT's held-out loss) it returns the algorithm's terms alone: the
    perception terms are a training signal, and drawing their frames would move torch's global
    RNG, so how often a run evaluates would change its training draws.
    """

    def __init__(
        self,
        evaluator,
        *,
        algo,
        demos: Sequence[str | Path] | TensorDictBase,
        heads: str | Path,
        perception_coeff: float = 0.3,
        perception_batch_size: int = 16,
        shift: int = 4,
    ) -> None:
        super().__init__()
        from vla_torchrl.training.loop import stock_loss

        if perception_coeff < 0 or perception_batch_size < 1 or shift < 0:
            raise UserError(
                f"WithPerceptionLoss: perception_coeff={perception_coeff} must be >= 0, "
                f"perception_batch_size={perception_batch_size} >= 1 and shift={shift} >= 0"
            )
        if getattr(evaluator.model, "vision_frozen", False):
            raise UserError(
                "WithPerceptionLoss trains the vision towers, but they are frozen "
                "(model.freeze_vision=true): set model.freeze_vision=false, or train without it"
            )
        self.base = stock_loss(evaluator, algo)
        self.batch_size, self.shift = int(perception_batch_size), int(shift)
        head_modules, stats = load_perception_heads(heads, evaluator.model.config.llm_hidden_size)
        for head in head_modules.values():
            head.requires_grad_(False)  # an anchor: only the towers and the projector move
        patches = head_modules["position_head"].out.in_features // (
            head_modules["position_head"].reduce[0].out_features
        )
        self.perception = PerceptionLoss(
            lambda images: evaluator.model.embed_images(
                evaluator.processor.image_processor(images)
            ),
            **head_modules,
            grid=int(round(patches**0.5)),
            depth_mean=float(stats.get("depth_mean", 0.0)),
            depth_std=float(stats.get("depth_std", 1.0)),
            position_coeff=perception_coeff,
            keypoint_coeff=perception_coeff,
            orientation_coeff=perception_coeff,
        )
        frames = load_privileged_frames(demos)
        images = frames.get(IMAGE_KEY)
        with_keypoints = "keypoint_head" in head_modules
        targets = perception_targets(
            frames.get(PRIVILEGED_KEY),
            stats,
            tuple(images.shape[-3:-1]) if with_keypoints else None,
        )
        # plain attributes, not buffers: kept out of the run's checkpoints
        self.frames = TensorDict({IMAGE_KEY: images, TARGETS_KEY: targets}, [images.shape[0]])
        with torch.no_grad():
            seen = self.perception.encoder(images[:1]).shape[1]
        if seen != patches:
            raise UserError(
                f"heads={str(heads)!r} read {patches} patches, the policy's towers give {seen}: "
                "pass the head.pt of the run this policy comes from"
            )

    def perception_batch(self) -> TensorDict:
        """A random minibatch of demonstration frames, shifted, with their targets."""
        index = torch.randint(0, self.frames.shape[0], (self.batch_size,))
        batch = self.frames[index].clone()
        seed = int(torch.randint(0, 2**31 - 1, ()))
        images, moved = shift_images(
            batch.get(IMAGE_KEY), self.shift, torch.Generator().manual_seed(seed)
        )
        batch.set(IMAGE_KEY, images)
        batch.set((TARGETS_KEY, "shift"), moved)
        return batch

    def forward(self, rollout: TensorDictBase) -> TensorDict:
        out = self.base(rollout)  # the algorithm's loss terms and diagnostics
        if not torch.is_grad_enabled():
            return out  # scored, not trained (a held-out loss): no frames drawn, no RNG moved
        perception = self.perception(self.perception_batch())
        for key, value in perception.items():
            out.set(key, value)
        return out


#: the earlier name (PPO was its first use); the same class
PPOWithPerceptionLoss = WithPerceptionLoss
