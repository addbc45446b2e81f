"""The SFT loop (paper Sec. 4.2 "VLA warm-up"): demonstrations -> token cross-entropy.

Top to bottom: load the demonstrations and (``algo.norm_stats=demos``, the default) derive their
action statistics, as OpenVLA's fine-tuning does, so the demo tokens span the 256 bins and the
rollout un-normalises with the same q01/q99; hold out ``algo.val_fraction`` of the episodes; then
epochs of shuffled minibatches with an optional augmentation (``algo.augment``), a warm-up +
cosine learning rate (``optim.lr_schedule``), in-simulator evaluation every
``algo.eval_every_epochs`` epochs (the run's fixed evaluation episodes), the held-out loss beside
it (and its gap to the loss with shuffled images, ``eval/image_reliance``: does the
policy read the image?), ``policy-last/`` and ``policy-best/`` (by evaluation success, then grasp) written as it goes,
a checkpoint every epoch (resume continues at the next epoch), and an optional time budget
(``algo.max_minutes``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from tensordict import TensorDictBase

from vla_torchrl.config.train_schema import TrainConfig
from vla_torchrl.envs.demos import held_out_episodes, load_demos
from vla_torchrl.envs.toy import toy_oracle_demos
from vla_torchrl.envs.transforms import ImageAugmentation
from vla_torchrl.errors import UserError
from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY, EPISODE_ID_KEY, IMAGE_KEY
from vla_torchrl.modules import PolicyBundle
from vla_torchrl.modules.processors import action_statistics
from vla_torchrl.training.paths import BEST_POLICY_DIR, LAST_POLICY_DIR
from vla_torchrl.training.policy import save_policy
from vla_torchrl.training.update import run_update
from vla_torchrl.utils.logging import progress

__all__ = [
    "BEST_POLICY_DIR",
    "LAST_POLICY_DIR",
    "held_out_loss",
    "load_sft_demos",
    "lr_factor",
    "train_sft",
]

_log = logging.getLogger("vla_torchrl.training.sft_loop")


def lr_factor(step: int, total: int, *, schedule: str, warmup: int, floor: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``.

    Linear warm-up over ``warmup`` steps (from ``1 / warmup``), then ``1`` (``constant``) or a
    cosine from 1 down to ``floor`` at ``total`` (``cosine``).

    Examples:
        >>> [round(lr_factor(s, 10, schedule="cosine", warmup=2, floor=0.1), 3) for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.55, 0.1]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress_ = min(1.0, (step - warmup) / (total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress_))


def load_sft_demos(cfg: TrainConfig, bundle: PolicyBundle) -> TensorDictBase:
    """Demonstrations with their action tokens: a ``vla-torchrl-collect`` set, or toy oracle ones.

    With ``algo.norm_stats=demos`` the statistics of the demo actions are stored in the policy
    (``norm_stats[algo.unnorm_key]``) before tokenising, so targets and rollouts share them.
    """
    if cfg.algo.demos:
        folders = [cfg.algo.demos] if isinstance(cfg.algo.demos, str) else list(cfg.algo.demos)
        demos = _concatenated([_one_demo_set(folder) for folder in folders], folders)
    elif cfg.env.backend == "toy":
        demos = toy_oracle_demos(
            cfg.algo.demo_episodes,
            seed=cfg.seed,
            image_size=cfg.env.width,
            max_steps=cfg.env.max_episode_steps,
        )
    else:
        raise UserError("algo=sft needs algo.demos=<dir written by vla-torchrl-collect>")
    actions = demos.get(ACTION_KEY)
    if cfg.algo.norm_stats == "demos":
        stats = action_statistics(actions.reshape(-1, actions.shape[-1]))
        bundle.set_action_statistics(cfg.algo.unnorm_key, stats)
        _log.info(
            "action statistics from %d demo steps stored as norm_stats[%r] (q01 %s, q99 %s)",
            stats["num_transitions"],
            cfg.algo.unnorm_key,
            [round(v, 4) for v in stats["action"]["q01"]],
            [round(v, 4) for v in stats["action"]["q99"]],
        )
    # env actions -> normalised with the policy's q01/q99 (identity without stats) -> token ids
    demos.set(ACTION_TOKENS_KEY, bundle.processor.action_tokenizer.actions_to_tokens(actions))
    return demos


def _one_demo_set(folder: str) -> TensorDictBase:
    path = Path(folder)
    if not path.is_dir():
        raise UserError(
            f"algo.demos={str(path)!r} does not exist; write demos with vla-torchrl-collect"
        )
    try:
        demos = load_demos(path).to_tensordict()
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(f"algo.demos={str(path)!r}: {err}") from err
    if ACTION_KEY not in demos.keys():  # noqa: SIM118 (TensorDict has no __contains__)
        raise UserError(
            f"algo.demos={str(path)!r} holds no {ACTION_KEY!r} entry; it is not a "
            "demonstration set written by vla-torchrl-collect"
        )
    return demos


def _concatenated(sets: list[TensorDictBase], folders: list[str]) -> TensorDictBase:
    """One set from several: folder ``i``'s episode ids offset by ``100_000 * i`` (so that
    episodes of different folders stay apart in the held-out split), the same entries in all."""
    if len(sets) == 1:
        return sets[0]
    keys = [sorted(map(str, td.keys(include_nested=True, leaves_only=True))) for td in sets]
    for folder, these in zip(folders[1:], keys[1:], strict=True):
        if these != keys[0]:
            raise UserError(
                f"algo.demos: {folder!r} has other entries than {folders[0]!r} "
                f"({sorted(set(these) ^ set(keys[0]))[:4]}); collect the sets with the same "
                "settings (e.g. privileged=true for all or none)"
            )
    for i, td in enumerate(sets):
        if td.get(EPISODE_ID_KEY, None) is not None:
            td.set(EPISODE_ID_KEY, td.get(EPISODE_ID_KEY) + 100_000 * i)
    return torch.cat(sets)


def _split(
    demos: TensorDictBase, fraction: float, seed: int
) -> tuple[TensorDictBase, TensorDictBase | None]:
    """Hold out ``fraction`` of the episodes (whole episodes, by ``EPISODE_ID_KEY``)."""
    if fraction <= 0:
        return demos, None
    ids = demos.get(EPISODE_ID_KEY, None)
    ids = torch.arange(demos.shape[0]) if ids is None else ids.reshape(-1)
    train, held = held_out_episodes(ids, fraction, seed)
    if len(train) == 0:
        raise UserError(
            f"algo.val_fraction={fraction} holds out every demonstration episode; lower it"
        )
    return demos[train], demos[held]


@torch.no_grad()
def held_out_loss(
    loss_fn, held: TensorDictBase, batch: int, *, shuffle_images: bool = False
) -> float:
    """Mean ``loss_sft`` over ``held`` (per step), in minibatches of ``batch``.

    With ``shuffle_images`` every step is scored with the image of another held-out step (one
    fixed permutation of the whole set). The gap between the two losses says how much the policy
    reads the image: a policy that predicts from the instruction and the action prior alone scores
    the same either way (measured on the first ManiSkill SFT, issue 14: 1.296 vs 1.326 nats per
    token, so its vision towers were barely used).

    Examples:
        >>> from tensordict import TensorDict
        >>> held = TensorDict({"observation": {"image": torch.arange(4.0).view(4, 1)},
        ...                    "x": torch.arange(4.0).view(4, 1)}, batch_size=[4])
        >>> loss = lambda td: {"loss_sft": (td["observation", "image"] - td["x"]).abs().mean()}
        >>> held_out_loss(loss, held, 2), held_out_loss(loss, held, 2, shuffle_images=True) > 0
        (0.0, True)
    """
    if shuffle_images:
        held = held.clone()
        images = held.get(IMAGE_KEY)
        # one random cycle through all steps: no step keeps its own image
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
        source = torch.empty_like(order)
        source[order] = order.roll(-1)
        held.set(IMAGE_KEY, images[source])
    total, n = 0.0, 0
    for i in range(0, held.shape[0], batch):
        mb = held[i : i + batch].clone()
        total += float(loss_fn(mb)["loss_sft"]) * mb.shape[0]
        n += mb.shape[0]
    return total / max(n, 1)


def _held_out_records(loss_fn, held: TensorDictBase, batch: int) -> dict[str, float]:
    real = held_out_loss(loss_fn, held, batch)
    shuffled = held_out_loss(loss_fn, held, batch, shuffle_images=True)
    return {
        "eval/sft_loss": real,
        "eval/sft_loss_shuffled_images": shuffled,
        "eval/image_reliance": shuffled - real,
    }


def train_sft(cfg, ctx, bundle, loss_fn, optimizer, trainables, info, evaluation=None, save=None):
    """Run SFT epochs (see the module docstring); ``save(step, **counters)`` checkpoints."""
    demos = load_sft_demos(cfg, bundle)
    train, held = _split(demos, cfg.algo.val_fraction, cfg.seed)
    if info.world_size > 1:  # each rank an equal share (equal minibatch counts keep ranks in step)
        share = train.shape[0] // info.world_size
        train = train[info.rank * share : (info.rank + 1) * share]
    algo, optim = cfg.algo, cfg.optim
    rows_per_step = optim.minibatch_size * optim.grad_accum_steps
    steps_per_epoch = max(1, math.ceil(train.shape[0] / rows_per_step))
    total_steps = algo.epochs * steps_per_epoch
    epoch = int(ctx.counters.get("iteration", 0))
    sgd_step = epoch * steps_per_epoch
    best = (
        float(ctx.counters.get("best_success", -1.0)),
        float(ctx.counters.get("best_grasp", -1.0)),
    )
    base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    for g, lr in zip(optimizer.param_groups, base_lrs, strict=True):
        g["initial_lr"] = lr
    augment = ImageAugmentation(seed=cfg.seed + epoch) if algo.augment else None
    params = list(trainables.values())
    deadline = None if algo.max_minutes is None else time.monotonic() + 60.0 * algo.max_minutes
    bar = progress(
        total=algo.epochs, initial=epoch, desc="sft", disable=not cfg.logger.progress_bar
    )
    out_of_time = False
    try:
        while epoch < algo.epochs and not out_of_time:
            t0 = time.perf_counter()
            order = torch.randperm(
                train.shape[0], generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
            )
            sums: dict[str, float] = {}
            n_steps = 0
            for start in range(0, train.shape[0], rows_per_step):
                factor = lr_factor(
                    sgd_step,
                    total_steps,
                    schedule=optim.lr_schedule,
                    warmup=optim.warmup_steps,
                    floor=optim.min_lr_ratio,
                )
                for g, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                    g["lr"] = lr * factor
                chunk = train[order[start : start + rows_per_step]].clone()
                if augment is not None:
                    chunk = augment(chunk)
                stats = run_update(
                    chunk,
                    loss_fn,
                    optimizer,
                    params,
                    minibatch_size=optim.minibatch_size,
                    grad_accum_steps=optim.grad_accum_steps,
                    max_grad_norm=optim.max_grad_norm,
                    shuffle=False,
                    dist_info=info,
                    autocast=optim.autocast,
                    verify_steps=optim.verify_steps,
                )
                for k, v in stats.items():
                    if k not in ("steps", "skipped", "undone") and v is not None:
                        sums[k] = sums.get(k, 0.0) + float(v)
                n_steps += 1
                sgd_step += 1
                if deadline is not None and time.monotonic() > deadline:
                    out_of_time = True
                    break
            epoch += 1
            step = epoch * train.shape[0] * info.world_size  # demonstration samples seen
            record = {f"losses/{k}": v / max(n_steps, 1) for k, v in sums.items()}
            record.update(
                {
                    "train/iteration": epoch,
                    "train/lr": optimizer.param_groups[0]["lr"],
                    "perf/update_s": time.perf_counter() - t0,
                }
            )
            last = epoch >= algo.epochs or out_of_time
            every = algo.eval_every_epochs
            if every and (epoch % every == 0 or last):
                if held is not None:
                    record.update(_held_out_records(loss_fn, held, optim.minibatch_size))
                if evaluation is not None:
                    record.update(evaluation())
                    score = (record.get("eval/success", 0.0), record.get("eval/grasped", 0.0))
                    if info.is_main:
                        save_policy(bundle, ctx.run_dir / LAST_POLICY_DIR, cfg.model, cfg.algo)
                        if score > best:
                            best = score
                            save_policy(bundle, ctx.run_dir / BEST_POLICY_DIR, cfg.model, cfg.algo)
                            _log.info(
                                "best policy so far (success %.3f, grasp %.3f) -> %s",
                                *score,
                                ctx.run_dir / BEST_POLICY_DIR,
                            )
            elif held is not None and last:
                record.update(_held_out_records(loss_fn, held, optim.minibatch_size))
            ctx.logger.log(record, step=step)
            bar.update(1)
            if save is not None:
                save(step, iteration=epoch, best_success=best[0], best_grasp=best[1])
        if out_of_time:
            _log.info("algo.max_minutes=%s reached after %d epochs", algo.max_minutes, epoch)
    finally:
        bar.close()
