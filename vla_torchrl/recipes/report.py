"""Evaluation report: per-task metrics over seeds, relative drops, paper-style tables and radars.

Input: per-episode records ``(policy, task, seed, episode_id, grasped, continuous_grasp,
success)`` from a list, a CSV or a JSONL file (:func:`load_results`), or the incremental
results file of an evaluation (:class:`IncrementalResults`). For each (policy, task) and metric,
the per-seed value is the mean over that seed's episodes and the reported value is the mean and
standard deviation over seeds (``ddof=0`` by default; the paper's Tables 1-3 are consistent with
the population std over its 3 seeds). The relative drop of Sec. 5.3 is ``(OOD - IND) / IND``.

Command line::

    python -m vla_torchrl.recipes.report runs/eval/episodes.jsonl --out runs/eval/report \
        --policies SFT,RL [--task-axes axes.json]

Outputs (:func:`write_report`): ``report.md`` with one table per axis in the layout of the
paper's Tables 1-3 (rows = tasks with IND first, column groups Acc. / Cont. Acc. / Suc. with one
sub-column per policy, "0.922 (.013)" cells, best per group in bold) and a per-axis summary like
Fig. 7a; ``summary.csv`` (long format, readable back with :func:`read_summary_csv`),
``table_<axis>.csv``, ``drops.csv``; and radar charts like Fig. 7b/7c
(``radar_success.png``, ``radar_ood_ind_ratio.png``) and grouped success bars annotated
with the relative drop like Fig. 7a (``bars_success.png``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from vla_torchrl.recipes._cli import UserError

__all__ = [
    "AXES",
    "METRICS",
    "PAPER_TASK_AXES",
    "EpisodeResult",
    "IncrementalResults",
    "bar_chart",
    "Stat",
    "format_cell",
    "load_results",
    "radar_chart",
    "read_summary_csv",
    "relative_drop",
    "relative_drops",
    "summarize",
    "table_markdown",
    "main",
    "write_report",
    "write_summary_csv",
]

Metric = Literal["grasped", "continuous_grasp", "success"]
METRICS: tuple[str, ...] = ("grasped", "continuous_grasp", "success")
METRIC_LABELS = {"grasped": "Acc.", "continuous_grasp": "Cont. Acc.", "success": "Suc."}
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
class EpisodeResult:
    """Metrics of one evaluation episode (each the value at the episode's last step)."""

    policy: str
    task: str
    seed: int
    episode_id: int
    grasped: bool
    continuous_grasp: bool
    success: bool

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> EpisodeResult:
        """Parse a dict (e.g. a CSV row, all strings) into a result, checking every field."""
        missing = [f.name for f in fields(cls) if f.name not in row]
        if missing:
            raise UserError(
                f"result record {dict(row)!r} lacks {', '.join(missing)}; each record needs "
                f"{', '.join(f.name for f in fields(cls))}"
            )
        try:
            return cls(
                policy=str(row["policy"]),
                task=str(row["task"]),
                seed=int(row["seed"]),
                episode_id=int(row["episode_id"]),
                **{m: _as_bool(m, row[m]) for m in METRICS},
            )
        except ValueError as err:
            raise UserError(f"result record {dict(row)!r} is malformed: {err}") from err


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "1.0", "yes"):
            return True
        if low in ("0", "false", "0.0", "no"):
            return False
        raise ValueError(f"{name}={value!r} is not a boolean")
    if hasattr(value, "item"):
        value = value.item()
    if value in (0, 1):  # also True/False
        return bool(value)
    raise ValueError(f"{name}={value!r} is not a boolean (0/1)")


