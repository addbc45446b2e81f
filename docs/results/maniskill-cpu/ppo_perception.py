"""PPO with the vision towers unfrozen, anchored by the pretraining's perception losses on the
demonstrations (issue 14, twelfth session).

With ``model.freeze_vision=true`` (PPO v3) RL cannot touch perception, and PPO's gain came from
grasping more, not from placing better: the towers' 0.5-0.9 cm localisation error stays. Unfrozen
towers trained by PPO alone drifted (ninth session). Here they train with PPO's gradient plus,
at every minibatch, the three privileged-label losses of ``pretrain_vision.py`` (flat
positions / grasp / phase, patch keypoints, gripper rotation / object yaw) on a minibatch of DART
demonstration frames. The heads are those the SFT run ended with (``runs/sft-conv/head.pt``),
**frozen**: the towers must keep producing features from which those heads read the scene, so
PPO may reshape the features only in ways that keep the positions readable.

    L = L_PPO(rollout) + perception_coeff * (L_flat + L_keypoint + L_orientation)(demos)

Train it through the recipe (``algo.loss._target_``, as ``examples/ppo_with_sft.py``), with this
folder on the path::

    PYTHONPATH=docs/results/maniskill-cpu vla-torchrl-train --config-name train_cpu algo=ppo \\
        model=small env=maniskill_cpu model.init_from=runs/sft-conv/policy \\
        model.freeze_vision=false algo.critic_trains_backbone=false ... \\
        algo.loss._target_=ppo_perception.PPOWithPerceptionLoss \\
        '+algo.loss.demos=[data/dart96-s1,data/dart96-s2]' +algo.loss.heads=runs/sft-conv/head.pt

Each call draws ``perception_batch_size`` demonstration frames (and their random shifts) with
torch's global RNG, which the recipe checkpoints, so a resumed run draws the same ones. The
frames are shifted by up to ``shift`` pixels, the keypoint labels with them (as in SFT).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from vla_torchrl.keys import IMAGE_KEY, PRIVILEGED_KEY

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_vision import (  # noqa: E402
    KeypointHead,
    OrientationHead,
    PrivilegedHead,
    keypoint_loss,
    keypoint_targets,
    load_privileged_demos,
    orientation_targets,
    privileged_loss,
    regression_targets,
    shifted,
)


class PPOWithPerceptionLoss(LossModule):
    """``L_PPO + perception_coeff * L_perception(demos)``; see the module docstring.

    Args:
        evaluator: the policy's teacher-forced evaluator (its ``model`` and ``processor``).
        algo: the recipe's ``AlgoConfig`` (the PPO part is the recipe's own loss).
        demos: demonstration folders collected with ``privileged=true``.
        heads: ``head.pt`` of ``sft_experiment.py`` / ``pretrain_vision.py`` (the three heads and
            their target statistics).
        perception_coeff: weight of the perception term (SFT used 1.0 for each part).
        perception_batch_size: demonstration frames per call.
        shift: largest random shift of the frames, in pixels.
    """

    def __init__(
        self,
        evaluator,
        *,
        algo,
        demos: list[str],
        heads: str,
        perception_coeff: float = 1.0,
        perception_batch_size: int = 16,
        shift: int = 4,
    ) -> None:
        super().__init__()
        from vla_torchrl.training.loop import stock_loss

        self.ppo = stock_loss(evaluator, algo)
        self.evaluator = evaluator
        self.perception_coeff = float(perception_coeff)
        self.batch_size = int(perception_batch_size)
        self.shift = int(shift)
        config = evaluator.model.config
        hidden = config.llm_hidden_size
        saved = torch.load(heads, weights_only=True)
        # the flat heads read every patch: their input width says how many (checked per call)
        patches = saved["head"]["out.weight"].shape[1] // saved["head"]["reduce.0.weight"].shape[0]
        self.patches, self.grid = patches, int(round(patches**0.5))
        self.flat_head = PrivilegedHead(hidden, patches)
        self.flat_head.load_state_dict(saved["head"])
        self.keypoint_head = KeypointHead(hidden)
        self.keypoint_head.load_state_dict(saved["keypoint_head"])
        self.orientation_head = OrientationHead(hidden, patches)
        self.orientation_head.load_state_dict(saved["orientation_head"])
        for head in (self.flat_head, self.keypoint_head, self.orientation_head):
            head.requires_grad_(False)  # an anchor: only the towers and projector move
        self.depth_mean, self.depth_std = float(saved["depth_mean"]), float(saved["depth_std"])

        data = load_privileged_demos(list(demos))
        state = data[PRIVILEGED_KEY]
        # plain attributes, not buffers: kept out of the run's checkpoints
        self.images = data[IMAGE_KEY]
        self.flat_z = (regression_targets(state) - saved["mean"]) / saved["std"]
        self.grasped = state["is_grasped"].bool()
        self.phase = state["expert_phase"].long()
        self.keypoints = keypoint_targets(state, *self.images.shape[-3:-1])
        self.orient_z = (orientation_targets(state) - saved["orient_mean"]) / saved["orient_std"]

    def perception_loss(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three losses on the demonstration frames ``index`` (shifted at random)."""
        seed = int(torch.randint(0, 2**31 - 1, ()))
        images, moved = shifted(self.images[index], self.shift, torch.Generator().manual_seed(seed))
        model, processor = self.evaluator.model, self.evaluator.processor
        z = model.embed_images(processor.image_processor(images))
        if z.shape[1] != self.patches:
            raise ValueError(
                f"the heads read {self.patches} patches, the model gives {z.shape[1]}: pass the "
                "head.pt of the run this policy comes from"
            )
        flat, _ = privileged_loss(
            self.flat_head(z), self.flat_z[index], self.grasped[index], self.phase[index]
        )
        keypoint, _ = keypoint_loss(
            self.keypoint_head(z),
            self.keypoints[index],
            self.grid,
            self.depth_mean,
            self.depth_std,
            shift=moved,
        )
        orientation = torch.nn.functional.mse_loss(self.orientation_head(z), self.orient_z[index])
        return {"flat": flat, "keypoint": keypoint, "orientation": orientation}

    def forward(self, rollout: TensorDictBase) -> TensorDict:
        out = self.ppo(rollout)  # loss_objective, loss_critic, diagnostics
        index = torch.randint(0, self.images.shape[0], (self.batch_size,))
        parts = self.perception_loss(index)
        out.set("loss_perception", self.perception_coeff * sum(parts.values()))
        for name, value in parts.items():
            out.set(f"perception_{name}", value.detach())
        return out
