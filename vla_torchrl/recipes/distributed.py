"""The training recipe's side of data-parallel runs: start/resume on every rank, global metrics.

``vla-torchrl-train`` launched by ``torchrun`` runs one process per rank (see
:mod:`vla_torchrl.utils.distributed` for the collectives and why the update equals one process
on the concatenated batch). This module holds what the recipe adds on top:

- :func:`start_run_on_ranks`: rank 0 alone owns the run directory (config, metric log,
  checkpoints); it starts or resumes the run and tells the other ranks which checkpoint to load
  (or why it failed, so they stop with the same error instead of waiting forever). The others
  load that checkpoint read-only and log nothing.
- :func:`combine_records`: one metric record for the whole run from each rank's record
  (episode metrics weighted by episode counts, throughputs summed, times maxed, losses averaged).

A single process (no ``torchrun``) goes through the usual :func:`~vla_torchrl.recipes.run.start_run`
unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from vla_torchrl.recipes.checkpoint import CheckpointManager
from vla_torchrl.recipes.config import TrainConfig
from vla_torchrl.recipes.errors import UserError
from vla_torchrl.recipes.run import RunContext, start_run
from vla_torchrl.utils.distributed import DistInfo, barrier
from vla_torchrl.utils.seeding import seed_everything

__all__ = ["combine_records", "gather_record", "start_run_on_ranks"]

_log = logging.getLogger("vla_torchrl.recipes.distributed")


class _SilentLogger:
    """The metric logger of ranks other than 0: accepts everything, writes nothing."""

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def start_run_on_ranks(
    cfg: TrainConfig, info: DistInfo, *, tasks: Collection[str] | None = None
) -> RunContext:
    """Start or resume the run on every rank (collective when ``info.enabled``).

    Rank 0 calls :func:`~vla_torchrl.recipes.run.start_run` (validation, run directory, metric
    log, newest complete checkpoint) and broadcasts the checkpoint it chose; every other rank
    seeds like rank 0 (so models initialise identically) and loads the same checkpoint from
    ``run_dir``, which must therefore be on a filesystem every node sees. The other ranks'
    contexts log nothing; only rank 0 may call :meth:`RunContext.save`.

    Args:
        cfg: the training config (the same on every rank).
        info: from :func:`~vla_torchrl.utils.distributed.init_distributed`.
        tasks: known task names for validation.

    Returns:
        this rank's :class:`~vla_torchrl.recipes.run.RunContext`.

    Raises:
        UserError: rank 0 could not start the run (the same message on every rank).
    """
    if not info.enabled:
        return start_run(cfg, tasks=tasks)
    ctx: RunContext | None = None
    message: list[Any] = [None, None]  # [error text, checkpoint path]
    if info.is_main:
        try:
            ctx = start_run(cfg, tasks=tasks)
            message[1] = None if ctx.resumed is None else str(ctx.resumed.path)
        except Exception as err:  # tell the others before raising, so they do not hang
            message[0] = str(err) or type(err).__name__
            error = err
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        if info.is_main:
            raise error
        raise UserError(f"rank 0 could not start the run: {message[0]}")
    if info.is_main:
        assert ctx is not None
        barrier(info)
        return ctx
    seed_everything(cfg.seed)  # the same model initialisation as rank 0
    manager = CheckpointManager(Path(cfg.run_dir), keep_last=cfg.keep_last)
    resumed = None if message[1] is None else manager.load(message[1])
    counters = dict(resumed.counters) if resumed is not None else {}
    ctx = RunContext(cfg, Path(cfg.run_dir), manager, _SilentLogger(), resumed, counters)  # type: ignore[arg-type]
    barrier(info)  # rank 0 writes nothing before every rank has loaded its checkpoint
    return ctx


def gather_record(record: Mapping[str, float], info: DistInfo) -> list[dict[str, float]] | None:
    """Every rank's record on rank 0 (collective); None on the other ranks.

    Single process: ``[record]``.
    """
    if not info.enabled:
        return [dict(record)]
    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(dict(record), out, dst=0)
    return out


def combine_records(
    records: Sequence[Mapping[str, float]],
    *,
    episode_keys: Collection[str],
    count_key: str,
) -> dict[str, float]:
    """Merge the ranks' metric records into one record of the whole (global) batch.

    - ``count_key`` (episodes that ended) and keys ending in ``_per_s`` (throughputs): summed;
    - ``episode_keys`` (per-episode means such as return and success): averaged with the
      ranks' episode counts as weights (ranks without an ended episode lack them);
    - keys ending in ``_s`` (durations): the maximum (the slowest rank sets the pace);
    - everything else (losses, counters equal on every rank): the mean over the ranks that have it.

    Args:
        records: one record per rank.
        episode_keys: keys averaged per episode.
        count_key: the key holding each rank's episode count.

    Returns:
        the merged record.

    Examples:
        >>> combine_records(
        ...     [{"n": 1, "ret": 1.0, "loss": 0.5, "perf/steps_per_s": 10.0, "perf/update_s": 2.0},
        ...      {"n": 3, "ret": 0.0, "loss": 1.5, "perf/steps_per_s": 30.0, "perf/update_s": 3.0}],
        ...     episode_keys={"ret"}, count_key="n")
        {'n': 4, 'ret': 0.25, 'loss': 1.0, 'perf/steps_per_s': 40.0, 'perf/update_s': 3.0}
    """
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    out: dict[str, float] = {}
    for key in keys:
        present = [r for r in records if key in r]
        values = [r[key] for r in present]
        if key == count_key or key.endswith("_per_s"):
            out[key] = sum(values)
        elif key in episode_keys:
            weights = [r.get(count_key, 0) for r in present]
            total = sum(weights)
            if total > 0:
                out[key] = sum(w * v for w, v in zip(weights, values, strict=True)) / total
        elif key.endswith("_s"):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out
