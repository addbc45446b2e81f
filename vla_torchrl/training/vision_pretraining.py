"""Vision pretraining on simulator frames with privileged labels (issue 14).

OpenVLA's towers arrive pretrained (DINOv2, SigLIP, then the OXE robot data); the CPU scale's
small model starts from random ones, and SFT alone on a few thousand demonstration frames
teaches them to ignore the image. This stage stands in for that pretraining: the vision towers
and the projector learn, from the frame alone, where the gripper, the object and the receptacle
are, whether the object is held, which phase of the task the expert is in, how the gripper is
turned and how the object lies (:mod:`vla_torchrl.objectives.perception`)::

    L = L_position + c_k * L_keypoint + c_o * L_orientation

on demonstration frames collected with ``vla-torchrl-collect privileged=true``, plus, when
given, ``scene_frames``: one frame per scene, straight after the reset, which shows the towers
many more object placements than the demonstrations do (a demonstration episode is one
placement; ``vla-torchrl-collect env.max_episode_steps=1 keep_failures=true filter_idle=false
privileged=true`` plays ~12 scenes per second per process). The language
model does not train here. Top to bottom: hold out whole episodes (``val_fraction``),
standardize the targets with the training split's statistics, then ``steps`` AdamW steps on
random minibatches (``scene_share`` of each from the scene frames when set; each frame
shifted by up to ``shift`` pixels, the keypoint labels moved with it, plus brightness /
contrast jitter), a linear warm-up and a cosine down to
``min_lr_ratio``, and every ``eval_every`` steps the held-out errors in physical units
(:func:`perception_metrics`), a line in ``log.jsonl`` and the outputs:

* ``policy/``: the whole model as a saved policy (:func:`~vla_torchrl.training.policy.
  save_policy`), the language model still at its random initialisation: SFT starts from it
  with ``vla-torchrl-train algo=sft model.init_from=<out>/policy``;
* ``heads.pt``: the heads and the target statistics (:func:`~vla_torchrl.training.
  perception_anchor.load_perception_heads` reads it), for the perception terms during SFT or
  RL (:class:`~vla_torchrl.training.perception_anchor.WithPerceptionLoss`);
* ``checkpoint.pt``: model, heads, optimizer and step; a rerun with the same ``out`` resumes
  from it (each step's minibatch, shifts and jitter are drawn from generators seeded by the
  step, so a resumed run sees the frames an uninterrupted one would have).

The command line is ``vla-torchrl-pretrain-vision``
(:class:`~vla_torchrl.config.cli_schema.PretrainVisionConfig`, ``conf/pretrain_vision.yaml``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase

from vla_torchrl.config.cli_schema import PretrainVisionConfig
from vla_torchrl.config.train_schema import AlgoConfig
from vla_torchrl.envs.demos import held_out_episodes
from vla_torchrl.envs.transforms import ImageAugmentation
from vla_torchrl.errors import UserError
from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, PRIVILEGED_KEY
from vla_torchrl.objectives.perception import (
    POSITIONS,
    TARGETS_KEY,
    KeypointHead,
    OrientationHead,
    PerceptionLoss,
    PositionHead,
    decode_keypoints,
    decode_orientation,
    orientation_errors_deg,
    orientation_targets,
    position_targets,
    shift_images,
)
from vla_torchrl.training.perception_anchor import (
    keypoint_targets,
    load_privileged_frames,
    perception_targets,
)
from vla_torchrl.training.policy import build_policy_from_config, save_policy
from vla_torchrl.training.sft_loop import lr_factor
from vla_torchrl.utils.logging import progress

__all__ = [
    "HEADS_FILE",
    "PerceptionData",
    "perception_data",
    "perception_metrics",
    "pretrain_vision",
    "target_statistics",
]

_log = logging.getLogger("vla_torchrl.training.vision_pretraining")

#: the heads and target statistics of a pretraining run (``load_perception_heads`` reads it)
HEADS_FILE = "heads.pt"
CHECKPOINT_FILE = "checkpoint.pt"
#: the policy is never the subject of a recipe loss here: no critic, the SFT stage's settings
_ALGO = AlgoConfig(name="sft", critic="none")


def target_statistics(
    state: TensorDictBase, image_hw: tuple[int, int], *, min_std: float = 1e-3
) -> dict[str, torch.Tensor | float]:
    """Standardization of the perception targets over ``state`` (the training frames): mean and
    std of the 12 positions, of the keypoint depths and of the 11 orientation numbers, in the
    layout of ``heads.pt``. Stds are clamped at ``min_std`` (a constant target stays finite).

    Examples:
        >>> from vla_torchrl.training.perception_anchor import perception_targets
        >>> s = TensorDict({"tcp_position": torch.rand(5, 3), "object_position": torch.rand(5, 3),
        ...     "receptacle_position": torch.rand(5, 3), "tcp_rotation": torch.eye(3).expand(5, 3, 3),
        ...     "object_yaw": torch.rand(5), "is_grasped": torch.zeros(5, dtype=torch.bool),
        ...     "expert_phase": torch.zeros(5, dtype=torch.long)}, [5])
        >>> stats = target_statistics(s, (96, 96))
        >>> z = perception_targets(s, stats)["position_z"]
        >>> torch.allclose(z.mean(0), torch.zeros(12), atol=1e-5)
        True
    """
    positions = position_targets(state)
    depths = keypoint_targets(state, *image_hw)[..., 2]
    orientation = orientation_targets(state)
    return {
        "mean": positions.mean(0),
        "std": positions.std(0).clamp_min(min_std),
        "depth_mean": float(depths.mean()),
        "depth_std": max(float(depths.std()), min_std),
        "orient_mean": orientation.mean(0),
        "orient_std": orientation.std(0).clamp_min(min_std),
    }


@dataclass
class PerceptionData:
    """Demonstration frames ready for :class:`PerceptionLoss`.

    Attributes:
        frames: ``IMAGE_KEY`` uint8 ``[N, H, W, 3]`` and the standardized targets under
            :data:`~vla_torchrl.objectives.perception.TARGETS_KEY` (keypoints included).
        state: the privileged labels ``[N]`` in physical units, for :func:`perception_metrics`.
        train, held: frame indices of the two splits (whole episodes).
        stats: :func:`target_statistics` of the training split.
        scene_frames: how many of the training frames are ``scene_frames`` (the last ones).
    """

    frames: TensorDict
    state: TensorDictBase
    train: torch.Tensor
    held: torch.Tensor
    stats: dict[str, torch.Tensor | float]
    scene_frames: int = 0

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.frames.get(IMAGE_KEY).shape[-3:-1])


def perception_data(
    demos: list[str] | TensorDictBase,
    *,
    val_fraction: float,
    seed: int = 0,
    scene_frames: list[str] | TensorDictBase | None = None,
) -> PerceptionData:
    """Load privileged demonstrations (folders or a TensorDict), split them by episode and
    standardize their targets with the training split's statistics.

    ``scene_frames`` (folders or a TensorDict of privileged frames, e.g. one reset frame per
    scene) join the training split only: the held-out split is the demos' alone, the same
    episodes with or without them.

    Examples:
        >>> def frames(n):
        ...     state = TensorDict({"tcp_position": torch.rand(n, 3),
        ...         "object_position": torch.rand(n, 3), "receptacle_position": torch.rand(n, 3),
        ...         "tcp_rotation": torch.eye(3).expand(n, 3, 3), "object_yaw": torch.rand(n),
        ...         "is_grasped": torch.zeros(n, dtype=torch.bool),
        ...         "expert_phase": torch.zeros(n, dtype=torch.long)}, [n])
        ...     return TensorDict({IMAGE_KEY: torch.zeros(n, 8, 8, 3, dtype=torch.uint8),
        ...         PRIVILEGED_KEY: state, EPISODE_ID_KEY: torch.arange(n) // 2}, [n])
        >>> data = perception_data(frames(20), val_fraction=0.2, scene_frames=frames(6))
        >>> len(data.train), len(data.held), int(data.train.max())  # 16 + 6 train, 4 held
        (22, 4, 25)
    """
    frames = load_privileged_frames(demos)
    n, n_scene = frames.shape[0], 0
    episodes = frames.get(EPISODE_ID_KEY, None)
    if episodes is None:
        episodes = torch.arange(n)
    train, held = held_out_episodes(episodes.reshape(n), val_fraction, seed)
    if len(train) == 0:
        raise UserError(
            f"val_fraction={val_fraction} holds out every episode of the demos; lower it"
        )
    if scene_frames is not None and (
        isinstance(scene_frames, TensorDictBase) or len(scene_frames) > 0
    ):
        extra = load_privileged_frames(scene_frames)
        if extra.get(IMAGE_KEY).shape[-3:] != frames.get(IMAGE_KEY).shape[-3:]:
            raise UserError(
                f"scene_frames are {tuple(extra.get(IMAGE_KEY).shape[-3:])} images, the demos "
                f"{tuple(frames.get(IMAGE_KEY).shape[-3:])}: collect both with the same "
                "env.width / env.height"
            )
        keys = [IMAGE_KEY, PRIVILEGED_KEY]
        frames = torch.cat([frames.select(*keys), extra.select(*keys)])
        train = torch.cat([train, n + torch.arange(extra.shape[0])])
        n_scene, n = extra.shape[0], frames.shape[0]
    state = frames.get(PRIVILEGED_KEY)
    image_hw = tuple(frames.get(IMAGE_KEY).shape[-3:-1])
    stats = target_statistics(state[train], image_hw)
    targets = perception_targets(state, stats, image_hw)
    batch = TensorDict({IMAGE_KEY: frames.get(IMAGE_KEY), TARGETS_KEY: targets}, [n])
    return PerceptionData(batch, state, train, held, stats, n_scene)


def _heads(hidden: int, patches: int, cfg: PretrainVisionConfig) -> dict[str, torch.nn.Module]:
    heads: dict[str, torch.nn.Module] = {"position_head": PositionHead(hidden, patches)}
    if cfg.keypoint_coef > 0:
        heads["keypoint_head"] = KeypointHead(hidden)
    if cfg.orientation_coef > 0:
        heads["orientation_head"] = OrientationHead(hidden, patches)
    return heads


def _heads_state(heads: dict[str, torch.nn.Module], stats: dict) -> dict:
    """``heads.pt``'s layout (``head`` is the position head's historical name)."""
    saved = {("head" if k == "position_head" else k): h.state_dict() for k, h in heads.items()}
    return {**saved, **stats}


@torch.no_grad()
def perception_metrics(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    heads: dict[str, torch.nn.Module],
    data: PerceptionData,
    index: torch.Tensor,
    *,
    batch: int = 128,
) -> dict[str, float | list[float]]:
    """Errors of the heads on the frames ``index``, in physical units.

    ``position_rmse_cm`` (12: tcp, object, receptacle, tcp - object, x/y/z each) beside
    ``baseline_rmse_cm`` (always predicting the training mean), ``grasp_acc`` and
    ``phase_acc``; with a keypoint head ``keypoint_rmse_cm`` (the same 12, decoded through the
    camera) and ``keypoint_px_rmse`` (per point, camera pixels); with an orientation head the
    median rotation and yaw errors in degrees.
    """
    from vla_torchrl.envs.maniskill.scene import unproject_from_image

    stats, (h, w) = data.stats, data.image_hw
    outputs: dict[str, list[torch.Tensor]] = {"pos": [], "grasp": [], "phase": [], "kp": []}
    outputs["orient"] = []
    for start in range(0, len(index), batch):
        z = encoder(data.frames.get(IMAGE_KEY)[index[start : start + batch]])
        pos, grasp, phase = heads["position_head"](z)
        outputs["pos"].append(pos)
        outputs["grasp"].append(grasp)
        outputs["phase"].append(phase)
        if "keypoint_head" in heads:
            grid = int(round(z.shape[1] ** 0.5))
            outputs["kp"].append(
                decode_keypoints(
                    heads["keypoint_head"](z), grid, stats["depth_mean"], stats["depth_std"]
                )
            )
        if "orientation_head" in heads:
            outputs["orient"].append(heads["orientation_head"](z))
    state = data.state[index]
    truth = position_targets(state)

    def rmse_cm(err: torch.Tensor) -> list[float]:
        return [round(100 * float(x), 2) for x in err.pow(2).mean(0).sqrt()]

    estimate = torch.cat(outputs["pos"]) * stats["std"] + stats["mean"]
    grasped, phase = state["is_grasped"].bool().reshape(-1), state["expert_phase"].reshape(-1)
    out: dict[str, float | list[float]] = {
        "position_rmse_cm": rmse_cm(estimate - truth),
        "baseline_rmse_cm": rmse_cm(stats["mean"] - truth),
        "grasp_acc": round(float(((torch.cat(outputs["grasp"]) > 0) == grasped).float().mean()), 4),
        "phase_acc": round(
            float((torch.cat(outputs["phase"]).argmax(-1) == phase).float().mean()), 4
        ),
    }
    if outputs["kp"]:
        kp = torch.cat(outputs["kp"])  # [N, K, 3]: normalized x, y and depth
        uv = kp[..., :2] * torch.tensor([w, h]) - 0.5
        xyz = unproject_from_image(uv, kp[..., 2], h, w).float()
        points = [xyz[:, i] for i in range(len(POSITIONS))]
        out["keypoint_rmse_cm"] = rmse_cm(torch.cat([*points, points[0] - points[1]], -1) - truth)
        true_px = keypoint_targets(state, h, w)[..., :2] * torch.tensor([w, h])
        px = (kp[..., :2] * torch.tensor([w, h]) - true_px).norm(dim=-1)
        out["keypoint_px_rmse"] = [round(float(x), 2) for x in px.pow(2).mean(0).sqrt()]
    if outputs["orient"]:
        values = torch.cat(outputs["orient"]) * stats["orient_std"] + stats["orient_mean"]
        rotation, yaw = decode_orientation(values)
        d_rot, d_yaw = orientation_errors_deg(
            rotation, yaw, state["tcp_rotation"].float(), state["object_yaw"].float()
        )
        out["rotation_err_deg_median"] = round(float(d_rot.median()), 2)
        out["yaw_err_deg_median"] = round(float(d_yaw.median()), 2)
    return out


def _check_sizes(cfg: PretrainVisionConfig, data: PerceptionData) -> None:
    if len(data.train) < cfg.batch_size:
        raise UserError(
            f"batch_size={cfg.batch_size} is larger than the training split "
            f"({len(data.train)} frames): lower batch_size or collect more episodes"
        )


def pretrain_vision(cfg: PretrainVisionConfig) -> Path:
    """Run the pretraining ``cfg`` asks for (see the module docstring); returns ``cfg.out``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data = perception_data(
        list(cfg.demos),
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        scene_frames=list(cfg.scene_frames),
    )
    _check_sizes(cfg, data)
    # the optimizer holds the towers, the projector and the heads: the LLM gets no gradient
    bundle = build_policy_from_config(cfg.model, _ALGO)
    model, image_processor = bundle.model, bundle.processor.image_processor

    def encoder(images: torch.Tensor) -> torch.Tensor:
        return model.embed_images(image_processor(images))

    with torch.no_grad():
        z = encoder(data.frames.get(IMAGE_KEY)[:1])
    heads = _heads(z.shape[-1], z.shape[1], cfg)
    loss_fn = PerceptionLoss(
        encoder,
        **heads,
        grid=int(round(z.shape[1] ** 0.5)),
        depth_mean=float(data.stats["depth_mean"]),
        depth_std=float(data.stats["depth_std"]),
        position_coeff=cfg.position_coef,
        keypoint_coeff=cfg.keypoint_coef,
        orientation_coeff=cfg.orientation_coef,
    )
    params = [
        *model.vision_backbone.parameters(),
        *model.projector.parameters(),
        *(p for h in heads.values() for p in h.parameters()),
    ]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
    )
    step = _resume(out, model, heads, optimizer)
    log = (out / "log.jsonl").open("a")
    t0, first = time.monotonic(), step

    def emit(record: dict) -> None:
        record["elapsed_s"] = round(time.monotonic() - t0, 1)
        log.write(json.dumps(record) + "\n")
        log.flush()

    def evaluate_and_save() -> dict:
        model.eval()
        metrics = perception_metrics(encoder, heads, data, data.held) if len(data.held) else {}
        emit({"event": "eval", "step": step, **metrics})
        save_policy(bundle, out / "policy", cfg.model, _ALGO)
        torch.save(_heads_state(heads, data.stats), out / HEADS_FILE)
        torch.save(
            {
                "step": step,
                "model": model.state_dict(),
                "heads": {k: h.state_dict() for k, h in heads.items()},
                "optimizer": optimizer.state_dict(),
            },
            out / CHECKPOINT_FILE,
        )
        return metrics

    if step == 0:
        emit(
            {
                "event": "data",
                "frames": data.frames.shape[0],
                "scene_frames": data.scene_frames,
                "scene_share": (
                    cfg.scene_share
                    if cfg.scene_share is not None
                    else round(data.scene_frames / len(data.train), 4)
                ),
                "train": len(data.train),
                "held_out": len(data.held),
                "target_std_cm": [round(100 * float(s), 2) for s in data.stats["std"]],
            }
        )
        evaluate_and_save()
    bar = progress(
        total=cfg.steps, initial=step, desc="pretrain-vision", disable=not cfg.progress_bar
    )
    try:
        while step < cfg.steps:
            model.train()
            factor = lr_factor(
                step, cfg.steps, schedule="cosine", warmup=cfg.warmup_steps, floor=cfg.min_lr_ratio
            )
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            batch = _minibatch(data, cfg, step)
            losses = loss_fn(batch)
            loss = sum(v for k, v in losses.items() if k.startswith("loss_"))
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                done = step - first
                emit(
                    {
                        "event": "train",
                        "step": step,
                        "loss": round(float(loss.detach()), 4),
                        **{
                            k: round(float(v), 4)
                            for k, v in losses.items()
                            if not k.startswith("loss_")
                        },
                        "grad_norm": round(float(grad_norm), 3),
                        "lr": cfg.lr * factor,
                        "frames_per_s": round(done * cfg.batch_size / (time.monotonic() - t0), 1),
                    }
                )
            if step % cfg.eval_every == 0 or step == cfg.steps:
                metrics = evaluate_and_save()
                _log.info("step %d: %s", step, _headline(metrics))
    finally:
        bar.close()
        log.close()
    return out


