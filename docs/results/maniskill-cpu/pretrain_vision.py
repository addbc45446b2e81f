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
"""

import argparse
import json
import time
from pathlib import Path

import torch
from tensordict import TensorDict

from vla_torchrl.envs.demos import load_demos
from vla_torchrl.envs.transforms import ImageAugmentation
from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, PRIVILEGED_KEY

POSITIONS = ("tcp_position", "object_position", "receptacle_position")
N_PHASES = 8


def regression_targets(state: TensorDict) -> torch.Tensor:
    """``[N, 12]``: tcp, object, receptacle, tcp - object (metres)."""
    p = [state[k].float() for k in POSITIONS]
    return torch.cat([*p, p[0] - p[1]], dim=-1)


class PrivilegedHead(torch.nn.Module):
    """Projected patch embeddings ``[B, P, H]`` -> (regression ``[B, 12]``, grasp ``[B]``,
    phase logits ``[B, 8]``)."""

    def __init__(self, hidden: int, patches: int, width: int = 16) -> None:
        super().__init__()
        self.reduce = torch.nn.Sequential(torch.nn.Linear(hidden, width), torch.nn.GELU())
        self.out = torch.nn.Linear(width * patches, 12 + 1 + N_PHASES)

    def forward(self, patches: torch.Tensor):
        y = self.out(self.reduce(patches).flatten(1))
        return y[:, :12], y[:, 12], y[:, 13:]


def privileged_loss(head_out, target_z, grasped, phase):
    """Sum of the standardized MSE, the grasp BCE and the phase CE (each ~1 at chance)."""
    reg, grasp_logit, phase_logits = head_out
    mse = torch.nn.functional.mse_loss(reg, target_z)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(grasp_logit, grasped.float())
    ce = torch.nn.functional.cross_entropy(phase_logits, phase)
    parts = {"mse": float(mse.detach()), "bce": float(bce.detach()), "ce": float(ce.detach())}
    return mse + bce + ce, parts


def build_small(ls_init: float | None = 1.0, image_size: int = 64, patch: int = 8):
    """``model=small`` (64 px, patch 8, ViTs 96 x 4, Llama 128 x 4: sft_experiment.py's
    defaults); ``image_size`` / ``patch`` as sft_experiment.py's ``--img`` / ``--patch``."""
    import dataclasses

    from vla_torchrl.modules import build_policy
    from vla_torchrl.modules.config import OpenVLAConfig

    small = OpenVLAConfig.small()
    cfg = OpenVLAConfig.small(
        image_size=image_size,
        dino=dataclasses.replace(small.dino, layer_scale_init=ls_init, patch_size=patch),
        siglip=dataclasses.replace(small.siglip, patch_size=patch),
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
    emit(
        event="data",
        n=demos.shape[0],
        train=len(train_idx),
        val=len(val_idx),
        std_cm=[round(100 * float(s), 2) for s in std],
        phase_counts=torch.bincount(phase, minlength=N_PHASES).tolist(),
    )

    bundle = build_small(image_size=a.img, patch=a.patch)
    model, image_processor = bundle.model, bundle.processor.image_processor
    patches = (a.img // a.patch) ** 2
    head = PrivilegedHead(model.config.llm_hidden_size, patches)
    params = [
        *model.vision_backbone.parameters(),
        *model.projector.parameters(),
        *head.parameters(),
    ]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
    aug = ImageAugmentation(shift=a.shift, brightness=0.1, contrast=0.1, seed=a.seed)

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        frac = (s - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item()))

    def forward(images):
        return head(model.embed_images(image_processor(images)))

    @torch.no_grad()
    def evaluate():
        model.eval()
        head.eval()
        reg, gl, pl = [], [], []
        for i in range(0, len(val_idx), 128):
            idx = val_idx[i : i + 128]
            r, g, ph = forward(demos[IMAGE_KEY][idx])
            reg.append(r)
            gl.append(g)
            pl.append(ph)
        reg, gl, pl = torch.cat(reg), torch.cat(gl), torch.cat(pl)
        err = (reg * std + mean) - targets[val_idx]
        base = mean - targets[val_idx]
        rmse = lambda e: [round(100 * float(x), 2) for x in e.pow(2).mean(0).sqrt()]  # noqa: E731
        g_true, p_true = grasped[val_idx], phase[val_idx]
        majority = int(torch.bincount(phase[train_idx]).argmax())
        return {
            "rmse_cm": rmse(err),
            "baseline_rmse_cm": rmse(base),
            "grasp_acc": round(float(((gl > 0) == g_true).float().mean()), 3),
            "grasp_baseline": round(
                float(max(g_true.float().mean(), 1 - g_true.float().mean())), 3
            ),
            "phase_acc": round(float((pl.argmax(-1) == p_true).float().mean()), 3),
            "phase_baseline": round(float((p_true == majority).float().mean()), 3),
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
            mb = aug(TensorDict({IMAGE_KEY: demos[IMAGE_KEY][idx]}, [len(idx)]))
            loss, parts = privileged_loss(
                forward(mb[IMAGE_KEY]), target_z[idx], grasped[idx], phase[idx]
            )
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
                torch.save({"head": head.state_dict(), "mean": mean, "std": std}, out / "head.pt")
            if step >= a.steps:
                break
    emit(event="done", step=step)


if __name__ == "__main__":
    main()
