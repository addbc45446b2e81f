"""The evaluation report: ``report.md``, CSV tables and the charts of the paper's Fig. 7.

:func:`write_report` writes ``report.md`` with one table per axis in the layout of the paper's
Tables 1-3 and a per-axis summary like Fig. 7a; ``summary.csv`` (long format, readable back with
:func:`~vla_torchrl.evaluation.tables.read_summary_csv`), ``table_<axis>.csv``, ``drops.csv``;
radar charts like Fig. 7b/7c (``radar_success.png``, ``radar_ood_ind_ratio.png``) and grouped
success bars annotated with the relative drop like Fig. 7a (``bars_success.png``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.results import load_results
from vla_torchrl.evaluation.tables import (
    AXES,
    AXIS_LABELS,
    DROP_UNDEFINED,
    PAPER_TASK_AXES,
    Stat,
    _axis_tasks,
    _label,
    _policies,
    _write_table_csv,
    format_drop,
    paired_comparisons,
    relative_drops,
    summarize,
    table_markdown,
    write_paired_csv,
    write_summary_csv,
)
from vla_torchrl.evaluation.training_runs import (
    check_runs,
    over_runs,
    runs_markdown,
    write_runs_csv,
)

__all__ = ["bar_chart", "radar_chart", "write_report"]


#: Drop cell of a task on no OOD axis (toy tasks, user tasks without an axis).
NO_AXIS = "n/a (no OOD axis)"


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
    """Grouped bars of success per task and policy with their 95% Wilson intervals (mean +- std
    over seeds for cells without one), each OOD bar annotated with its relative drop, like
    Fig. 7a; written as PNG."""
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
        below = [_err(s, 0) for s in stats]
        above = [_err(s, 1) for s in stats]
        ax.bar(xs, means, width, yerr=[below, above], capsize=2, label=policy)
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


def _err(stat: Stat | None, side: int) -> float:
    """Error bar length below (side 0) / above (side 1) the mean: the Wilson interval's end."""
    if stat is None:
        return 0.0
    if stat.ci is None:
        return stat.std
    return max(0.0, stat.mean - stat.ci[0]) if side == 0 else max(0.0, stat.ci[1] - stat.mean)