def load_results(source: str | os.PathLike | Iterable[Any]) -> list[EpisodeResult]:
    """Episode results from a ``.csv`` / ``.jsonl`` file or an iterable of dicts/results.

    Examples:
        >>> rows = [dict(policy="RL", task="ind", seed=0, episode_id=0, grasped=1,
        ...              continuous_grasp=1, success=0)]
        >>> load_results(rows)[0].success
        False
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise UserError(f"results file {path} does not exist")
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                rows: Iterable[Any] = list(csv.DictReader(fh))
        elif path.suffix in (".jsonl", ".json"):
            if IncrementalResults.is_incremental_file(path):
                return IncrementalResults(path).results()
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            raise UserError(f"results file {path}: unknown format; use .csv or .jsonl")
    else:
        rows = source
    return [r if isinstance(r, EpisodeResult) else EpisodeResult.from_mapping(r) for r in rows]


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


# ------------------------------------------------------------------------------------------ CSV

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


# ---------------------------------------------------------------------------------- radar charts


def radar_chart(
    values: Mapping[str, Mapping[str, float]],
    *,
    tasks: Sequence[str],
    path: str | os.PathLike,
    title: str,
    rmax: float | None = None,
) -> Path:
    """A radar (spider) chart, one polygon per policy, like Fig. 7b/7c; written as PNG.

    Args:
        values: ``{policy: {task: value}}``; missing values are drawn at 0.
        tasks: the spokes, in order.
        path: output PNG.
        title: the chart's title.
        rmax: radial limit (default: the largest value, at least 1).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(tasks) < 3:
        raise UserError(f"a radar chart needs at least 3 tasks, got {list(tasks)}")
    angles = [2 * math.pi * i / len(tasks) for i in range(len(tasks))]
    fig = Figure(figsize=(6.5, 6.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(math.pi / 2)  # first task at the top, then clockwise
    ax.set_theta_direction(-1)
    top = rmax or max(
        [1.0] + [v for per in values.values() for v in per.values() if math.isfinite(v)]
    )
    for policy, per_task in values.items():
        radii = [
            per_task.get(t, 0.0) if math.isfinite(per_task.get(t, 0.0)) else 0.0 for t in tasks
        ]
        ax.plot(angles + angles[:1], radii + radii[:1], linewidth=2, label=policy)
        ax.fill(angles + angles[:1], radii + radii[:1], alpha=0.15)
    ax.set_xticks(angles)
    ax.set_xticklabels([_label(t) for t in tasks], fontsize=8)
    ax.set_ylim(0, top)
    ax.set_title(title)
    ax.legend(loc="upper right", bbox_to_anchor=(1.15, 1.1))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def bar_chart(
    summary: Mapping[tuple[str, str], Mapping[str, Stat]],
    *,
    tasks: Sequence[str],
    policies: Sequence[str],
    path: str | os.PathLike,
    ind_task: str = "ind",
) -> Path:
    """Grouped bars of success (mean +- std over seeds) per task and policy, each OOD bar
    annotated with its relative drop, like Fig. 7a; written as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drops = relative_drops(summary, ind_task=ind_task)
    width = 0.8 / max(1, len(policies))
    fig = Figure(figsize=(max(6.0, 0.7 * len(tasks) * max(1, len(policies))), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, policy in enumerate(policies):
        xs = [j + (i - (len(policies) - 1) / 2) * width for j in range(len(tasks))]
        stats = [summary.get((policy, t), {}).get("success") for t in tasks]
        means = [s.mean if s else 0.0 for s in stats]
        stds = [s.std if s else 0.0 for s in stats]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=policy)
        for x, mean, task in zip(xs, means, tasks):
            drop = drops.get((policy, task))
            if drop is not None and math.isfinite(drop):
                ax.annotate(f"{100 * drop:+.0f}%", (x, mean), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([_label(t) for t in tasks], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------------- report


def write_report(
    results: str | os.PathLike | Iterable[Any],
    out_dir: str | os.PathLike,
    *,
    task_axes: Mapping[str, str] = PAPER_TASK_AXES,
    policies: Sequence[str] | None = None,
    ind_task: str = "ind",
    ddof: int = 0,
) -> dict[str, Path]:
    """Write the full evaluation report (Markdown, CSVs, radar PNGs) into ``out_dir``.

    Args:
        results: episode results (see :func:`load_results`).
        out_dir: output directory (created).
        task_axes: task -> axis (``ind``, ``vision``, ``semantics``, ``execution``); tasks not
            listed are reported under an ``other`` axis.
        policies: column order (default: order of appearance, e.g. SFT then RL).
        ind_task: the in-distribution task the relative drops refer to.
        ddof: see :func:`summarize`.

    Returns:
        ``{name: path}`` of every file written.
    """
    records = load_results(results)
    if not records:
        raise UserError("no episode results to report; run the evaluation first")
    summary = summarize(records, ddof=ddof)
    task_axes = dict(task_axes)
    for _, task in summary:
        task_axes.setdefault(task, "other")
    policies = list(policies or _policies(summary))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {
        "summary.csv": write_summary_csv(summary, out / "summary.csv", task_axes=task_axes)
    }
    drops = relative_drops(summary, ind_task=ind_task)

    md = ["# Evaluation report", ""]
    n_seeds = sorted({s.n_seeds for stats in summary.values() for s in stats.values()})
    md.append(
        f"Mean (std) over seeds ({'/'.join(map(str, n_seeds))} per cell) of the per-seed episode "
        "means; relative drop = (OOD - IND) / IND on success (Sec. 5.3). Best in **bold**."
    )
    axes_present = [a for a in (*AXES, "other") if _axis_tasks(summary, task_axes, a, ind_task)[1:]]
    if not axes_present:  # IND only (e.g. the toy backend): its table, no OOD summary
        md += ["", "## In-distribution", ""]
        md.append(table_markdown(summary, tasks=[ind_task], policies=policies))
        _write_table_csv(summary, out / "table_ind.csv", tasks=[ind_task], policies=policies)
        files["table_ind.csv"] = out / "table_ind.csv"
    # Fig. 7a: average OOD success and average relative drop per axis
    md += ["", "## Summary by axis", ""] if axes_present else []
    head = ["Axis"] + [f"OOD Suc. {p}" for p in policies] + [f"Drop {p}" for p in policies]
    if axes_present:
        md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    axis_rows = []
    for axis in axes_present:
        tasks = [t for t in _axis_tasks(summary, task_axes, axis, ind_task) if t != ind_task]
        row = [AXIS_LABELS.get(axis, axis)]
        suc = {}
        drop = {}
        for p in policies:
            vals = [summary[(p, t)]["success"].mean for t in tasks if (p, t) in summary]
            suc[p] = sum(vals) / len(vals) if vals else math.nan
            dvals = [drops[(p, t)] for t in tasks if (p, t) in drops]
            drop[p] = sum(dvals) / len(dvals) if dvals else math.nan
        row += [f"{suc[p]:.3f}" for p in policies] + [_pct(drop[p]) for p in policies]
        md.append("| " + " | ".join(row) + " |")
        axis_rows.append(
            {
                "axis": axis,
                **{f"success/{p}": suc[p] for p in policies},
                **{f"drop/{p}": drop[p] for p in policies},
            }
        )
    with open(out / "axes.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["axis"] + [f"{k}/{p}" for k in ("success", "drop") for p in policies]
        )
        writer.writeheader()
        writer.writerows(axis_rows)
    files["axes.csv"] = out / "axes.csv"

    for number, axis in enumerate(axes_present, start=1):
        tasks = _axis_tasks(summary, task_axes, axis, ind_task)
        md += ["", f"## Table {number}: {AXIS_LABELS.get(axis, axis)}", ""]
        md.append(table_markdown(summary, tasks=tasks, policies=policies))
        name = f"table_{axis}.csv"
        _write_table_csv(summary, out / name, tasks=tasks, policies=policies)
        files[name] = out / name

    if drops:
        md += ["", "## Relative drop of success per task", ""]
        md += ["| Task | " + " | ".join(policies) + " |", "|" + "---|" * (len(policies) + 1)]
        ood_tasks = [t for a in (*AXES, "other") for t in task_axes if task_axes[t] == a]
        for t in (t for t in ood_tasks if any((p, t) in drops for p in policies)):
            md.append(
                "| "
                + _label(t)
                + " | "
                + " | ".join(_pct(drops.get((p, t), math.nan)) for p in policies)
                + " |"
            )
        with open(out / "drops.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["policy", "task", "axis", "relative_drop"])
            for (p, t), d in drops.items():
                writer.writerow([p, t, task_axes.get(t, ""), repr(d)])
        files["drops.csv"] = out / "drops.csv"

    # Fig. 7b/7c radars
    present = dict.fromkeys(t for _, t in summary)
    all_tasks = [
        t for a in ("ind", *AXES, "other") for t in task_axes if task_axes[t] == a and t in present
    ]
    files["bars_success.png"] = bar_chart(
        summary,
        tasks=all_tasks,
        policies=policies,
        path=out / "bars_success.png",
        ind_task=ind_task,
    )
    md += ["", "![success per task](bars_success.png)"]
    if len(all_tasks) >= 3:
        success = {
            p: {t: summary[(p, t)]["success"].mean for t in all_tasks if (p, t) in summary}
            for p in policies
        }
        files["radar_success.png"] = radar_chart(
            success, tasks=all_tasks, path=out / "radar_success.png", title="Success rate"
        )
        md += ["", "![success radar](radar_success.png)"]
    ood = [t for t in all_tasks if t != ind_task]
    if drops and len(ood) >= 3:
        ratio = {p: {t: 1.0 + drops[(p, t)] for t in ood if (p, t) in drops} for p in policies}
        files["radar_ood_ind_ratio.png"] = radar_chart(
            ratio, tasks=ood, path=out / "radar_ood_ind_ratio.png", title="OOD / IND success ratio"
        )
        md += ["", "![OOD/IND ratio radar](radar_ood_ind_ratio.png)"]

    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    files["report.md"] = out / "report.md"
    return files


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.1f}%"


# --------------------------------------------------------------------------- incremental results


class IncrementalResults:
    """Append-only per-episode results of an evaluation that may be interrupted and resumed.

    Each (policy, task, seed) group is appended in one go: its episode lines, then a completion
    line with the same attempt id, each flushed and fsync'ed. On reading, episodes of a group
    without its completion line (an interrupted write) are ignored, so a resumed evaluation
    skips the complete groups (:meth:`is_complete`) and redoes only the unfinished one.

    Examples:
        >>> import tempfile
        >>> store = IncrementalResults(Path(tempfile.mkdtemp()) / "episodes.jsonl")
        >>> store.is_complete("RL", "ind", 0)
        False
        >>> store.append_group("RL", "ind", 0, [dict(episode_id=0, grasped=1,
        ...                    continuous_grasp=1, success=1)])
        >>> store.is_complete("RL", "ind", 0), len(store.results())
        (True, 1)
    """

    _MARK = "_vla_torchrl_results"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def is_incremental_file(cls, path: Path) -> bool:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        return cls._MARK in first

    def _lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # cut short by a crash
        return out

    def _complete_attempts(self, lines) -> dict[tuple[str, str, int], str]:
        done = {}
        for rec in lines:
            if rec.get("kind") == "complete":
                done[(rec["policy"], rec["task"], int(rec["seed"]))] = rec["attempt"]
        return done

    def completed(self) -> set[tuple[str, str, int]]:
        """The (policy, task, seed) groups fully written."""
        return set(self._complete_attempts(self._lines()))

    def is_complete(self, policy: str, task: str, seed: int) -> bool:
        """Whether the group is already complete (skip it when resuming)."""
        return (policy, task, int(seed)) in self.completed()

    def pending(
        self, policies: Iterable[str], tasks: Iterable[str], seeds: Iterable[int]
    ) -> list[tuple[str, str, int]]:
        """The (policy, task, seed) groups still to evaluate, in loop order.

        Examples:
            >>> import tempfile
            >>> store = IncrementalResults(Path(tempfile.mkdtemp()) / "e.jsonl")
            >>> store.append_group("RL", "ind", 0, [dict(episode_id=0, grasped=0,
            ...                    continuous_grasp=0, success=0)])
            >>> store.pending(["RL"], ["ind", "table"], [0, 1])
            [('RL', 'ind', 1), ('RL', 'table', 0), ('RL', 'table', 1)]
        """
        done = self.completed()
        tasks, seeds = list(tasks), [int(s) for s in seeds]
        return [(p, t, s) for p in policies for t in tasks for s in seeds if (p, t, s) not in done]

    def append_group(
        self, policy: str, task: str, seed: int, episodes: Iterable[Mapping[str, Any]]
    ) -> None:
        """Append the episodes of one (policy, task, seed) group, then mark it complete.

        Args:
            episodes: dicts with ``episode_id``, ``grasped``, ``continuous_grasp``, ``success``.
        """
        attempt = uuid.uuid4().hex
        rows = []
        for ep in episodes:
            result = EpisodeResult.from_mapping(
                {**ep, "policy": policy, "task": task, "seed": seed}
            )
            rows.append({"kind": "episode", "attempt": attempt, **asdict(result)})
        if not rows:
            raise UserError(f"no episodes for ({policy}, {task}, seed {seed}); nothing to append")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        ends_cleanly = new_file or self._ends_with_newline()
        with open(self.path, "a", encoding="utf-8") as fh:
            if not ends_cleanly:
                fh.write("\n")  # a crash left half a line: do not glue our first line to it
            if new_file:
                fh.write(json.dumps({"kind": "header", self._MARK: 1}) + "\n")
            for row in rows:
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done = {"kind": "complete", "attempt": attempt, "policy": policy, "task": task}
            fh.write(json.dumps({**done, "seed": int(seed), "n_episodes": len(rows)}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def results(self) -> list[EpisodeResult]:
        """Episode results of the complete groups (latest complete attempt of each)."""
        lines = self._lines()
        done = self._complete_attempts(lines)
        out = []
        for rec in lines:
            if rec.get("kind") != "episode":
                continue
            key = (rec["policy"], rec["task"], int(rec["seed"]))
            if done.get(key) == rec["attempt"]:
                out.append(EpisodeResult.from_mapping(rec))
        return out


def main(argv: list[str] | None = None) -> int:
    """Command line: write the report of a results file (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m vla_torchrl.recipes.report",
        description="Evaluation report (tables like the paper's Tables 1-3, radar charts).",
    )
    parser.add_argument("results", help="per-episode results: .csv, .jsonl or an eval's file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--policies", help="comma-separated column order, e.g. SFT,RL")
    parser.add_argument("--task-axes", help="JSON file {task: axis} (default: the paper's)")
    parser.add_argument("--ind-task", default="ind")
    parser.add_argument(
        "--ddof", type=int, default=0, help="std over seeds: 0 population, 1 sample"
    )
    args = parser.parse_args(argv)
    task_axes = PAPER_TASK_AXES
    if args.task_axes:
        try:
            task_axes = json.loads(Path(args.task_axes).read_text())
        except (OSError, ValueError) as err:
            raise UserError(
                f"--task-axes {args.task_axes}: cannot read a JSON mapping ({err})"
            ) from err
    files = write_report(
        args.results,
        args.out,
        task_axes=task_axes,
        policies=args.policies.split(",") if args.policies else None,
        ind_task=args.ind_task,
        ddof=args.ddof,
    )
    print(files["report.md"])
    return 0


if __name__ == "__main__":
    from vla_torchrl.recipes._cli import run_cli

    sys.exit(run_cli(main))
