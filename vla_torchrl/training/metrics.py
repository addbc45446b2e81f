"""Metric logging with fixed namespaces: JSONL (always), TensorBoard and wandb (optional).

Every record goes to ``<run_dir>/metrics.jsonl`` as one JSON object per line::

    {"step": 5120, "elapsed_s": 812.4, "time_unix": ..., "train/success": 0.41, ...}

``step`` is the environment-step counter (the x-axis of the paper's Fig. 5/6); ``elapsed_s`` is
wall-clock training time, carried over across resumes. Metric names must live in one of the
fixed namespaces ``train/``, ``eval/``, ``losses/``, ``perf/``.

Exact resume: ``MetricLogger(run_dir, resume_step=ckpt.step)`` drops every record with
``step > resume_step`` (and a half-written last line), so after resuming from a checkpoint the log
holds each step once, with nothing lost up to the checkpoint and nothing duplicated after it.
TensorBoard gets ``purge_step`` for the same effect.

Standard names (``STANDARD_METRICS``; ``plot_curves`` plots the first two by default):
``eval/success``, ``train/episode_return``, ``train/success``, ``eval/grasped``,
``eval/continuous_grasp``, ``eval/episode_return``, ``perf/env_steps_per_s``. wandb runs offline by default (files in
``run_dir/wandb``, no network); only ``wandb="online"`` lets it connect.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from vla_torchrl.errors import UserError

__all__ = ["NAMESPACES", "STANDARD_METRICS", "MetricLogger", "read_metrics"]

NAMESPACES: tuple[str, ...] = ("train/", "eval/", "losses/", "perf/")
STANDARD_METRICS: tuple[str, ...] = (
    "eval/success",
    "train/episode_return",
    "train/success",
    "eval/grasped",
    "eval/continuous_grasp",
    "eval/episode_return",
    "perf/env_steps_per_s",
)
METRICS_FILE = "metrics.jsonl"
WandbMode = Literal["off", "offline", "online"]
_log = logging.getLogger("vla_torchrl.recipes")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (or a run dir holding one); a broken last line is skipped.

    Examples:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> with MetricLogger(run, tensorboard=False, wandb="off") as log:
        ...     log.log({"train/return": 0.5}, step=80)
        >>> [(r["step"], r["train/return"]) for r in read_metrics(run)]
        [(80, 0.5)]
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    return records


def _to_float(name: str, value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise UserError(f"metric {name!r}={value!r} is not a number; log scalars only") from err


class MetricLogger:
    """Write scalar metrics to JSONL, TensorBoard and wandb.

    Args:
        run_dir: the run directory (created).
        resume_step: when resuming, the checkpoint's step: records with a larger step are
            dropped and logging continues after it. Convention: log everything of step S
            before saving checkpoint S. ``-1`` restarts a run that has no checkpoint (drops
            all records). None starts a new log; an existing non-empty ``metrics.jsonl`` is
            then refused, to avoid mixing runs.
        tensorboard: also write TensorBoard events to ``run_dir/tb``.
        wandb: ``"off"``, ``"offline"`` (default; never touches the network) or ``"online"``.
        project: wandb project.
        config: the run's config, stored with wandb.
        run_name: wandb run name (default: the run dir's name).

    Examples:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> log = MetricLogger(run, tensorboard=False, wandb="off")
        >>> log.log({"eval/success": 0.25}, step=5120)
        >>> log.log({"success": 0.25}, step=5120)
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: metric name 'success' has no namespace; prefix it with one of train/, eval/, losses/, perf/
        >>> log.close()
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        resume_step: int | None = None,
        tensorboard: bool = True,
        wandb: WandbMode = "offline",
        project: str = "vla-torchrl",
        config: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> None:
        if wandb not in ("off", "offline", "online"):
            raise UserError(f"wandb={wandb!r} is unknown; use off, offline or online")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        self._elapsed_offset = 0.0
        self._last_step = -1
        if resume_step is not None:
            kept = self._truncate(resume_step)
            if kept:
                self._elapsed_offset = float(kept[-1].get("elapsed_s", 0.0))
                self._last_step = int(kept[-1]["step"])
        elif self.path.exists() and self.path.stat().st_size > 0:
            raise UserError(
                f"{self.path} already holds metrics of an earlier run; resume it "
                "(pass resume_step=<checkpoint step>) or choose a new run_dir"
            )
        self._start = time.monotonic()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)
        self._wandb = None
        if wandb != "off":
            self._wandb = self._init_wandb(
                wandb, project=project, config=config, name=run_name or self.run_dir.name
            )

    # ------------------------------------------------------------------------------- internals

    def _truncate(self, resume_step: int) -> list[dict[str, Any]]:
        """Keep records with step <= resume_step (rewritten atomically); return them."""
        kept = [r for r in read_metrics(self.path) if int(r.get("step", -1)) <= resume_step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in kept:
                fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return kept

    def _init_wandb(self, mode: str, *, project: str, config, name: str):
        try:
            import wandb
        except ImportError as err:
            if mode == "online":
                raise UserError(
                    "logger.wandb=online but wandb is not installed; pip install wandb, "
                    "or set logger.wandb=off"
                ) from err
            _log.warning("wandb is not installed; logging without it (logger.wandb=off)")
            return None
        id_file = self.run_dir / "wandb_id.txt"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{name}-{int(time.time())}")[-64:]
            id_file.write_text(run_id)
        # mode="offline" keeps wandb off the network (files under run_dir/wandb, sync later)
        return wandb.init(
            project=project,
            name=name,
            id=run_id,
            resume="allow",
            dir=str(self.run_dir),
            mode=mode,
            config=dict(config or {}),
        )

    # ---------------------------------------------------------------------------------- public

    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds of training, including earlier (resumed) segments."""
        return self._elapsed_offset + time.monotonic() - self._start

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        """Record scalar ``metrics`` at environment step ``step``.

        Raises:
            UserError: a name outside the namespaces, a non-scalar, or a step that goes back.
        """
        if step < self._last_step:
            raise UserError(
                f"step={step} is before the last logged step {self._last_step}; steps must not "
                "go back (count environment steps, and resume with resume_step)"
            )
        values: dict[str, float] = {}
        for name, value in metrics.items():
            if not name.startswith(NAMESPACES) or name in NAMESPACES:
                raise UserError(
                    f"metric name {name!r} has no namespace; prefix it with one of "
                    f"{', '.join(NAMESPACES)}"
                )
            values[name] = _to_float(name, value)
        record = {
            "step": int(step),
            "elapsed_s": round(self.elapsed_s, 3),
            "time_unix": time.time(),
        }
        record.update({k: (v if math.isfinite(v) else None) for k, v in values.items()})
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        self._last_step = step
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(name, value, global_step=step)
        if self._wandb is not None:
            self._wandb.log(dict(values), step=step)

    def flush(self) -> None:
        """Push buffered records to disk (call before a checkpoint)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close every sink."""
        if self._fh.closed:
            return
        self.flush()
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