def write_report(
    results: str | os.PathLike | Iterable[Any],
    out_dir: str | os.PathLike,
    *,
    task_axes: Mapping[str, str] = PAPER_TASK_AXES,
    policies: Sequence[str] | None = None,
    ind_task: str = "ind",
    ddof: int = 0,
    resamples: int = 10_000,
    runs: Mapping[str, Sequence[str]] | None = None,
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
        resamples: of the paired bootstrap (:func:`paired_comparisons`).
        runs: ``{method: [policy label of each training run]}``: adds the section "Over
            training runs" (mean (std) over each method's runs, per task and axis:
            :mod:`vla_torchrl.evaluation.training_runs`) and ``runs.csv``.

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
    # a relative drop measures generalisation along an OOD axis; a task on none (a toy task,
    # a user task registered without an axis) is reported with its success only
    drops = {
        key: d
        for key, d in relative_drops(summary, ind_task=ind_task).items()
        if task_axes.get(key[1]) in AXES
    }

    md = ["# Evaluation report", ""]
    n_seeds = sorted({s.n_seeds for stats in summary.values() for s in stats.values()})
    md.append(
        f"Cells: mean (std) over seeds ({'/'.join(map(str, n_seeds))} per cell) of the per-seed "
        "episode means, then [the 95% Wilson interval] of the rate over the cell's n episodes "
        "pooled over seeds (one checkpoint per policy, seeds draw different scenes: the episode "
        "is the unit; summary.csv also has the t-interval over seeds). Relative drop = "
        "(OOD - IND) / IND on success (Sec. 5.3). Best mean in **bold**."
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
            # an undefined drop (IND = 0) makes the policy's axis average undefined too
            drop[p] = sum(dvals) / len(dvals) if dvals else math.nan
        row += [f"{suc[p]:.3f}" for p in policies]
        row += [NO_AXIS if axis == "other" else format_drop(drop[p]) for p in policies]
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
        writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in axis_rows)
    files["axes.csv"] = out / "axes.csv"

    for number, axis in enumerate(axes_present, start=1):
        tasks = _axis_tasks(summary, task_axes, axis, ind_task)
        md += ["", f"## Table {number}: {AXIS_LABELS.get(axis, axis)}", ""]
        md.append(table_markdown(summary, tasks=tasks, policies=policies))
        name = f"table_{axis}.csv"
        _write_table_csv(summary, out / name, tasks=tasks, policies=policies)
        files[name] = out / name

    if "other" in axes_present:
        md += ["", f"Other: tasks on no OOD axis, so no relative drop ({NO_AXIS})."]
    files.update(_paired_section(records, policies, md, out, task_axes, resamples))
    if runs:
        runs = check_runs(runs, _policies(summary))
        per_task, per_axis = over_runs(
            summary, runs, task_axes=task_axes, ind_task=ind_task, ddof=ddof
        )
        order = [ind_task] + [t for a in (*AXES, "other") for t in task_axes if task_axes[t] == a]
        md += [""] + runs_markdown(per_task, per_axis, runs, task_order=list(dict.fromkeys(order)))
        files["runs.csv"] = write_runs_csv(
            per_task, per_axis, runs, out / "runs.csv", task_axes=task_axes
        )

    if drops:
        md += ["", "## Relative drop of success per task", ""]
        md += ["| Task | " + " | ".join(policies) + " |", "|" + "---|" * (len(policies) + 1)]
        ood_tasks = [t for a in (*AXES, "other") for t in task_axes if task_axes[t] == a]
        for t in (t for t in ood_tasks if any((p, t) in drops for p in policies)):
            md.append(
                "| "
                + _label(t)
                + " | "
                + " | ".join(format_drop(drops.get((p, t), math.nan)) for p in policies)
                + " |"
            )
        undefined = [
            p for p in policies if any(math.isnan(d) for (q, _), d in drops.items() if q == p)
        ]
        if undefined:
            md += ["", f"n/a (IND = 0) for {', '.join(undefined)}: {DROP_UNDEFINED}."]
        with open(out / "drops.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["policy", "task", "axis", "relative_drop", "note"])
            for (p, t), d in drops.items():
                note = DROP_UNDEFINED if math.isnan(d) else ""
                writer.writerow([p, t, task_axes.get(t, ""), _csv_value(d), note])
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
    # a policy with IND = 0 has no ratio to draw (it would show as 0 on every spoke)
    ratio = {
        p: {t: 1.0 + drops[(p, t)] for t in ood if (p, t) in drops}
        for p in policies
        if all(math.isfinite(drops[(p, t)]) for t in ood if (p, t) in drops)
    }
    if drops and len(ood) >= 3 and any(ratio.values()):
        files["radar_ood_ind_ratio.png"] = radar_chart(
            ratio, tasks=ood, path=out / "radar_ood_ind_ratio.png", title="OOD / IND success ratio"
        )
        md += ["", "![OOD/IND ratio radar](radar_ood_ind_ratio.png)"]

    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    files["report.md"] = out / "report.md"
    return files


def _csv_value(value: Any) -> Any:
    """Floats as ``repr``; NaN (an undefined drop) as "n/a" (pandas reads it back as NaN)."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else repr(value)
    return value


def _paired_section(records, policies, md, out: Path, task_axes, resamples) -> dict[str, Path]:
    """The paired comparison of every policy with the first on the same episodes."""
    if len(policies) < 2:
        return {}
    baseline = policies[0]
    comparisons = paired_comparisons(
        records, baseline=baseline, policies=policies[1:], resamples=resamples
    )
    path = write_paired_csv(comparisons, out / "paired.csv", task_axes=task_axes)
    order = {t: i for i, t in enumerate(task_axes)}
    for policy in policies[1:]:
        rows = sorted(
            (c for c in comparisons if c.policy == policy and c.metric == "success"),
            key=lambda c: order.get(c.task, len(order)),
        )
        if not rows:
            continue
        md += ["", f"## Paired comparison: {policy} vs {baseline} (success, same episodes)", ""]
        md.append(
            f"Per task, over the n episodes both policies ran (same task, seed and episode id): "
            f"the success rates, the difference {policy} - {baseline} with its 95% paired "
            f"bootstrap interval ({resamples} resamples of the episode pairs), the discordant "
            f"episodes (success for one policy only) and the two-sided exact McNemar p-value on "
            f"them. No correction for the number of tasks."
        )
        md += [
            "",
            f"| Task | n | {baseline} | {policy} | Diff. [95% CI] | {baseline} only | "
            f"{policy} only | McNemar p |",
            "|" + "---|" * 8,
        ]
        for c in rows:
            if c.n == 0:
                md.append(f"| {_label(c.task)} | 0 | n/a ({c.note}) | | | | | |")
                continue
            md.append(
                f"| {_label(c.task)} | {c.n} | {c.baseline_rate:.3f} | {c.rate:.3f} | "
                f"{c.diff:+.3f} [{c.low:+.3f}, {c.high:+.3f}] | {c.only_baseline} | "
                f"{c.only_policy} | {_p(c.p_value)} |"
            )
    return {"paired.csv": path}


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"
