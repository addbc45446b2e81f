"""Is the pretrained towers' position error a bias per episode or noise per step?

Reads a ``pretrain_vision.py`` run (``pretrained.pt`` + ``head.pt``) and its held-out episodes,
and splits each position's error into the part shared by all steps of an episode (the
episode's mean error: a bias) and the part that changes from step to step (the rest). For the
object, only steps before the grasp count: it rests there, so its true position is constant
and any change of the estimate is the towers' own. ``state_bc_ceiling.py`` shows the two kinds
cost a policy very differently.

``--estimate keypoint`` reads the patch keypoint head instead (``pretrain_vision.py
--keypoint-coef``, decoded and back-projected through the camera). Each part also reports the
median and 90th percentile of the 3-D error's length, which an RMSE hides when a few frames
are badly wrong.

    python docs/results/maniskill-cpu/perception_error_structure.py runs/pv-2x \
        --demos data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, PRIVILEGED_KEY

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_vision import (  # noqa: E402
    POSITIONS,
    KeypointHead,
    PrivilegedHead,
    build_small,
    decode_keypoints,
    held_out_split,
    load_privileged_demos,
    regression_targets,
    stem_of,
    unproject,
)

PARTS = {"gripper": slice(0, 3), "object": slice(3, 6), "gripper - object": slice(9, 12)}


def bias_and_jitter(err: torch.Tensor, episode: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis RMS of the episode-mean error (bias) and of the error about it (jitter).

    ``bias**2 + jitter**2`` is the mean squared error when every step weighs the same.

    Examples:
        >>> e = torch.tensor([[1.0], [3.0], [-2.0], [-2.0]])
        >>> b, j = bias_and_jitter(e, torch.tensor([0, 0, 1, 1]))
        >>> [round(float(b), 3), round(float(j), 3)]   # means 2 and -2; spread 1 and 0
        [2.0, 0.707]
    """
    bias_sq = torch.zeros(err.shape[1])
    jitter_sq = torch.zeros(err.shape[1])
    for e in torch.unique(episode):
        rows = err[episode == e]
        mean = rows.mean(0)
        bias_sq += len(rows) * mean**2
        jitter_sq += ((rows - mean) ** 2).sum(0)
    n = err.shape[0]
    return (bias_sq / n).sqrt(), (jitter_sq / n).sqrt()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run", help="a pretrain_vision.py --out directory")
    p.add_argument("--demos", nargs="+", required=True)
    p.add_argument("--img", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--estimate", choices=("flat", "keypoint"), default="flat")
    a = p.parse_args()
    run = Path(a.run)
    stem = stem_of(run / "pretrained.pt")
    bundle = build_small(image_size=a.img, patch=a.patch, stem=stem)
    model, image_processor = bundle.model, bundle.processor.image_processor
    model.load_state_dict(torch.load(run / "pretrained.pt", weights_only=True))
    saved = torch.load(run / "head.pt", weights_only=True)
    head = PrivilegedHead(model.config.llm_hidden_size, (a.img // a.patch) ** 2)
    head.load_state_dict(saved["head"])
    kp_head = KeypointHead(model.config.llm_hidden_size, len(POSITIONS))
    if a.estimate == "keypoint":
        kp_head.load_state_dict(saved["keypoint_head"])
    model.eval()
    head.eval()
    kp_head.eval()

    demos = load_privileged_demos(a.demos)
    _, val_idx = held_out_split(demos[EPISODE_ID_KEY])
    state = demos[PRIVILEGED_KEY][val_idx]
    targets = regression_targets(state)
    with torch.no_grad():
        preds = []
        for i in range(0, len(val_idx), 128):
            idx = val_idx[i : i + 128]
            z = model.embed_images(image_processor(demos[IMAGE_KEY][idx]))
            if a.estimate == "flat":
                reg, _, _ = head(z)
                preds.append(reg * saved["std"] + saved["mean"])
                continue
            grid = a.img // a.patch
            kps = decode_keypoints(kp_head(z), grid, saved["depth_mean"], saved["depth_std"])
            xyz = unproject(kps, *demos[IMAGE_KEY].shape[-3:-1])
            preds.append(torch.cat([xyz[:, 0], xyz[:, 1], xyz[:, 2], xyz[:, 0] - xyz[:, 1]], -1))
    err = torch.cat(preds) - targets
    episode = demos[EPISODE_ID_KEY][val_idx]
    before_grasp = torch.zeros(len(val_idx), dtype=torch.bool)
    for e in torch.unique(episode):  # steps before the episode's first grasp
        rows = torch.nonzero(episode == e).flatten()
        before_grasp[rows] = ~torch.cummax(state["is_grasped"][rows].long(), 0).values.bool()
    out = {
        "estimate": a.estimate,
        "episodes": int(torch.unique(episode).numel()),
        "steps": len(val_idx),
    }
    for name, cols in PARTS.items():
        keep = before_grasp if name == "object" else torch.ones_like(before_grasp)
        b, j = bias_and_jitter(err[keep][:, cols], episode[keep])
        out[name] = {
            "rmse_cm": [round(100 * float(v), 2) for v in (b**2 + j**2).sqrt()],
            "episode_bias_cm": [round(100 * float(v), 2) for v in b],
            "step_jitter_cm": [round(100 * float(v), 2) for v in j],
            "median_cm": round(100 * float(err[keep][:, cols].norm(dim=-1).median()), 2),
            "p90_cm": round(100 * float(err[keep][:, cols].norm(dim=-1).quantile(0.9)), 2),
            "steps": int(keep.sum()),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