def _minibatch(data: PerceptionData, cfg: PretrainVisionConfig, step: int) -> TensorDict:
    """Step ``step``'s frames (drawn with replacement), shifted and jittered; every draw from a
    generator seeded by ``(seed, step)``, so a resumed run repeats them."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    index = data.train[_draw(len(data.train), data.scene_frames, cfg, g)]
    batch = data.frames[index]  # indexing with a tensor copies
    images, moved = shift_images(batch.get(IMAGE_KEY), cfg.shift, g)
    batch.set(IMAGE_KEY, images)
    batch.set((TARGETS_KEY, "shift"), moved)
    if cfg.jitter > 0:
        jitter = ImageAugmentation(
            shift=0,
            brightness=cfg.jitter,
            contrast=cfg.jitter,
            seed=int(torch.randint(0, 2**31 - 1, (), generator=g)),
        )
        batch = jitter(batch)
    return batch


def _draw(n_train: int, n_scene: int, cfg: PretrainVisionConfig, g: torch.Generator):
    """Positions in the training split for one minibatch (with replacement). Without
    ``scene_share`` every training frame is equally likely; with it, ``round(share * batch)``
    of the draws come from the last ``n_scene`` positions (the scene frames) and the rest from
    the demos' frames before them."""
    if cfg.scene_share is None or n_scene == 0:
        return torch.randint(0, n_train, (cfg.batch_size,), generator=g)
    from_scenes = round(cfg.scene_share * cfg.batch_size)
    n_demo = n_train - n_scene
    demo = torch.randint(0, n_demo, (cfg.batch_size - from_scenes,), generator=g)
    scene = n_demo + torch.randint(0, n_scene, (from_scenes,), generator=g)
    return torch.cat([demo, scene])


def _resume(out: Path, model, heads: dict, optimizer) -> int:
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        return 0
    saved = torch.load(path, weights_only=True, map_location="cpu")
    if set(saved["heads"]) != set(heads):
        raise UserError(
            f"{path} was written with the heads {sorted(saved['heads'])}, this run has "
            f"{sorted(heads)} (keypoint_coef / orientation_coef changed): use another out, or "
            "the settings of that run"
        )
    model.load_state_dict(saved["model"])
    for name, head in heads.items():
        head.load_state_dict(saved["heads"][name])
    optimizer.load_state_dict(saved["optimizer"])
    _log.info("resuming %s at step %d", out, saved["step"])
    return int(saved["step"])


def _headline(metrics: dict) -> str:
    if "keypoint_rmse_cm" in metrics:
        return f"keypoint RMSE (cm) {metrics['keypoint_rmse_cm'][:9]}"
    if "position_rmse_cm" in metrics:
        return f"position RMSE (cm) {metrics['position_rmse_cm'][:9]}"
    return "no held-out frames"
