"""Start or resume a run: validated config, seeding, checkpoint restore and the metric log.

The glue every training recipe needs before its loop and at each checkpoint, so that a run
killed at any moment continues exactly where its last checkpoint left off (same weights, same
RNG streams, the metric log cut back to that step)::

    ctx = start_run(cfg, tasks=SUITE.keys())     # validates, seeds (torchrun: start_run(cfg, info))
    ...                                            # build env, policy, optimizer (uses RNG)
    if ctx.resumed is not None:
        policy.load_state_dict(ctx.resumed.tensors, strict=False)
        optimizer.load_state_dict(ctx.resumed.optimizer_states["policy"])
    ctx.restore_rng()                              # last thing before the loop
    step = ctx.counters.get("env_steps", 0)
    while step < cfg.collector.total_env_steps:
        ...                                        # collect, update
        step += frames_per_batch
        ctx.logger.log({"train/episode_return": ret}, step=step)
        if due(step):                              # log everything of step S, then save S
            ctx.save(step, tensors=..., optimizer_states=..., counters={"env_steps": step})
    ctx.close()

The run directory holds ``config.json`` (the resolved config), ``metrics.jsonl``, ``tb/``,
``wandb/`` and ``checkpoints/``. One process writes a run directory (rank 0 in a distributed run;
the other ranks read the checkpoint it chose).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from vla_torchrl.config.train_schema import TrainConfig, validate
from vla_torchrl.errors import UserError
from vla_torchrl.training.checkpointing import (
    COUNTERS,
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    check_tensors,
    restore_rng_states,
)
from vla_torchrl.training.metrics import METRICS_FILE, MetricLogger
from vla_torchrl.utils.distributed import DistInfo, barrier
from vla_torchrl.utils.seeding import seed_everything

__all__ = ["RunContext", "check_can_start", "start_run"]

CONFIG_FILE = "config.json"
_log = logging.getLogger("vla_torchrl.recipes")


@dataclass
class RunContext:
    """What :func:`start_run` hands to a training loop."""

    cfg: TrainConfig
    run_dir: Path
    checkpoints: CheckpointManager
    logger: MetricLogger
    resumed: Checkpoint | None = None
    counters: dict[str, Any] = field(default_factory=dict)

    def save(
        self,
        step: int,
        *,
        tensors: Mapping[str, torch.Tensor],
        optimizer_states: Mapping[str, Any] | None = None,
        counters: Mapping[str, Any] | None = None,
    ) -> Path:
        """Flush the metric log, then checkpoint (with the RNG states and the config)."""
        self.logger.flush()
        config = json.dumps(dataclasses.asdict(self.cfg), indent=1).encode()
        return self.checkpoints.save(
            step,
            tensors=tensors,
            optimizer_states=optimizer_states,
            counters={"env_steps": step, **dict(counters or {})},
            extra_files={CONFIG_FILE: config},
        )

    def restore_training_state(
        self,
        tensors: Mapping[str, torch.Tensor],
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        load_tensors: Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], None]
        | None = None,
        adapt_optimizer_state: Callable[[torch.optim.Optimizer, dict], dict] | None = None,
    ) -> None:
        """Copy the resumed checkpoint into ``tensors`` (in place) and ``optimizers``.

        No-op on a fresh run. Names, shapes and optimizer states are checked first, so a
        checkpoint of another model (e.g. another ``model.lora_rank``) is refused with a
        :class:`~vla_torchrl.training.checkpointing.CheckpointError` before anything is changed.
        ``load_tensors(tensors, saved)`` and ``adapt_optimizer_state(optimizer, state)`` replace
        the plain copies (e.g. to cut whole saved tensors into this rank's FSDP2 shards).
        """
        if self.resumed is None:
            return
        where = f"checkpoint {self.resumed.path}"
        check_tensors(self.resumed.tensors, tensors, where=where)
        states = self.resumed.optimizer_states
        missing = sorted(set(optimizers) - set(states))
        if missing:
            raise CheckpointError(
                f"{where} has no state for optimizer(s) {missing}; start a new run_dir"
            )
        for name, optimizer in optimizers.items():
            backup = optimizer.state_dict()
            try:
                state = states[name]
                if adapt_optimizer_state is not None:
                    state = adapt_optimizer_state(optimizer, state)
                optimizer.load_state_dict(state)
            except Exception as err:
                optimizer.load_state_dict(backup)
                raise CheckpointError(
                    f"{where}: the state of optimizer {name!r} does not fit this model "
                    f"({type(err).__name__}: {err}); resume with the config the checkpoint was "
                    "written with, or start a new run_dir"
                ) from err
        with torch.no_grad():
            if load_tensors is not None:
                load_tensors(tensors, self.resumed.tensors)
                return
            for name, tensor in tensors.items():
                tensor.copy_(self.resumed.tensors[name].to(tensor.device, tensor.dtype))

    def restore_rng(self) -> None:
        """Put the RNGs back to the checkpoint's states (no-op on a fresh run).

        Call it after building everything that draws random numbers (models, envs), right
        before the training loop, so that the loop continues the interrupted random streams.
        """
        if self.resumed is not None and self.resumed.rng_states is not None:
            restore_rng_states(self.resumed.rng_states)

    def close(self) -> None:
        """Close the metric log."""
        self.logger.close()


def _config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def start_run(
    cfg: TrainConfig,
    info: DistInfo | None = None,
    *,
    tasks: Collection[str] | None = None,
    validated: bool = False,
    cuda_available: bool | None = None,
    tensorboard: bool | None = None,
    wandb: str | None = None,
) -> RunContext:
    """Start or resume the run: validate, seed, resume the newest complete checkpoint, open the log.

    The one start of a run, for a single process and for every rank of a ``torchrun`` launch
    (collective when ``info.enabled``): ``cfg`` is validated once (here, unless the caller did),
    every rank seeds alike (so models initialise identically), rank 0 alone owns the run
    directory (config, metric log, checkpoints) and tells the other ranks which checkpoint to
    load, or why it failed, so they stop with the same error instead of waiting forever. The
    other ranks load that checkpoint read-only from ``run_dir`` (a filesystem every node sees)
    and log nothing; only rank 0 may call :meth:`RunContext.save`.

    Args:
        cfg: the training config (the same on every rank).
        info: from :func:`~vla_torchrl.utils.distributed.init_distributed`; None: one process.
        tasks: known task names for :func:`~vla_torchrl.config.train_schema.validate`.
        validated: the caller validated ``cfg`` already (e.g. before joining a process group).
        cuda_available: override CUDA detection (tests).
        tensorboard, wandb: override ``cfg.logger`` (tests).

    Returns:
        This rank's :class:`RunContext`; ``resumed`` is the loaded checkpoint or None for a fresh
        start (call :meth:`RunContext.restore_rng` just before the loop).

    Raises:
        UserError: a bad config, or ``resume=false`` on a directory that already has a run
            (on the other ranks: "rank 0 could not start the run: ...").

    Examples:
        >>> import tempfile
        >>> from vla_torchrl.config.train_schema import LoggerConfig
        >>> cfg = TrainConfig(run_dir=tempfile.mkdtemp(), device="cpu",
        ...                   logger=LoggerConfig(tensorboard=False, wandb="off"))
        >>> ctx = start_run(cfg)
        >>> ctx.resumed is None
        True
        >>> ctx.logger.log({"train/episode_return": 0.1}, step=5120)
        >>> _ = ctx.save(5120, tensors={"w": torch.zeros(2)})
        >>> ctx.close()
        >>> again = start_run(cfg)
        >>> again.resumed.step, again.counters["env_steps"]
        (5120, 5120)
        >>> again.close()
    """
    if not validated:
        validate(cfg, tasks=tasks, cuda_available=cuda_available)
    seed_everything(cfg.seed)  # every rank alike: the same model initialisation everywhere
    run_dir = Path(cfg.run_dir)
    ranks = info is not None and info.enabled
    if ranks and not info.is_main:
        message: list[Any] = [None, None]  # [error text, checkpoint path], from rank 0
        dist.broadcast_object_list(message, src=0)
        if message[0] is not None:
            raise UserError(f"rank 0 could not start the run: {message[0]}")
        manager = CheckpointManager(run_dir, keep_last=cfg.keep_last)
        resumed = None if message[1] is None else manager.load(message[1])
        ctx = _context(cfg, manager, _SilentLogger(), resumed)
        barrier(info)  # rank 0 writes nothing before every rank has loaded its checkpoint
        return ctx
    try:
        ctx = _open_run_dir(cfg, tensorboard=tensorboard, wandb=wandb)
    except Exception as err:
        if ranks:  # tell the others before raising, so they do not hang
            dist.broadcast_object_list([str(err) or type(err).__name__, None], src=0)
        raise
    if ranks:
        resumed_path = None if ctx.resumed is None else str(ctx.resumed.path)
        dist.broadcast_object_list([None, resumed_path], src=0)
        barrier(info)
    return ctx


def check_can_start(cfg: TrainConfig) -> None:
    """Refuse ``resume=false`` on a ``run_dir`` that already holds a run, before anything is
    written (the command line calls it before Hydra's own files go into ``run_dir``).

    Raises:
        UserError: naming the directory and the ways out.
    """
    run_dir = Path(cfg.run_dir)
    log = run_dir / METRICS_FILE
    has_log = log.exists() and log.stat().st_size > 0
    if cfg.resume is False and (CheckpointManager(run_dir).checkpoints() or has_log):
        raise UserError(
            f"run_dir={str(run_dir)!r} already holds a run (checkpoints or metrics) and "
            "resume=false; set resume=true to continue it, resume=from_scratch to restart it "
            "(the old files are moved aside), or choose a new run_dir"
        )


def _open_run_dir(cfg: TrainConfig, *, tensorboard: bool | None, wandb: str | None) -> RunContext:
    """The run directory's owner (one process, or rank 0): resume or refuse, open the log."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = CheckpointManager(run_dir, keep_last=cfg.keep_last)
    has_log = (run_dir / METRICS_FILE).exists() and (run_dir / METRICS_FILE).stat().st_size > 0
    check_can_start(cfg)
    resumed = _resume(cfg, manager, run_dir) if cfg.resume is not False else None
    if cfg.resume == "from_scratch":
        has_log = False  # moved aside by _resume
    if resumed is not None:
        saved = resumed.extra_files.get(CONFIG_FILE)
        if saved is not None:
            old = {**json.loads(saved), "resume": cfg.resume}  # how to resume is no change
            diff = _config_differences(old, dataclasses.asdict(cfg))
            if diff:
                _log.warning("resuming with a changed config: %s", "; ".join(diff))
        _log.info("resuming %s from step %d", run_dir, resumed.step)
    if resumed is not None:
        resume_step: int | None = resumed.step
    else:
        resume_step = -1 if has_log else None  # a crash before the first checkpoint: restart
    log_cfg = cfg.logger
    logger = MetricLogger(
        run_dir,
        resume_step=resume_step,
        tensorboard=log_cfg.tensorboard if tensorboard is None else tensorboard,
        wandb=log_cfg.wandb if wandb is None else wandb,  # type: ignore[arg-type]
        project=log_cfg.project,
        config=dataclasses.asdict(cfg),
        run_name=run_dir.name,
    )
    (run_dir / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return _context(cfg, manager, logger, resumed)


# integer counters the loops read back (loop.py, sft_loop.py); anything else must be a number
_INT_COUNTERS = ("env_steps", "iteration", "skips_in_a_row", "skipped_updates", "sim_errors")


def _check_counters(ckpt: Checkpoint) -> None:
    """Refuse a ``counters.json`` whose values the loops cannot use (naming file and key)."""
    file = ckpt.path / COUNTERS
    for key, value in ckpt.counters.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _INT_COUNTERS:
            ok, want = (
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                ("an integer >= 0"),
            )
        else:
            ok, want = number and math.isfinite(value), "a finite number"
        if not ok:
            raise CheckpointError(
                f"checkpoint file {file}: counter {key!r} is {value!r}, expected {want}"
            )


def _load_checked(manager: CheckpointManager, path: Path) -> Checkpoint:
    ckpt = manager.load(path)
    _check_counters(ckpt)
    return ckpt


def _set_aside(run_dir: Path, paths: Collection[Path], why: str) -> Path | None:
    """Move ``paths`` (checkpoints, the metric log) into ``run_dir/discarded-<time>/``: nothing
    of an earlier run is deleted without the user asking; they delete that folder themselves."""
    if not paths:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = run_dir / f"discarded-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = run_dir / f"discarded-{stamp}-{n}"
    target.mkdir()
    for path in paths:
        os.rename(path, target / path.name)
    _log.warning(
        "%s: moved %s to %s (delete it when no longer needed)",
        why,
        ", ".join(p.name for p in paths),
        target,
    )
    return target


def _resume(cfg: TrainConfig, manager: CheckpointManager, run_dir: Path) -> Checkpoint | None:
    """The checkpoint ``cfg.resume`` asks for (None: start at step 0); see :class:`TrainConfig`."""
    found = manager.checkpoints()
    if cfg.resume == "from_scratch":
        log = [run_dir / METRICS_FILE] if (run_dir / METRICS_FILE).exists() else []
        _set_aside(run_dir, [*found, *log], "resume=from_scratch")
        return None
    if cfg.resume is not True:  # an explicit step
        step = int(cfg.resume)
        by_step = {int(p.name.split("_")[1]): p for p in found}
        if step not in by_step:
            raise CheckpointError(
                f"resume={step}: {manager.root} has no checkpoint of step {step}; steps there: "
                f"{sorted(by_step) or 'none'} (resume=true takes the newest that verifies)"
            )
        ckpt = _load_checked(manager, by_step[step])
        later = [p for s, p in by_step.items() if s > step]
        _set_aside(run_dir, later, f"resume={step}: checkpoints after step {step}")
        return ckpt
    damaged: list[tuple[Path, CheckpointError]] = []
    for path in reversed(found):
        try:
            ckpt = _load_checked(manager, path)
        except CheckpointError as err:
            damaged.append((path, err))
            continue
        for bad, err in damaged:
            _log.warning("skipping damaged checkpoint %s: %s", bad, err)
        # a damaged newer checkpoint left in place would be pruned, or replaced, unseen
        _set_aside(run_dir, [p for p, _ in damaged], "damaged checkpoint(s)")
        return ckpt
    if damaged:
        details = "; ".join(f"{p.name} ({err})" for p, err in damaged)
        raise CheckpointError(
            f"no checkpoint under {manager.root} verifies, refusing to restart silently: "
            f"{details}. To start again at step 0 run with resume=from_scratch (the damaged "
            "checkpoints and metrics.jsonl are moved to run_dir/discarded-<time>/), or choose a "
            "new run_dir"
        )
    return None


def _context(cfg: TrainConfig, manager: CheckpointManager, logger, resumed) -> RunContext:
    """The one place a :class:`RunContext` is built (every rank, fresh or resumed)."""
    counters = dict(resumed.counters) if resumed is not None else {}
    return RunContext(cfg, Path(cfg.run_dir), manager, logger, resumed, counters)


class _SilentLogger:
    """The metric logger of ranks other than 0: accepts everything, writes nothing."""

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
