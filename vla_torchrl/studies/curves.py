"""Training curves like the paper's Fig. 5/6: metrics vs environment steps (or wall clock).

Reads the ``metrics.jsonl`` of one or several runs (:class:`~vla_torchrl.training.metrics.
MetricLogger`), groups runs that differ only by seed, and plots the mean +- std over seeds on a
common x grid (each run linearly interpolated, over the x range all runs of the group cover).
A plain RUN_DIR joins the group named after it with a trailing ``seed<N>`` removed;
``LABEL=DIR,DIR`` names a group explicitly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from vla_torchrl.errors import UserError
from vla_torchrl.training.metrics import METRICS_FILE, read_metrics

__all__ = [
    "DEFAULT_METRICS",
    "XAxis",
    "aggregate",
    "group_runs",
    "load_curve",
    "plot_curves",
    "trailing_mean",
]

DEFAULT_METRICS: tuple[str, ...] = ("eval/success", "train/episode_return")


XAxis = Literal["env_steps", "wall_clock"]


_X_FIELD = {"env_steps": "step", "wall_clock": "elapsed_s"}


_X_LABEL = {"env_steps": "environment steps", "wall_clock": "wall-clock time (h)"}


_SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$")


_log = logging.getLogger("vla_torchrl.recipes")


def group_runs(specs: Sequence[str]) -> dict[str, list[Path]]:
    """Group run-dir arguments: ``LABEL=DIR,DIR`` or plain dirs grouped by seed-less name.

    Examples:
        >>> group_runs(["runs/ppo-seed0", "runs/ppo-seed1", "B=runs/x,runs/y"])
        {'ppo': [PosixPath('runs/ppo-seed0'), PosixPath('runs/ppo-seed1')], 'B': [PosixPath('runs/x'), PosixPath('runs/y')]}
    """
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        if "=" in spec:
            label, dirs = spec.split("=", 1)
            paths = [Path(d) for d in dirs.split(",") if d]
        else:
            path = Path(spec)
            label = _SEED_SUFFIX.sub("", path.resolve().name if spec in (".", "") else path.name)
            paths = [path]
        groups.setdefault(label or spec, []).extend(paths)
    return groups


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` logged before it (fewer at the start).

    Trailing, so a point never averages in what was logged after it: a smoothed curve shows
    what the run knew at that step. Per-iteration training metrics of a few episodes each
    (e.g. 16 PPO episodes per 640 env steps) are too noisy to read without it.

    Examples:
        >>> trailing_mean(np.array([0.0, 1.0, 2.0, 3.0]), 2).tolist()
        [0.0, 0.5, 1.5, 2.5]
    """
    if window < 1:
        raise UserError(f"smooth={window} must be >= 1 (the number of logged points averaged)")
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=float)]))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def load_curve(
    run_dir: str | Path, metric: str, *, x: XAxis = "env_steps", smooth: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)`` of ``metric`` in a run's log, sorted by x; empty arrays when never logged.

    ``smooth > 1`` replaces each y by the :func:`trailing_mean` of the last ``smooth`` logged
    values.
    """
    path = Path(run_dir)
    if not (path / METRICS_FILE).exists() and not path.is_file():
        raise UserError(f"{path / METRICS_FILE} does not exist; is {path} a run directory?")
    field = _X_FIELD[x]
    pairs = [
        (float(r[field]), float(r[metric]))
        for r in read_metrics(path)
        if r.get(metric) is not None and r.get(field) is not None
    ]
    pairs.sort()
    if not pairs:
        return np.zeros(0), np.zeros(0)
    xs, ys = map(np.asarray, zip(*pairs))
    if smooth > 1:
        ys = trailing_mean(ys, smooth)
    if x == "wall_clock":
        xs = xs / 3600.0
    return xs, ys


def aggregate(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], *, points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std (over runs) on a common grid spanning the x range every run covers.

    Examples:
        >>> a = (np.array([0.0, 10.0]), np.array([0.0, 1.0]))
        >>> b = (np.array([0.0, 10.0]), np.array([1.0, 2.0]))
        >>> grid, mean, std = aggregate([a, b], points=3)
        >>> grid.tolist(), mean.tolist(), std.tolist()
        ([0.0, 5.0, 10.0], [0.5, 1.0, 1.5], [0.5, 0.5, 0.5])
    """
    curves = [c for c in curves if len(c[0])]
    if not curves:
        raise UserError("no data points to aggregate")
    lo = max(float(xs[0]) for xs, _ in curves)
    hi = min(float(xs[-1]) for xs, _ in curves)
    if hi < lo:
        raise UserError(f"the runs' x ranges do not overlap (from {lo} to {hi}); compare like runs")
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    values = np.stack([np.interp(grid, xs, ys) for xs, ys in curves])
    return grid, values.mean(axis=0), values.std(axis=0)


def plot_curves(
    groups: Mapping[str, Sequence[str | Path]],
    *,
    out: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    x: XAxis = "env_steps",
    hlines: Mapping[str, float] | None = None,
    smooth: int = 1,
) -> Path:
    """Plot one panel per metric, one mean +- std band per group; write a PNG.

    Args:
        groups: ``{label: [run dirs]}`` (see :func:`group_runs`).
        out: the PNG to write.
        metrics: one panel each; metrics no run logged are skipped.
        x: ``env_steps`` or ``wall_clock`` (hours).
        hlines: reference levels drawn in every panel, e.g. ``{"SFT-16k": 0.78}`` (Fig. 6c/d).
        smooth: each run's values averaged over its last ``smooth`` logged points
            (:func:`trailing_mean`) before the runs are aggregated; the panel's y label says so.

    Raises:
        UserError: when a run dir has no log, or none of ``metrics`` was logged by any run.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels: list[tuple[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]]] = []
    for metric in metrics:
        per_group = {}
        for label, dirs in groups.items():
            curves = [
                c for c in (load_curve(d, metric, x=x, smooth=smooth) for d in dirs) if len(c[0])
            ]
            if curves:
                per_group[label] = (*aggregate(curves), len(curves))
        if per_group:
            panels.append((metric, per_group))
        else:
            _log.warning("no run logged %s; skipping its panel", metric)
    if not panels:
        available = sorted(
            {k for dirs in groups.values() for d in dirs for r in read_metrics(d) for k in r}
            - {"step", "elapsed_s", "time_unix"}
        )
        raise UserError(
            f"none of the metrics {', '.join(metrics)} was logged by these runs; "
            f"logged metrics: {', '.join(available) or 'none'} (choose with metrics=[...])"
        )
    fig = Figure(figsize=(5.0 * len(panels), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    for i, (metric, per_group) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for label, (grid, mean, std, n) in per_group.items():
            (line,) = ax.plot(
                grid, mean, marker="o" if len(grid) == 1 else None, label=f"{label} (n={n})"
            )
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        for name, level in (hlines or {}).items():
            ax.axhline(level, linestyle="--", linewidth=1, color="gray")
            ax.annotate(name, (0.01, level), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set_xlabel(_X_LABEL[x])
        ax.set_ylabel(f"{metric} (trailing mean of {smooth})" if smooth > 1 else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
