"""Statistics and tables of evaluation results: per-task metrics over seeds, relative drops, Tables 1-3.

For each (policy, task) and metric, the per-seed value is the mean over that seed's episodes and
the reported value is the mean and standard deviation over seeds (``ddof=0`` by default; the
paper's Tables 1-3 are consistent with the population std over its 3 seeds). The relative drop
of Sec. 5.3 is ``(OOD - IND) / IND``. Tables are Markdown in the paper's layout (rows = tasks with
IND first, column groups Acc. / Cont. Acc. / Suc. with one sub-column per policy) and CSV.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_torchrl.evaluation.results import METRIC_LABELS, METRICS, EpisodeResult

__all__ = [
    "AXES",
    "AXIS_LABELS",
    "PAPER_TASK_AXES",
    "TASK_LABELS",
    "Stat",
    "format_cell",
    "read_summary_csv",
    "relative_drop",
    "relative_drops",
    "summarize",
    "table_markdown",
    "write_summary_csv",
]

AXES: tuple[str, ...] = ("vision", "semantics", "execution")


AXIS_LABELS = {
    "ind": "IND",
    "vision": "Vision",
    "semantics": "Semantics",
    "execution": "Execution",
    "other": "Other",
}


# The paper's OOD suite (Sec. 5.1, Tables 1-3): task name -> axis. Pass your own mapping when
# the env layer's SUITE differs; this is only the default.
PAPER_TASK_AXES: dict[str, str] = {
    "ind": "ind",
    "table": "vision",
    "texture-w": "vision",
    "texture-s": "vision",
    "noise-w": "vision",
    "noise-s": "vision",
    "obj": "semantics",
    "recep": "semantics",
    "instruct": "semantics",
    "m-obj-ind": "semantics",
    "m-obj-ood": "semantics",
    "disturb-recep": "semantics",
    "m-recep": "semantics",
    "obj-pos": "execution",
    "robot-pose": "execution",
    "obj-rep": "execution",
}


TASK_LABELS = {
    "ind": "IND",
    "table": "Table",
    "texture-w": "Texture-w",
    "texture-s": "Texture-s",
    "noise-w": "Noise-w",
    "noise-s": "Noise-s",
    "obj": "Obj.",
    "recep": "Recep.",
    "instruct": "Instruct",
    "m-obj-ind": "M-Obj. (IND)",
    "m-obj-ood": "M-Obj. (OOD)",
    "disturb-recep": "Disturb Recep.",
    "m-recep": "M-Recep.",
    "obj-pos": "Obj. Pos.",
    "robot-pose": "Robot Pose",
    "obj-rep": "Obj. Rep.",
}


@dataclass(frozen=True)
class Stat:
    """Mean and standard deviation over seeds of the per-seed episode means."""

    mean: float
    std: float
    n_seeds: int


def _mean_std(values: Sequence[float], ddof: int) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n - ddof <= 0:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - ddof)
    return mean, math.sqrt(var)


def summarize(
    results: Iterable[EpisodeResult], *, ddof: int = 0
) -> dict[tuple[str, str], dict[str, Stat]]:
    """Per (policy, task) and metric: mean/std over seeds of the per-seed episode mean.

    Args:
        results: episode results.
        ddof: delta degrees of freedom of the std over seeds (0: population std).

    Returns:
        ``{(policy, task): {metric: Stat}}``, in order of first appearance.

    Examples:
        >>> rows = [EpisodeResult("RL", "ind", s, e, True, e == 0, e == 0 and s == 0)
        ...         for s in (0, 1) for e in (0, 1)]
        >>> summarize(rows)[("RL", "ind")]["success"]
        Stat(mean=0.25, std=0.25, n_seeds=2)
    """
    groups: dict[tuple[str, str], dict[int, list[EpisodeResult]]] = {}
    for r in results:
        groups.setdefault((r.policy, r.task), {}).setdefault(r.seed, []).append(r)
    out: dict[tuple[str, str], dict[str, Stat]] = {}
    for key, by_seed in groups.items():
        stats = {}
        for metric in METRICS:
            per_seed = [
                sum(getattr(e, metric) for e in eps) / len(eps)
                for _, eps in sorted(by_seed.items())
            ]
            mean, std = _mean_std(per_seed, ddof)
            stats[metric] = Stat(mean, std, len(per_seed))
        out[key] = stats
    return out


def relative_drop(ood: float, ind: float) -> float:
    """Relative performance drop ``(OOD - IND) / IND`` (Sec. 5.3); NaN when IND is 0.

    Examples:
        >>> relative_drop(0.4, 0.8)
        -0.5
    """
    if ind == 0:
        return math.nan
    return (ood - ind) / ind


def relative_drops(
    summary: Mapping[tuple[str, str], Mapping[str, Stat]],
    *,
    metric: str = "success",
    ind_task: str = "ind",
) -> dict[tuple[str, str], float]:
    """``{(policy, task): (OOD - IND) / IND}`` for every non-IND task of policies with IND."""
    drops = {}
    for (policy, task), stats in summary.items():
        if task == ind_task or (policy, ind_task) not in summary:
            continue
        drops[(policy, task)] = relative_drop(
            stats[metric].mean, summary[(policy, ind_task)][metric].mean
        )
    return drops


def format_cell(stat: Stat | None, *, digits: int = 3) -> str:
    """``"0.922 (.013)"``: the mean, then the std without its leading zero.

    Examples:
        >>> format_cell(Stat(0.921875, 0.0127, 3))
        '0.922 (.013)'
        >>> format_cell(Stat(0.875, 0.0, 3))
        '0.875 (.000)'
    """
    if stat is None or math.isnan(stat.mean):
        return "n/a"
    std = f"{stat.std:.{digits}f}"
    if std.startswith("0."):
        std = std[1:]
    return f"{stat.mean:.{digits}f} ({std})"


def _label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def _policies(summary: Mapping[tuple[str, str], Any]) -> list[str]:
    return list(dict.fromkeys(p for p, _ in summary))


def _axis_tasks(
    summary: Mapping[tuple[str, str], Any], task_axes: Mapping[str, str], axis: str, ind_task: str
) -> list[str]:
    present = dict.fromkeys(t for _, t in summary)
    ordered = [t for t in task_axes if task_axes[t] == axis and t in present]
    return ([ind_task] if ind_task in present else []) + ordered


def table_markdown(
    summary: Mapping[tuple[str, str], Mapping[str, Stat]],
    *,
    tasks: Sequence[str],
    policies: Sequence[str] | None = None,
    digits: int = 3,
) -> str:
    """A Markdown table in the layout of the paper's Tables 1-3.

    Rows are ``tasks``; columns are grouped by metric (Acc., Cont. Acc., Suc.) with one
    sub-column per policy; the best mean of each group (at the shown precision) is bold.

    Examples:
        >>> s = {("SFT", "ind"): {m: Stat(0.5, 0.1, 3) for m in METRICS},
        ...      ("RL", "ind"): {m: Stat(0.75, 0.0, 3) for m in METRICS}}
        >>> print(table_markdown(s, tasks=["ind"]).splitlines()[2])
        | IND | 0.500 (.100) | **0.750 (.000)** | 0.500 (.100) | **0.750 (.000)** | 0.500 (.100) | **0.750 (.000)** |
    """
    policies = list(policies or _policies(summary))
    header = ["Task"] + [f"{METRIC_LABELS[m]} {p}" for m in METRICS for p in policies]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        cells = [_label(task)]
        for metric in METRICS:
            stats = [summary.get((p, task), {}).get(metric) for p in policies]
            rounded = [round(s.mean, digits) for s in stats if s is not None]
            best = max(rounded) if len(rounded) > 1 else None
            for stat in stats:
                text = format_cell(stat, digits=digits)
                if stat is not None and best is not None and round(stat.mean, digits) == best:
                    text = f"**{text}**"
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_SUMMARY_FIELDS = ("policy", "task", "axis", "metric", "mean", "std", "n_seeds")


def write_summary_csv(
    summary: Mapping[tuple[str, str], Mapping[str, Stat]],
    path: str | os.PathLike,
    *,
    task_axes: Mapping[str, str] = PAPER_TASK_AXES,
) -> Path:
    """Write the summary in long format (one row per policy, task, metric)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_SUMMARY_FIELDS)
        for (policy, task), stats in summary.items():
            for metric in METRICS:
                s = stats[metric]
                writer.writerow(
                    [
                        policy,
                        task,
                        task_axes.get(task, ""),
                        metric,
                        repr(s.mean),
                        repr(s.std),
                        s.n_seeds,
                    ]
                )
    return path


def read_summary_csv(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, Stat]]:
    """Read back :func:`write_summary_csv` output."""
    out: dict[tuple[str, str], dict[str, Stat]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.setdefault((row["policy"], row["task"]), {})[row["metric"]] = Stat(
                float(row["mean"]), float(row["std"]), int(row["n_seeds"])
            )
    return out


def _write_table_csv(summary, path: Path, *, tasks: Sequence[str], policies: Sequence[str]):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["task"]
            + [
                f"{METRIC_LABELS[m]} {p} {k}"
                for m in METRICS
                for p in policies
                for k in ("mean", "std")
            ]
        )
        for task in tasks:
            row: list[Any] = [_label(task)]
            for metric in METRICS:
                for p in policies:
                    s = summary.get((p, task), {}).get(metric)
                    row += ["", ""] if s is None else [f"{s.mean:.6f}", f"{s.std:.6f}"]
            writer.writerow(row)
