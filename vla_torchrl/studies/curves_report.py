"""A study's runs -> its figure (PNG, like the paper's) and its summary table (Markdown + JSON).

Per run, the *final* value of a metric is the mean of its last ``tail`` logged values (the last
rollouts; one rollout of a few envs is noisy); per variant, the table reports the mean and the
population standard deviation (``ddof=0``, as the curves' bands) of the runs' final values over
seeds, with the environment steps and wall-clock time of the runs, their mean seconds per update
and their peak memory (from the runner's ``study_run.json``).

Examples:
    >>> stat = mean_std([0.2, 0.4])
    >>> round(stat.mean, 3), round(stat.std, 3), stat.n
    (0.3, 0.1, 2)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vla_torchrl.errors import UserError
from vla_torchrl.studies.curves import aggregate, load_curve
from vla_torchrl.training.metrics import read_metrics
from vla_torchrl.utils.stats import SeedStat, mean_std

__all__ = [
    "RUN_INFO_FILE",
    "SeedStat",
    "curves_figure",
    "final_value",
    "mean_std",
    "summarize_runs",
    "summary_markdown",
    "write_curves_report",
]

RUN_INFO_FILE = "study_run.json"
_X_LABEL = {"env_steps": "environment steps", "wall_clock": "wall-clock time (h)"}


def final_value(records: Sequence[Mapping[str, Any]], metric: str, *, tail: int = 3) -> float:
    """Mean of the last ``tail`` logged values of ``metric`` (NaN when never logged).

    Examples:
        >>> recs = [{"step": s, "train/success": v} for s, v in ((1, 0.0), (2, 0.5), (3, 1.0))]
        >>> final_value(recs, "train/success", tail=2)
        0.75
    """
    values = [r[metric] for r in records if r.get(metric) is not None]
    if not values:
        return float("nan")
    last = values[-tail:]
    return float(sum(last) / len(last))


def _run_info(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def summarize_runs(
    groups: Mapping[str, Sequence[str | Path]],
    *,
    metrics: Sequence[str],
    tail: int = 3,
) -> dict[str, dict[str, Any]]:
    """Per variant: final metrics, env steps, wall-clock, update time and memory over seeds.

    Args:
        groups: ``{label: [run dirs, one per seed]}``.
        metrics: the metrics to summarise (final value: see :func:`final_value`).
        tail: records averaged for a run's final value.

    Returns:
        ``{label: {"seeds": n, metric: SeedStat, "env_steps": SeedStat, "wall_clock_s":
        SeedStat, "update_s": SeedStat, "peak_memory_mb": SeedStat}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for label, dirs in groups.items():
        per_metric: dict[str, list[float]] = {m: [] for m in metrics}
        steps, wall, update, memory = [], [], [], []
        for run_dir in dirs:
            records = read_metrics(run_dir)
            if not records:
                continue
            for metric in metrics:
                per_metric[metric].append(final_value(records, metric, tail=tail))
            steps.append(float(records[-1]["step"]))
            wall.append(float(records[-1].get("elapsed_s", float("nan"))))
            updates = [r["perf/update_s"] for r in records if r.get("perf/update_s") is not None]
            update.append(sum(updates) / len(updates) if updates else float("nan"))
            info = _run_info(Path(run_dir))
            memory.append(info.get("cuda_peak_mb") or info.get("rss_peak_mb") or float("nan"))
        row: dict[str, Any] = {"seeds": len(steps)}
        row.update({m: mean_std(v) for m, v in per_metric.items()})
        row.update(
            {
                "env_steps": mean_std(steps),
                "wall_clock_s": mean_std(wall),
                "update_s": mean_std(update),
                "peak_memory_mb": mean_std(memory),
            }
        )
        out[label] = row
    return out


def summary_markdown(
    summary: Mapping[str, Mapping[str, Any]], *, metrics: Sequence[str], resources: bool = True
) -> str:
    """The summary as a Markdown table (one row per variant).

    Examples:
        >>> s = {"PPO": {"seeds": 2, "train/success": SeedStat(0.5, 0.1, 2),
        ...      "env_steps": SeedStat(1024, 0, 2), "wall_clock_s": SeedStat(60, 2, 2),
        ...      "update_s": SeedStat(1.5, 0.5, 2), "peak_memory_mb": SeedStat(900, 10, 2)}}
        >>> print(summary_markdown(s, metrics=["train/success"]).splitlines()[2])
        | PPO | 2 | 0.500 +- 0.100 | 1024 | 60.0 +- 2.0 | 1.50 +- 0.50 | 900 +- 10 |
    """
    header = ["variant", "seeds", *(f"final {m}" for m in metrics), "env steps", "wall-clock (s)"]
    if resources:
        header += ["s / update", "peak memory (MB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in summary.items():
        cells = [label, str(row["seeds"]), *(row[m].format() for m in metrics)]
        steps = row["env_steps"]
        cells.append(f"{steps.mean:.0f}" if steps.n else "-")
        cells.append(row["wall_clock_s"].format(1))
        if resources:
            cells += [row["update_s"].format(2), row["peak_memory_mb"].format(0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves_figure(
    groups: Mapping[str, Sequence[str | Path]],
    *,
    metrics: Sequence[str],
    x_axes: Sequence[str] = ("env_steps",),
    title: str = "",
):
    """One panel per (x axis, metric): mean +- std over seeds of every variant.

    Returns:
        A matplotlib ``Figure`` (not shown); each panel's lines are labelled with the variants.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(metrics), 3.6 * len(x_axes)), dpi=100)
    FigureCanvasAgg(fig)
    for row, x in enumerate(x_axes):
        for col, metric in enumerate(metrics):
            ax = fig.add_subplot(len(x_axes), len(metrics), row * len(metrics) + col + 1)
            per_label = {
                label: [c for c in (load_curve(d, metric, x=x) for d in dirs) if len(c[0])]
                for label, dirs in groups.items()
            }
            # wall clock: hours as the paper, minutes for short (CPU) runs
            hours = max((float(c[0][-1]) for cs in per_label.values() for c in cs), default=0.0)
            scale, xlabel = (
                (60.0, "wall-clock time (min)")
                if x == "wall_clock" and hours < 2
                else (1.0, _X_LABEL[x])
            )
            for label, curves in per_label.items():
                if not curves:
                    continue
                grid, mean, std = aggregate([(xs * scale, ys) for xs, ys in curves])
                (line,) = ax.plot(grid, mean, marker="o" if len(grid) < 4 else None, label=label)
                ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_curves_report(
    groups: Mapping[str, Sequence[str | Path]],
    out: str | Path,
    *,
    name: str,
    title: str,
    metrics: Sequence[str],
    x_axes: Sequence[str] = ("env_steps",),
    notes: str = "",
    command: str = "",
    seeds: Sequence[int] = (),
    tail: int = 3,
) -> dict[str, Path]:
    """Write ``<name>.png``, ``summary.md`` and ``summary.json`` into ``out``; return their paths.

    Raises:
        UserError: when no run of any variant has logged anything yet.
    """
    if not any(read_metrics(d) for dirs in groups.values() for d in dirs):
        raise UserError(
            f"no run of study {name!r} has logged metrics yet; run it first "
            f"(vla-torchrl-study {name} out={out})"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = curves_figure(groups, metrics=metrics, x_axes=x_axes, title=title)
    png = out / f"{name}.png"
    fig.savefig(png)
    summary = summarize_runs(groups, metrics=metrics, tail=tail)
    table = summary_markdown(summary, metrics=metrics)
    text = [f"# {title}", ""]
    if command:
        text += ["Command:", "", "```bash", command, "```", ""]
    if seeds:
        text += [f"Seeds: {', '.join(map(str, seeds))}.", ""]
    text += [
        f"![{name}]({png.name})",
        "",
        table,
        "",
        f"Final value = mean of the last {tail} logged values of a run; mean +- std "
        "(population) over seeds. Wall-clock: training time of a run (resumes included).",
    ]
    if notes:
        text += ["", notes]
    md = out / "summary.md"
    md.write_text("\n".join(text) + "\n")
    js = out / "summary.json"
    js.write_text(
        json.dumps(
            _finite_or_none(
                {
                    "study": name,
                    "metrics": list(metrics),
                    "seeds": list(seeds),
                    "command": command,
                    "variants": {
                        label: {
                            k: asdict(v) if isinstance(v, SeedStat) else v for k, v in row.items()
                        }
                        for label, row in summary.items()
                    },
                    "runs": {
                        label: [_relative(d, out) for d in dirs] for label, dirs in groups.items()
                    },
                }
            ),
            indent=1,
        )
    )
    return {"figure": png, "markdown": md, "json": js}


def _relative(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (portable summaries), else as given."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _finite_or_none(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by None (strict JSON).

    Examples:
        >>> _finite_or_none({"a": [1.0, float("nan")]})
        {'a': [1.0, None]}
    """
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
