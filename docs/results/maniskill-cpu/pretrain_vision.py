"""Vision pretraining on simulator frames with privileged labels (issue 14, third session).

OpenVLA's towers come pretrained (DINOv2, SigLIP, then OXE); ours start from random weights and,
trained by SFT alone on ~8k demo frames, learn to ignore the image (see README.md here). This
stage stands in for that pretraining: the small model's vision towers and projector learn to
tell, from the frame alone, where the gripper, the object and the receptacle are, whether the
object is held and which phase of the task the expert is in. The labels come free from the
simulator (``vla-torchrl-collect privileged=true``).

Head (training only, never part of the policy): the projected patch embeddings ``[B, P, H]`` ->
16 per patch -> flat -> 12 regression outputs (tcp, object, receptacle, tcp - object; metres,
standardized with the training split's mean / std), 1 grasp logit, 8 phase logits.

Writes ``pretrained.pt``: a state dict of the WHOLE small model (the LLM part still random),
for ``sft_experiment.py --init``, and ``head.pt`` for ``--aux-privileged-coef`` there.

Reports on the held-out episodes: per-target RMSE in cm (and the predict-the-mean baseline),
grasp and phase accuracy (and the majority-class baseline).

``--keypoint-coef`` (eighth session) adds a second, local objective: the camera projection of
each labelled point (:func:`vla_torchrl.envs.maniskill.scene.project_to_image`) is supervised on
the patch grid, CenterNet-style. Each patch predicts, per point, a logit (is the point in this
patch?), its offset inside the patch and its depth; the loss is the cross-entropy over patches
plus the offset and depth errors at the true patch. Decoding (argmax patch + its offset and
depth, back through the camera) gives a 3-D estimate whose RMSE is reported next to the flat
head's. The random shift augmentation moves these labels with the image.

``--orientation-coef`` adds a third head for what a grasp also needs and the positions do not
say: the gripper's rotation (9 numbers) and the object's long-axis yaw as (cos 2y, sin 2y)
(standardized MSE, the flat head's layout). Reported as the median angle errors in degrees.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from tensordict import TensorDict

from vla_torchrl.envs.demos import load_demos
from vla_torchrl.envs.maniskill.scene import camera_projection
from vla_torchrl.envs.transforms import ImageAugmentation
from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, PRIVILEGED_KEY

# the heads, targets and losses live in the package now (vla_torchrl.objectives.perception); the
# names this folder's scripts import from here are kept
from vla_torchrl.objectives.perception import (  # noqa: F401 (re-exported for the scripts)
    N_PHASES,
    POSITIONS,
    KeypointHead,
    OrientationHead,
    decode_keypoints,
    decode_orientation,
    encode_keypoints,
    keypoint_loss,
    orientation_errors_deg,
    orientation_targets,
)
from vla_torchrl.objectives.perception import PositionHead as PrivilegedHead
from vla_torchrl.objectives.perception import position_loss as privileged_loss
from vla_torchrl.objectives.perception import position_targets as regression_targets
from vla_torchrl.objectives.perception import shift_images as shifted
from vla_torchrl.training.perception_anchor import keypoint_targets  # noqa: F401


def unproject(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Root-frame points ``[..., 3]`` from :func:`keypoint_targets`-style ``(x, y, depth)``."""
    p = torch.as_tensor(camera_projection(height, width), dtype=torch.float64)
    u = keypoints[..., 0].double() * width - 0.5
    v = keypoints[..., 1].double() * height - 0.5
    d = keypoints[..., 2].double()
    homogeneous = torch.stack([u * d, v * d, d], -1)  # = P[:, :3] @ X + P[:, 3]
    return torch.linalg.solve(p[:, :3], (homogeneous - p[:, 3]).unsqueeze(-1)).squeeze(-1).float()


def stem_of(state_dict_path) -> str:
    """``"conv"`` when a saved model's towers have a conv stem (``ViTConfig.stem``), else
    ``"patch"``: read off the state dict's keys, so runs need not be told twice."""
    keys = torch.load(state_dict_path, weights_only=True, map_location="cpu").keys()
    return "conv" if any("patch_embed.proj.layers" in k for k in keys) else "patch"


def build_small(
    ls_init: float | None = 1.0, image_size: int = 64, patch: int = 8, stem: str = "patch"
):
    """``model=small`` (64 px, patch 8, ViTs 96 x 4, Llama 128 x 4: sft_experiment.py's
    defaults); ``image_size`` / ``patch`` / ``stem`` as sft_experiment.py's ``--img`` /
    ``--patch`` / ``--stem``."""
    import dataclasses

    from vla_torchrl.modules import build_policy
    from vla_torchrl.modules.config import OpenVLAConfig

    small = OpenVLAConfig.small()
    cfg = OpenVLAConfig.small(
        image_size=image_size,
        dino=dataclasses.replace(small.dino, layer_scale_init=ls_init, patch_size=patch, stem=stem),
        siglip=dataclasses.replace(small.siglip, patch_size=patch, stem=stem),
    )
    return build_policy("tiny", config=cfg, lora=False, critic="none")


