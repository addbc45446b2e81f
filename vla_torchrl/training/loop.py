"""The training loop of ``vla-torchrl-train``: SFT, PPO, PPO-ORZ, GRPO, GRPO(s) and TPO on a VLA.

:func:`train` reads top to bottom: start (or resume) the run -> envs -> policy -> optimizer ->
checkpoint restore -> objective -> collector -> loop -> saved policy. The run directory holds
``config.json``, ``metrics.jsonl`` (``train/``, ``losses/``, ``perf/``, ``eval/``),
``checkpoints/`` (atomic, resumed automatically with ``resume=true``) and ``policy/`` (the final
policy, reloadable with :func:`vla_torchrl.training.policy.load_policy`).

One iteration: reset all envs -> collect ``steps_per_env`` steps with the sampling actor (TorchRL
``Collector``, or with ``collector.env_groups > 1`` the
:class:`~vla_torchrl.training.overlapped_collector.OverlappedCollector`, which overlaps the
policy of one group of envs with the others' steps) -> advantages and minibatch updates (:func:`~vla_torchrl.training.update.rl_update`)
-> log -> checkpoint. Every rollout starts from fresh episodes whose env seed is a function of
(seed, iteration), so a resumed run replays exactly what an uninterrupted run would have seen.
GRPO, GRPO(s) and TPO collect fixed-length episodes by default (``collector.episodes=auto`` ->
``fixed``: success recorded, not ending an episode, one whole episode per env per rollout as the
reference run's 80 steps); a trajectory the rollout's end cuts off never enters a group or a pair
(:func:`~vla_torchrl.envs.episodes.unfinished_step_mask`).

Under ``torchrun`` every rank runs this loop on its own envs and seeds with a policy replica
(README "Scale out"); advantage statistics and GRPO groups use the global batch, gradients are
averaged over ranks once per optimizer step, and only rank 0 logs, checkpoints and saves.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from torchrl.collectors import Collector

from vla_torchrl.config.train_schema import AlgoConfig, TrainConfig, episode_mode, validate
from vla_torchrl.envs.episodes import episode_stats
from vla_torchrl.envs.sim_errors import count_sim_errors, guard_sim_errors
from vla_torchrl.errors import ConfigError, UserError
from vla_torchrl.keys import (
    EPISODE_ID_KEY,
    METRIC_KEYS,
    VALID_STEP_KEY,
)
from vla_torchrl.modules import PolicyBundle, SharedValueNetwork
from vla_torchrl.objectives import (
    GAEAdvantage,
    GroupRelativeAdvantage,
    VLAGRPOLoss,
    VLAPPOLoss,
    VLASFTLoss,
    VLATPOLoss,
)
from vla_torchrl.training.data_parallel import (
    combine_records,
    full_optimizer_state,
    full_trainables,
    gather_record,
    load_trainables,
    optimizer_state_for,
    shard_policy,
)
from vla_torchrl.training.environments import make_recipe_env_groups, task_names
from vla_torchrl.training.overlapped_collector import OverlappedCollector, seed_env_groups
from vla_torchrl.training.paths import POLICY_DIR
from vla_torchrl.training.periodic_eval import PeriodicEvaluation, due, eval_due
from vla_torchrl.training.policy import build_policy_from_config, save_policy
from vla_torchrl.training.run import RunContext, start_run
from vla_torchrl.training.sft_loop import train_sft
from vla_torchrl.training.update import rl_update
from vla_torchrl.utils import select_device
from vla_torchrl.utils.distributed import (
    DistInfo,
    barrier,
    broadcast_parameters,
    destroy_distributed,
    init_distributed,
    rank_seed,
)
from vla_torchrl.utils.logging import progress
from vla_torchrl.utils.threads import keep_torch_threads, torch_threads

__all__ = [
    "POLICY_DIR",
    "NonFiniteUpdates",
    "custom_loss",
    "make_objective",
    "resolve_loss_target",
    "stock_loss",
    "train",
]

_log = logging.getLogger("vla_torchrl.recipes.train")


class NonFiniteUpdates(UserError):
    """Too many updates in a row had a non-finite loss or gradient."""


# -- objectives ---------------------------------------------------------------------------------
def stock_loss(evaluator, algo: AlgoConfig):
    """The toolkit's own loss of ``algo.name``, with every setting of ``algo``.

    For custom losses (``algo.loss._target_``) that wrap the stock one, e.g.
    ``self.ppo = stock_loss(evaluator, algo)`` (``examples/ppo_with_sft.py``).
    """
    if algo.name in ("ppo", "ppo-orz"):
        return VLAPPOLoss(
            evaluator,
            clip_epsilon=algo.clip_epsilon,  # Eq. (1), paper/FACTS: 0.2
            clip_value=algo.value_clip,  # FACTS: value clip 0.2
            huber_delta=algo.huber_delta,  # FACTS: Huber delta 10
            critic_coeff=algo.value_coef,
            entropy_coeff=algo.entropy_coef,
            normalize_advantage=algo.normalize_advantage,
            kl_coeff=algo.kl_coef,  # with algo.reference=initial (validated)
        )
    if algo.name in ("grpo", "grpo-s"):
        return VLAGRPOLoss(
            evaluator,
            clip_epsilon=algo.clip_epsilon,
            entropy_coeff=algo.entropy_coef,
            kl_coeff=algo.kl_coef,
            normalize_advantage=algo.normalize_advantage,
        )
    if algo.name == "tpo":
        # steps of void episodes and of fragments cut by the rollout's end are masked out of the
        # trajectories (training.update sets VALID_STEP_KEY)
        return VLATPOLoss(evaluator, beta=algo.beta, mask_key=VALID_STEP_KEY)
    if algo.name == "sft":
        return VLASFTLoss(evaluator)
    raise UserError(f"algo.name={algo.name!r} is unknown")


def resolve_loss_target(algo: AlgoConfig):
    """The class (or factory) named by ``algo.loss._target_``, or None; one-line error if absent."""
    target = algo.loss_target
    if target is None:
        return None
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception as err:  # noqa: BLE001 - Hydra wraps import errors in several types
        cause = err.__cause__ or err
        raise UserError(
            f"algo.loss._target_={target!r} cannot be imported ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}); put its package on the path "
            "(e.g. PYTHONPATH=. vla-torchrl-train ...) and check the spelling"
        ) from err


def custom_loss(cfg: TrainConfig, bundle: PolicyBundle):
    """Build ``algo.loss`` as ``Target(evaluator, algo=cfg.algo, **arguments)``.

    The arguments are the other entries of ``algo.loss``, through Hydra's ``instantiate`` (so an
    argument may itself be ``{_target_: ...}``).

    Raises UserError when it cannot be built, or when it has trainable parameters that the
    optimizer does not hold (they would silently stay at their initial values).
    """
    from hydra.utils import instantiate

    target = resolve_loss_target(cfg.algo)
    kwargs = {k: v for k, v in cfg.algo.loss.items() if k != "_target_"}
    try:
        # nested {_target_: ...} arguments are built by Hydra; the evaluator and the config are
        # Python objects, passed directly
        kwargs = instantiate(kwargs, _convert_="all") if kwargs else {}
        loss = target(bundle.evaluator, algo=cfg.algo, **kwargs)
    except Exception as err:  # noqa: BLE001 - report the user's constructor error in one line
        cause = err.__cause__ or err
        raise UserError(
            f"algo.loss: {cfg.algo.loss_target}(evaluator, algo=..., "
            f"{', '.join(f'{k}=...' for k in cfg.algo.loss if k != '_target_')}) failed: "
            f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
        ) from err
    if not callable(loss):
        raise UserError(
            f"algo.loss._target_={cfg.algo.loss_target} built a {type(loss).__name__}, which is "
            "not callable; it must map a minibatch to a TensorDict of loss_* terms"
        )
    if isinstance(loss, torch.nn.Module):
        held = {id(p) for p in bundle.trainable_named_parameters().values()}
        extra = [n for n, p in loss.named_parameters() if p.requires_grad and id(p) not in held]
        if extra:
            raise UserError(
                f"algo.loss._target_={cfg.algo.loss_target} has trainable parameters the "
                f"optimizer does not hold ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); "
                "train only the policy's parameters, or freeze these (requires_grad_(False))"
            )
    return loss


def make_objective(cfg: TrainConfig, bundle: PolicyBundle):
    """The loss module and the advantage module (or None) of ``cfg.algo``.

    The loss is :func:`stock_loss`, or the custom ``algo.loss._target_`` (:func:`custom_loss`);
    the advantage module is always the algorithm's.
    """
    algo = cfg.algo
    loss = custom_loss(cfg, bundle) if algo.loss_target else stock_loss(bundle.evaluator, algo)
    if algo.name in ("ppo", "ppo-orz"):
        # V(s_T) for bootstrapping at the rollout's end and at truncations: the h^0 critic needs
        # only the prefix pass; other critics read the actor's output (it carries the critic).
        value_network = (
            SharedValueNetwork(bundle.model, bundle.processor, bundle.critic)
            if algo.critic == "shared_h0"
            else bundle.actor
        )
        # PPO-ORZ: gamma = lambda = 1 (paper Sec. 4.1, Hu et al. 2025); the config enforces it.
        return loss, GAEAdvantage(gamma=algo.gamma, lmbda=algo.lmbda, value_network=value_network)
    if algo.name in ("grpo", "grpo-s"):
        # GRPO: a group is every trajectory of the rollout (one task episode per env);
        # GRPO(s): trajectories that start from the same initial state (same episode id).
        group_key = EPISODE_ID_KEY if algo.name == "grpo-s" else None
        # episodes void by a simulator error are left out of the groups' statistics
        advantage = GroupRelativeAdvantage(
            mode=algo.grpo_mode, group_key=group_key, mask_key=VALID_STEP_KEY
        )
        return loss, advantage
    return loss, None


# -- the loop -----------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Path:
    """Run (or resume) the training described by ``cfg``; returns the saved policy directory.

    Under ``torchrun`` every rank calls it (data-parallel; see the module docstring).
    """
    # validated once, here: fail fast, before joining a group (start_run does not validate again)
    validate(cfg, tasks=task_names(cfg.env.backend))
    resolve_loss_target(cfg.algo)  # a custom loss that cannot be imported fails before any work
    info = init_distributed(
        backend=cfg.dist.backend, device=_rank_device(cfg), timeout_s=cfg.dist.timeout_s
    )
    try:
        with keep_torch_threads():  # the caller's torch thread count survives the run's envs
            return _train(cfg, info)
    finally:
        destroy_distributed(info)


def _rank_device(cfg: TrainConfig) -> str | None:
    # cpu or an explicit cuda:N as asked; otherwise init_distributed picks cuda:LOCAL_RANK
    if cfg.device.startswith("cuda:") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(
            f"device={cfg.device!r} would put every torchrun rank on the same GPU; use "
            "device=auto or device=cuda (each rank takes cuda:LOCAL_RANK)"
        )
    return cfg.device if cfg.device == "cpu" or cfg.device.startswith("cuda:") else None


def _train(cfg: TrainConfig, info: DistInfo) -> Path:
    # the updates' torch threads: a ParallelEnv lowers this process's count while it is open
    compute_threads = torch.get_num_threads()
    # ---- seed, run directory, resume (rank 0 owns the run directory) ---------------------------
    ctx = start_run(cfg, info, validated=True)
    device = info.device if info.enabled else select_device(cfg.device)
    # ---- env: each rank its own envs and seeds -------------------------------------------------
    # (a list of env groups with collector.env_groups > 1: OverlappedCollector)
    env = None if cfg.algo.name == "sft" else _make_env(cfg, device, info)
    # ---- model: actor (rollouts), evaluator (losses), critic, optimizer --------------------------
    bundle = build_policy_from_config(
        cfg.model, cfg.algo, lr=cfg.optim.lr, value_lr=cfg.optim.value_lr, device=device
    )
    if cfg.dist.strategy == "fsdp2":
        shard_policy(bundle, info)  # before the optimizer: it must see the sharded parameters
    trainables = bundle.trainable_named_parameters()
    # FACTS.md: AdamW, lr 1e-4 for LoRA and 3e-3 for the value head (separate groups).
    optimizer = torch.optim.AdamW(
        bundle.param_groups, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay
    )
    # names, shapes and optimizer state checked first; whole saved tensors cut into this rank's
    # shards under FSDP2
    ctx.restore_training_state(
        trainables,
        {"optimizer": optimizer},
        load_tensors=load_trainables,
        adapt_optimizer_state=optimizer_state_for,
    )
    broadcast_parameters(trainables.values(), info)  # every replica starts from rank 0's weights
    loss_fn, advantage = make_objective(cfg, bundle)
    # ---- collector: built before the RNG restore, since building it runs the policy once -------
    collector = None if env is None else _make_collector(cfg, env, bundle)
    # evaluation during training on fixed episodes (training.periodic_eval): rank 0 only, except
    # under FSDP2, where every forward pass all-gathers shards and so every rank must evaluate
    evaluates = info.is_main or (info.enabled and cfg.dist.strategy == "fsdp2")
    wants_eval = env is not None or (cfg.algo.name == "sft" and cfg.algo.eval_every_epochs > 0)
    shared = env if cfg.collector.eval_env == "training" else None  # validated: same episodes
    evaluation = PeriodicEvaluation(cfg, bundle, shared) if wants_eval and evaluates else None
    ctx.restore_rng()  # last thing before the loop (see training.run)
    try:
        if collector is None:
            train_sft(
                cfg,
                ctx,
                bundle,
                loss_fn,
                optimizer,
                trainables,
                info,
                evaluation,
                save=lambda step, **counters: _save(
                    ctx, step, trainables, optimizer, info, **counters
                ),
            )
        else:
            _train_rl(
                cfg,
                ctx,
                env if isinstance(env, list) else [env],
                collector,
                loss_fn,
                advantage,
                optimizer,
                trainables,
                info,
                evaluation,
                compute_threads=compute_threads,
            )
    finally:
        if evaluation is not None:
            evaluation.close()
        if collector is not None:
            collector.shutdown()  # closes its env too (a second close of a ParallelEnv raises)
        for each in env if isinstance(env, list) else [env]:
            if each is not None and not each.is_closed:
                each.close()
    policy_dir = ctx.run_dir / POLICY_DIR
    sharded = cfg.dist.strategy == "fsdp2"
    tensors = full_trainables(trainables) if sharded else None  # collective under FSDP2
    if info.is_main:
        save_policy(bundle, policy_dir, cfg.model, cfg.algo, trainable=tensors)
        _log.info("policy saved to %s", policy_dir)
    barrier(info)
    ctx.close()
    return policy_dir


def _make_env(cfg: TrainConfig, device: torch.device, info: DistInfo):
    # collector.episodes=fixed (default for GRPO / GRPO(s) / TPO): success does not end an
    # episode, every episode lasts env.max_episode_steps (the reference run's 80 steps)
    # algo=grpo-s: each run of algo.group_size envs starts from the same state (its group)
    groups = cfg.algo.group_size if cfg.algo.name == "grpo-s" else 1
    try:
        envs = make_recipe_env_groups(
            cfg.env,
            groups=cfg.collector.env_groups,
            seed=rank_seed(cfg.seed, info),
            device="cpu",
            terminate_on_success=episode_mode(cfg) != "fixed",
            same_start_groups=groups,
        )
    except ConfigError as err:  # e.g. same-start groups on the GPU simulation
        if groups == 1:
            raise
        raise ConfigError(
            f"algo=grpo-s (algo.group_size={groups}) plays each group from one start: {err}"
        ) from err
    # a simulator error resets the failing env and voids its episode instead of ending the run
    envs = [guard_sim_errors(env) for env in envs]
    return envs if cfg.collector.env_groups > 1 else envs[0]


def _make_collector(cfg: TrainConfig, env, bundle: PolicyBundle) -> Collector | OverlappedCollector:
    if isinstance(env, list):  # collector.env_groups > 1
        return OverlappedCollector(env, bundle.actor, steps_per_env=cfg.collector.steps_per_env)
    return Collector(
        env,
        bundle.actor,
        frames_per_batch=cfg.collector.frames_per_batch(cfg.env),
        total_frames=-1,
        reset_at_each_iter=True,  # every rollout = fresh episodes (paper: 80-step episodes)
        split_trajs=False,
        storing_device="cpu",
        auto_register_policy_transforms=False,
    )


def _train_rl(
    cfg,
    ctx: RunContext,
    envs: list,
    collector,
    loss_fn,
    advantage,
    optimizer,
    trainables,
    info,
    evaluation: PeriodicEvaluation | None = None,
    compute_threads: int | None = None,
):
    """PPO / GRPO iterations until ``collector.total_env_steps``.

    The rollout runs on the thread count the collector's env leaves (TorchRL's ``ParallelEnv``:
    1 on 2 cores, the cores go to its workers); each update runs on ``compute_threads``
    (the count the process started with; None: as it is).
    """
    total = cfg.collector.total_env_steps
    step = int(ctx.counters.get("env_steps", 0))
    iteration = int(ctx.counters.get("iteration", 0))
    skips_in_a_row = int(ctx.counters.get("skips_in_a_row", 0))
    skipped_total = int(ctx.counters.get("skipped_updates", 0))
    sim_errors = int(ctx.counters.get("sim_errors", 0))
    params = list(trainables.values())
    batches = iter(collector)
    bar = progress(
        total=total, initial=step, desc=f"{cfg.algo.name}", disable=not cfg.logger.progress_bar
    )
    try:
        while step < total:
            # ---- collect: envs reseeded per iteration so resume replays the same episodes ----
            iteration_seed = rank_seed(cfg.seed * 1_000_003 + iteration, info)
            seed_env_groups(envs, iteration_seed)  # one env, or the groups of collector.env_groups
            if info.world_size > 1:
                # per-rank sampling streams that a resume on any number of ranks reproduces
                torch.manual_seed(iteration_seed)
            t0 = time.perf_counter()
            with torch.no_grad():
                rollout = next(batches)  # [B, T]
            t_collect = time.perf_counter() - t0
            # episodes cut short by a simulator error: counted, left out of the update
            sim_errors += count_sim_errors(rollout)
            # ---- advantages and update (global over ranks) -----------------------------------
            t0 = time.perf_counter()
            with torch_threads(compute_threads):
                stats = rl_update(
                    cfg,
                    rollout,
                    loss_fn,
                    advantage,
                    optimizer,
                    params,
                    info,
                    critic_only=iteration < cfg.algo.critic_warmup,
                )
            t_update = time.perf_counter() - t0
            skipped_total += stats["skipped"]
            skips_in_a_row = skips_in_a_row + stats["skipped"] if stats["steps"] == 0 else 0
            frames = rollout.numel() * info.world_size  # env steps of all ranks
            step += frames
            iteration += 1
            # ---- log ------------------------------------------------------------------------
            record = {f"train/{k}": v for k, v in episode_stats(rollout).items()}
            record.update(
                {
                    f"losses/{k}": v
                    for k, v in stats.items()
                    if k not in ("steps", "skipped", "undone")
                }
            )
            record.update(
                {
                    "train/skipped_updates": skipped_total,
                    "train/sim_errors": sim_errors,
                    "train/iteration": iteration,
                    "perf/env_steps_per_s": rollout.numel() / max(t_collect, 1e-9),
                    "perf/collect_s": t_collect,
                    "perf/update_s": t_update,
                }
            )
            record = _global_record(record, info)
            eval_now = eval_due(step, frames, every=cfg.collector.eval_every, total=total)
            if evaluation is not None and eval_now:
                record.update(evaluation())  # the same on every rank; rank 0 logs it
            ctx.logger.log(record, step=step)
            bar.update(frames)
            bar.set_postfix(success=f"{record.get('train/success', float('nan')):.2f}")
            if skips_in_a_row >= cfg.optim.max_consecutive_skips:
                raise NonFiniteUpdates(
                    f"{skips_in_a_row} updates in a row had a non-finite loss or gradient, or "
                    "made the loss non-finite (undone); the checkpoints hold no diverged step; "
                    "lower optim.lr, check the rewards, or raise optim.max_consecutive_skips"
                )
            # ---- checkpoint -----------------------------------------------------------------
            if due(step, frames, every=cfg.checkpoint_every, total=total):
                _save(
                    ctx,
                    step,
                    trainables,
                    optimizer,
                    info,
                    iteration=iteration,
                    skips_in_a_row=skips_in_a_row,
                    skipped_updates=skipped_total,
                    sim_errors=sim_errors,
                )
    finally:
        bar.close()


def _global_record(record: dict[str, float], info: DistInfo) -> dict[str, float]:
    """The record of all ranks (on rank 0; other ranks log nothing, so theirs is irrelevant)."""
    if not info.enabled:
        return record
    records = gather_record(record, info)
    if records is None:
        return record
    episode_keys = {"train/episode_return", *(f"train/{k}" for k in METRIC_KEYS)}
    return combine_records(records, episode_keys=episode_keys, count_key="train/episodes")


def _save(ctx, step, trainables, optimizer, info, **counters: int) -> None:
    """Checkpoint at env step ``step`` with the loop's ``counters`` (iteration, skips, ...)."""
    # whole tensors (gathered from FSDP2 shards; replicated otherwise): rank 0 writes them, so
    # a checkpoint loads on any number of ranks
    tensors, optimizer_state = full_trainables(trainables), full_optimizer_state(optimizer)
    if info.is_main:
        ctx.save(
            step,
            tensors=tensors,
            optimizer_states={"optimizer": optimizer_state},
            counters={"env_steps": step, **counters},
        )
    barrier(info)
