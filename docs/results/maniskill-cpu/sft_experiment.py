"""The driver of the recorded SFT run in this folder (kept as it ran; imports updated to the
package layout). The same loop is now `vla-torchrl-train model=small env=maniskill_cpu algo=sft`
(training/sft_loop.py); see README.md here for the equivalent command.

Small OpenVLA (OpenVLAConfig.small sizes), full fine-tuning with the token embedding frozen,
action statistics from the demos, shift + jitter augmentation, warm-up + cosine lr, 5% of the
episodes held out, greedy in-simulator evaluation on 32 episodes of seed 1000 every N minutes.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tensordict import TensorDict

from vla_torchrl.envs import make_env
from vla_torchrl.envs.episodes import run_episodes
from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY, EPISODE_ID_KEY, METRIC_KEYS
from vla_torchrl.modules import build_policy
from vla_torchrl.modules.config import DINO_TIMM_ID, SIGLIP_TIMM_ID, OpenVLAConfig, ViTConfig
from vla_torchrl.objectives import VLASFTLoss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--demos", nargs="+")
    p.add_argument("--out")
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--img", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--vd", type=int, default=96)
    p.add_argument("--vdepth", type=int, default=4)
    p.add_argument("--h", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--shift", type=int, default=4)
    p.add_argument("--eval-every-min", type=float, default=8)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--eval-envs", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--stats", default="demos")
    p.add_argument(
        "--stats-from",
        default=None,
        help="cfg.json of an earlier run: use its action statistics instead of deriving them "
        "from --demos (keeps the bins' meaning when continuing on new data, e.g. DAgger)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None)
    p.add_argument(
        "--stem",
        choices=["patch", "conv"],
        default=None,
        help="the towers' stem (ViTConfig.stem); default: --init's, else patch (the towers of the sessions before the ninth; model=small now uses conv)",
    )
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument(
        "--aux-vision-coef",
        type=float,
        default=0.0,
        help="weight of a direct vision -> action-token head (training only)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="step budget (cosine over steps, not minutes)"
    )
    p.add_argument("--ls-init", type=float, default=None, help="DINO LayerScale init (None: 1e-5)")
    p.add_argument(
        "--aux-privileged-coef",
        type=float,
        default=0.0,
        help="keep pretrain_vision.py's privileged-state loss during SFT with this weight "
        "(demos collected with privileged=true; the head from --head, else a new one)",
    )
    p.add_argument("--head", default=None, help="head.pt of pretrain_vision.py")
    p.add_argument(
        "--aux-orientation-coef",
        type=float,
        default=0.0,
        help="keep pretrain_vision.py's rotation / yaw loss during SFT (the head from --head)",
    )
    p.add_argument(
        "--aux-keypoint-coef",
        type=float,
        default=0.0,
        help="keep pretrain_vision.py's patch keypoint loss during SFT with this weight "
        "(privileged demos; the keypoint head from --head)",
    )
    p.add_argument("--freeze-vision", action="store_true", help="train the projector and LLM only")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a")  # noqa: SIM115 (open for the whole run)

    def L(**kw):
        kw["t"] = round(time.time() - T0, 1)
        print(json.dumps(kw), flush=True)
        log.write(json.dumps(kw) + "\n")
        log.flush()

    T0 = time.time()
    # ---- demos
    tds = []
    for i, d in enumerate(a.demos):
        td = TensorDict.load_memmap(d).to_tensordict()
        td[EPISODE_ID_KEY] = td[EPISODE_ID_KEY] + 100000 * i
        tds.append(td)
    demos = torch.cat(tds)
    N = demos.shape[0]
    acts = demos[ACTION_KEY]
    from vla_torchrl.envs.transforms import ImageAugmentation
    from vla_torchrl.modules.processors import action_statistics
    from vla_torchrl.utils.threads import torch_threads

    if a.stats_from:
        st = json.loads(Path(a.stats_from).read_text())["cfg"]["norm_stats"]["maniskill_cpu"]
    else:
        st = action_statistics(acts)
    stats = {"maniskill_cpu": st}
    L(
        event="demos",
        n=N,
        stats_from=a.stats_from or "demos",
        q01=[round(x, 4) for x in st["action"]["q01"]],
        q99=[round(x, 4) for x in st["action"]["q99"]],
        mask=st["action"]["mask"],
    )
    if a.stem is None:
        sys.path.insert(0, str(Path(__file__).parent))
        from pretrain_vision import stem_of

        a.stem = stem_of(a.init) if a.init else "patch"
    cfg = OpenVLAConfig.tiny(
        image_size=a.img,
        dino=ViTConfig(
            DINO_TIMM_ID, a.vd, a.vdepth, 4, a.patch, 4.0, layer_scale_init=a.ls_init, stem=a.stem
        ),
        siglip=ViTConfig(SIGLIP_TIMM_ID, a.vd, a.vdepth, 4, a.patch, 4.0, stem=a.stem),
        llm_hidden_size=a.h,
        llm_intermediate_size=4 * a.h,
        llm_num_layers=a.layers,
        llm_num_heads=4,
        llm_num_kv_heads=4,
        llm_max_position_embeddings=512,
        norm_stats=stats if a.stats == "demos" else {},
    )
    b = build_policy(
        "tiny",
        config=cfg,
        lora=False,
        critic="none",
        unnorm_key="maniskill_cpu" if a.stats == "demos" else None,
    )
    model = b.model
    if a.init:
        model.load_state_dict(torch.load(a.init, weights_only=True))
    tok = b.processor.action_tokenizer
    demos[ACTION_TOKENS_KEY] = tok.actions_to_tokens(acts)
    tk = demos[ACTION_TOKENS_KEY] - 31744
    L(event="bins_used", per_dim=[int(torch.unique(tk[:, j]).numel()) for j in range(7)])
    # ---- split by episode
    eps = torch.unique(demos[EPISODE_ID_KEY])
    g = torch.Generator().manual_seed(0)
    perm = eps[torch.randperm(len(eps), generator=g)]
    held = set(perm[: max(1, len(eps) // 20)].tolist())
    is_held = torch.tensor([e in held for e in demos[EPISODE_ID_KEY].tolist()])
    train_idx = torch.nonzero(~is_held).squeeze(-1)
    val_idx = torch.nonzero(is_held).squeeze(-1)
    L(event="split", train=len(train_idx), val=len(val_idx))
    # ---- params
    for n_, p_ in model.named_parameters():
        if "embed_tokens" in n_ or (a.freeze_vision and n_.startswith("vision_backbone.")):
            p_.requires_grad_(False)
    params = [p_ for p_ in model.parameters() if p_.requires_grad]
    # Optional auxiliary head (training only, never saved with the policy): the projected patch
    # embeddings [B, P, H] -> 16 per patch -> flat -> 7 x 256 action-bin logits, scored on the
    # demo's tokens. It gives the vision towers a gradient that does not pass through the LLM.
    captured = {}
    aux = None
    if a.aux_vision_coef > 0:
        n_patch = (a.img // a.patch) ** 2
        aux = torch.nn.Sequential(
            torch.nn.Linear(a.h, 16),
            torch.nn.GELU(),
            torch.nn.Flatten(1),
            torch.nn.Linear(16 * n_patch, 7 * 256),
        )
        model.projector.register_forward_hook(lambda m_, i_, o_: captured.__setitem__("p", o_))
        params = params + list(aux.parameters())
    priv = None
    if a.aux_privileged_coef > 0:
        sys.path.insert(0, str(Path(__file__).parent))
        from pretrain_vision import PrivilegedHead, privileged_loss, regression_targets

        from vla_torchrl.keys import PRIVILEGED_KEY

        state = demos[PRIVILEGED_KEY]
        targets = regression_targets(state)
        head = PrivilegedHead(a.h, (a.img // a.patch) ** 2)
        if a.head:
            saved = torch.load(a.head, weights_only=True)
            head.load_state_dict(saved["head"])
            mean, std = saved["mean"], saved["std"]
        else:
            mean, std = targets[train_idx].mean(0), targets[train_idx].std(0).clamp_min(1e-3)
        demos["priv_z"] = (targets - mean) / std
        demos["priv_grasped"] = state["is_grasped"].bool()
        demos["priv_phase"] = state["expert_phase"].long()
        if aux is None:  # else the aux head's hook already captures the projector output
            model.projector.register_forward_hook(lambda m_, i_, o_: captured.__setitem__("p", o_))
        priv = head
        params = params + list(head.parameters())
    kp_head = None
    if a.aux_keypoint_coef > 0:
        sys.path.insert(0, str(Path(__file__).parent))
        from pretrain_vision import KeypointHead, keypoint_loss, keypoint_targets, shifted

        from vla_torchrl.keys import IMAGE_KEY, PRIVILEGED_KEY

        if not a.head:
            raise SystemExit("--aux-keypoint-coef needs --head (a head.pt with a keypoint head)")
        saved_kp = torch.load(a.head, weights_only=True)
        kp_head = KeypointHead(a.h)
        kp_head.load_state_dict(saved_kp["keypoint_head"])
        kp_grid, kp_mean, kp_std = a.img // a.patch, saved_kp["depth_mean"], saved_kp["depth_std"]
        cam_h, cam_w = demos[IMAGE_KEY].shape[-3:-1]
        demos["priv_kp"] = keypoint_targets(demos[PRIVILEGED_KEY], cam_h, cam_w)
        shift_gen = torch.Generator().manual_seed(a.seed)
        if aux is None and priv is None:  # else a hook already captures the projector output
            model.projector.register_forward_hook(lambda m_, i_, o_: captured.__setitem__("p", o_))
        params = params + list(kp_head.parameters())
    or_head = None
    if a.aux_orientation_coef > 0:
        sys.path.insert(0, str(Path(__file__).parent))
        from pretrain_vision import OrientationHead, orientation_targets

        from vla_torchrl.keys import PRIVILEGED_KEY

        saved_or = torch.load(a.head, weights_only=True)
        or_head = OrientationHead(a.h, (a.img // a.patch) ** 2)
        or_head.load_state_dict(saved_or["orientation_head"])
        o_mean, o_std = saved_or["orient_mean"], saved_or["orient_std"]
        demos["priv_orient_z"] = (orientation_targets(demos[PRIVILEGED_KEY]) - o_mean) / o_std
        if aux is None and priv is None and kp_head is None:
            model.projector.register_forward_hook(lambda m_, i_, o_: captured.__setitem__("p", o_))
        params = params + list(or_head.parameters())
    L(
        event="model",
        params=sum(p_.numel() for p_ in model.parameters()),
        trainable=sum(p_.numel() for p_ in params),
    )
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
    loss_fn = VLASFTLoss(b.evaluator)

    def lr_at(s, frac):
        w = a.warmup
        if s < w:
            return a.lr * (s + 1) / w
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    aug = ImageAugmentation(shift=a.shift, brightness=0.1, contrast=0.1, seed=a.seed)

    def val_loss(shuffle_images=False):
        # shuffle_images: the held-out loss with each step's image swapped for another step's;
        # its gap to the true loss measures how much the policy reads the image
        model.eval()
        tot = 0
        n = 0
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for i in range(0, len(val_idx), 64):
                mb = demos[val_idx[i : i + 64]]
                if shuffle_images:
                    mb = mb.clone()
                    img = mb["observation", "image"]
                    mb["observation", "image"] = img[torch.randperm(len(img), generator=g)]
                o = loss_fn(mb.clone())
                tot += float(o["loss_sft"]) * mb.shape[0]
                n += mb.shape[0]
        return tot / n

    env = None

    def sim_eval():
        # TorchRL's ParallelEnv sets this process to max(1, threads - workers) torch threads
        # when it starts, and the env stays open between evaluations: without the restore, the
        # training steps after the first evaluation ran on 1 thread (58 -> 35 samples/s on 2
        # cores). The rollout itself runs on 1 thread, leaving the cores to the renderer.
        with torch_threads(1):
            return _sim_eval()

    def _sim_eval():
        nonlocal env
        if env is None:
            env = make_env(
                "ind", num_envs=a.eval_envs, image_size=(96, 96), seed=1000, max_steps=a.max_steps
            )
        env.set_seed(1000)
        actor = b.eval_actor(mode="greedy")
        model.eval()
        t = time.time()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            recs = run_episodes(env, actor, episodes=a.eval_episodes, max_steps=a.max_steps)
        n = max(len(recs), 1)
        r = {k: sum(x[k] for x in recs) / n for k in METRIC_KEYS}
        r["eval_s"] = round(time.time() - t, 1)
        r["n"] = len(recs)
        return r

    step = 0
    seen = 0
    best = -1
    last_eval = time.time()
    budget = a.minutes * 60
    t_train = time.time()
    while True:
        order = train_idx[torch.randperm(len(train_idx))]
        for i in range(0, len(order) - a.bs + 1, a.bs):
            model.train()
            frac = step / a.steps if a.steps else (time.time() - t_train) / budget
            for gp in opt.param_groups:
                gp["lr"] = lr_at(step, frac)
            mb = demos[order[i : i + a.bs]].clone()
            if kp_head is not None:  # shift here, so that the keypoint labels move too
                images, moved = shifted(mb[IMAGE_KEY], a.shift, shift_gen)
                mb[IMAGE_KEY] = images
            mb = aug(mb)
            o = loss_fn(mb)
            total = o["loss_sft"]
            if aux is not None:
                logits = aux(captured["p"]).view(-1, 7, 256)
                target = (mb[ACTION_TOKENS_KEY] - 31744).long()
                aux_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
                total = total + a.aux_vision_coef * aux_loss
            if priv is not None:
                pl, _ = privileged_loss(
                    priv(captured["p"]), mb["priv_z"], mb["priv_grasped"], mb["priv_phase"]
                )
                total = total + a.aux_privileged_coef * pl
            if kp_head is not None:
                kl, _ = keypoint_loss(
                    kp_head(captured["p"]), mb["priv_kp"], kp_grid, kp_mean, kp_std, shift=moved
                )
                total = total + a.aux_keypoint_coef * kl
            if or_head is not None:
                ol = torch.nn.functional.mse_loss(or_head(captured["p"]), mb["priv_orient_z"])
                total = total + a.aux_orientation_coef * ol
            opt.zero_grad()
            total.backward()
            gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            seen += a.bs
            if step % 50 == 0:
                L(
                    event="train",
                    step=step,
                    epoch=round(seen / len(train_idx), 2),
                    loss=round(float(o["loss_sft"]), 4),
                    lr=lr_at(step, frac),
                    gn=round(float(gn), 3),
                    sps=round(seen / (time.time() - t_train), 1),
                )
            done = step >= a.steps if a.steps else time.time() - t_train > budget
            if time.time() - last_eval > a.eval_every_min * 60 or done:
                vl = val_loss()
                vls = val_loss(shuffle_images=True)
                r = sim_eval()
                last_eval = time.time()
                L(
                    event="eval",
                    step=step,
                    epoch=round(seen / len(train_idx), 2),
                    val_loss=round(vl, 4),
                    val_loss_shuffled_images=round(vls, 4),
                    **r,
                )
                torch.save({k: v for k, v in model.state_dict().items()}, out / "last.pt")
                if r["success"] + 0.1 * r["grasped"] > best:
                    best = r["success"] + 0.1 * r["grasped"]
                    torch.save(model.state_dict(), out / "best.pt")
                (out / "cfg.json").write_text(json.dumps({"cfg": cfg.to_dict(), "args": vars(a)}))
                if any(
                    h is not None for h in (priv, kp_head, or_head)
                ):  # a continuation needs them
                    heads = {}
                    if priv is not None:
                        heads.update(head=priv.state_dict(), mean=mean, std=std)
                    if or_head is not None:
                        heads.update(
                            orientation_head=or_head.state_dict(),
                            orient_mean=o_mean,
                            orient_std=o_std,
                        )
                    if kp_head is not None:
                        heads.update(
                            keypoint_head=kp_head.state_dict(),
                            depth_mean=kp_mean,
                            depth_std=kp_std,
                        )
                    torch.save(heads, out / "head.pt")
            if done:
                break
        if (step >= a.steps) if a.steps else (time.time() - t_train > budget):
            break
    L(event="done", step=step)
    if env is not None:
        env.close()


if __name__ == "__main__":
    main()