def held_out_split(episode_ids: torch.Tensor, fraction: float = 0.05, seed: int = 0):
    """Whole episodes held out (the same rule as sft_experiment.py)."""
    eps = torch.unique(episode_ids)
    g = torch.Generator().manual_seed(seed)
    perm = eps[torch.randperm(len(eps), generator=g)]
    held = set(perm[: max(1, int(len(eps) * fraction))].tolist())
    is_held = torch.tensor([e in held for e in episode_ids.tolist()])
    return torch.nonzero(~is_held).squeeze(-1), torch.nonzero(is_held).squeeze(-1)


def load_privileged_demos(paths):
    tds = []
    for i, d in enumerate(paths):
        td = load_demos(d).to_tensordict()
        if td.get(PRIVILEGED_KEY, None) is None:
            raise SystemExit(f"{d} has no privileged labels: collect it with privileged=true")
        td[EPISODE_ID_KEY] = td[EPISODE_ID_KEY] + 100000 * i
        tds.append(td)
    return torch.cat(tds)


def jsonl_logger(out: Path):
    """``emit(**fields)``: prints each record and appends it to ``out/log.jsonl`` with the
    seconds since the call (``t``); shared by the scripts of this folder."""
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a")  # noqa: SIM115
    t0 = time.time()

    def emit(**kw):
        kw["t"] = round(time.time() - t0, 1)
        print(json.dumps(kw), flush=True)
        log.write(json.dumps(kw) + "\n")
        log.flush()

    return emit


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--demos", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--shift", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--img", type=int, default=64, help="model input size (px)")
    p.add_argument("--patch", type=int, default=8, help="ViT patch size (px)")
    p.add_argument(
        "--stem",
        choices=["patch", "conv"],
        default=None,
        help="the towers' stem (ViTConfig.stem); default: --init's, else patch (the towers of the sessions before the ninth; model=small now uses conv)",
    )
    p.add_argument(
        "--keypoint-coef", type=float, default=0.0, help="weight of the patch keypoint loss"
    )
    p.add_argument(
        "--orientation-coef",
        type=float,
        default=0.0,
        help="weight of the gripper-rotation / object-yaw loss",
    )
    p.add_argument("--init", default=None, help="start from this pretrained.pt (and head.pt)")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    out = Path(a.out)
    emit = jsonl_logger(out)

    demos = load_privileged_demos(a.demos)
    state = demos[PRIVILEGED_KEY]
    train_idx, val_idx = held_out_split(demos[EPISODE_ID_KEY])
    targets = regression_targets(state)
    mean, std = targets[train_idx].mean(0), targets[train_idx].std(0).clamp_min(1e-3)
    target_z = (targets - mean) / std
    grasped, phase = state["is_grasped"].bool(), state["expert_phase"].long()
    cam_h, cam_w = demos[IMAGE_KEY].shape[-3:-1]
    kp = keypoint_targets(state, cam_h, cam_w)
    d_mean, d_std = float(kp[train_idx, :, 2].mean()), float(kp[train_idx, :, 2].std())
    grid = a.img // a.patch
    orient = orientation_targets(state)
    o_mean, o_std = orient[train_idx].mean(0), orient[train_idx].std(0).clamp_min(1e-3)
    orient_z = (orient - o_mean) / o_std
    emit(
        event="data",
        n=demos.shape[0],
        train=len(train_idx),
        val=len(val_idx),
        std_cm=[round(100 * float(s), 2) for s in std],
        phase_counts=torch.bincount(phase, minlength=N_PHASES).tolist(),
    )

    stem = a.stem or (stem_of(a.init) if a.init else "patch")
    emit(event="model", stem=stem, img=a.img, patch=a.patch)
    bundle = build_small(image_size=a.img, patch=a.patch, stem=stem)
    model, image_processor = bundle.model, bundle.processor.image_processor
    patches = (a.img // a.patch) ** 2
    head = PrivilegedHead(model.config.llm_hidden_size, patches)
    kp_head = KeypointHead(model.config.llm_hidden_size)
    or_head = OrientationHead(model.config.llm_hidden_size, patches)
    if a.init:
        model.load_state_dict(torch.load(a.init, weights_only=True))
        saved = torch.load(Path(a.init).parent / "head.pt", weights_only=True)
        head.load_state_dict(saved["head"])
        if "keypoint_head" in saved:
            kp_head.load_state_dict(saved["keypoint_head"])
        if "orientation_head" in saved:
            or_head.load_state_dict(saved["orientation_head"])
    params = [
        *model.vision_backbone.parameters(),
        *model.projector.parameters(),
        *head.parameters(),
        *(kp_head.parameters() if a.keypoint_coef > 0 else []),
        *(or_head.parameters() if a.orientation_coef > 0 else []),
    ]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
    aug = ImageAugmentation(shift=0, brightness=0.1, contrast=0.1, seed=a.seed)
    shift_gen = torch.Generator().manual_seed(a.seed)

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        frac = (s - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item()))

    def forward(images):
        z = model.embed_images(image_processor(images))
        return head(z), kp_head(z), or_head(z)

    @torch.no_grad()
    def evaluate():
        model.eval()
        head.eval()
        reg, gl, pl, kps, ors = [], [], [], [], []
        for i in range(0, len(val_idx), 128):
            idx = val_idx[i : i + 128]
            (r, g, ph), k, o = forward(demos[IMAGE_KEY][idx])
            ors.append(o * o_std + o_mean)
            reg.append(r)
            gl.append(g)
            pl.append(ph)
            kps.append(decode_keypoints(k, grid, d_mean, d_std))
        reg, gl, pl, kps = torch.cat(reg), torch.cat(gl), torch.cat(pl), torch.cat(kps)
        err = (reg * std + mean) - targets[val_idx]
        base = mean - targets[val_idx]
        rmse = lambda e: [round(100 * float(x), 2) for x in e.pow(2).mean(0).sqrt()]  # noqa: E731
        g_true, p_true = grasped[val_idx], phase[val_idx]
        majority = int(torch.bincount(phase[train_idx]).argmax())
        # the keypoint head's estimate, back in the root frame (tcp, object, receptacle, and
        # the tcp - object offset), and its image error in camera pixels
        xyz = unproject(kps, cam_h, cam_w)
        kp_est = torch.cat([xyz[:, 0], xyz[:, 1], xyz[:, 2], xyz[:, 0] - xyz[:, 1]], -1)
        px = (kps[..., :2] - kp[val_idx][..., :2]) * torch.tensor([cam_w, cam_h])
        keypoint = {}
        if a.keypoint_coef > 0:
            keypoint = {
                "kp_rmse_cm": rmse(kp_est - targets[val_idx]),
                "kp_px_rmse": [round(float(x), 2) for x in px.norm(dim=-1).pow(2).mean(0).sqrt()],
            }
        if a.orientation_coef > 0:
            rot, yaw = decode_orientation(torch.cat(ors))
            d_rot, d_yaw = orientation_errors_deg(
                rot, yaw, state["tcp_rotation"][val_idx].float(), state["object_yaw"][val_idx]
            )
            keypoint["rotation_err_deg_median"] = round(float(d_rot.median()), 2)
            keypoint["yaw_err_deg_median"] = round(float(d_yaw.median()), 2)
            keypoint["yaw_err_deg_p90"] = round(float(d_yaw.quantile(0.9)), 2)
        return {
            "rmse_cm": rmse(err),
            "baseline_rmse_cm": rmse(base),
            "grasp_acc": round(float(((gl > 0) == g_true).float().mean()), 3),
            "grasp_baseline": round(
                float(max(g_true.float().mean(), 1 - g_true.float().mean())), 3
            ),
            "phase_acc": round(float((pl.argmax(-1) == p_true).float().mean()), 3),
            "phase_baseline": round(float((p_true == majority).float().mean()), 3),
            **keypoint,
        }

    if len(train_idx) < a.bs:
        raise SystemExit(
            f"--bs {a.bs} is larger than the training split ({len(train_idx)} steps): "
            "lower --bs or collect more episodes"
        )
    emit(event="eval", step=0, **evaluate())
    step, t_train = 0, time.time()
    while step < a.steps:
        order = train_idx[torch.randperm(len(train_idx))]
        for i in range(0, len(order) - a.bs + 1, a.bs):
            model.train()
            head.train()
            for gp in opt.param_groups:
                gp["lr"] = lr_at(step)
            idx = order[i : i + a.bs]
            images, moved = shifted(demos[IMAGE_KEY][idx], a.shift, shift_gen)
            mb = aug(TensorDict({IMAGE_KEY: images}, [len(idx)]))
            flat_out, kp_out, or_out = forward(mb[IMAGE_KEY])
            loss, parts = privileged_loss(flat_out, target_z[idx], grasped[idx], phase[idx])
            if a.keypoint_coef > 0:
                kl, kparts = keypoint_loss(kp_out, kp[idx], grid, d_mean, d_std, shift=moved)
                loss = loss + a.keypoint_coef * kl
                parts.update(kparts)
            if a.orientation_coef > 0:
                ol = torch.nn.functional.mse_loss(or_out, orient_z[idx])
                loss = loss + a.orientation_coef * ol
                parts["orient"] = float(ol.detach())
            opt.zero_grad()
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % 50 == 0:
                sps = step * a.bs / (time.time() - t_train)
                emit(
                    event="train",
                    step=step,
                    loss=round(float(loss), 4),
                    gn=round(float(gn), 3),
                    sps=round(sps, 1),
                    **{k: round(v, 4) for k, v in parts.items()},
                )
            if step % a.eval_every == 0 or step >= a.steps:
                emit(event="eval", step=step, **evaluate())
                torch.save(model.state_dict(), out / "pretrained.pt")
                torch.save(
                    {
                        "head": head.state_dict(),
                        "mean": mean,
                        "std": std,
                        "keypoint_head": kp_head.state_dict(),
                        "depth_mean": d_mean,
                        "depth_std": d_std,
                        "orientation_head": or_head.state_dict(),
                        "orient_mean": o_mean,
                        "orient_std": o_std,
                    },
                    out / "head.pt",
                )
            if step >= a.steps:
                break
    emit(event="done", step=step)


if __name__ == "__main__":
    main()
