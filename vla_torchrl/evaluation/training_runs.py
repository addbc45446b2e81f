"""Methods over their training runs: mean and std across seeds of training, per task and per axis.

An evaluation reports each saved policy on its own (:func:`~vla_torchrl.evaluation.tables.
summarize`: the std there is over *evaluation* seeds of one checkpoint). A method trained with
several seeds (``RL = [PPO-s0, PPO-s1]``) is judged over its runs: each run's success on a task
is its rate over all its episodes of that task (pooled over evaluation seeds), and the method's
cell is the mean and std of those rates over the runs. Per axis, a run's OOD success is the mean
of its rates over the axis's tasks and its relative drop the mean of ``(OOD - IND) / IND`` over
them (Sec. 5.3, each run against its own IND); the method's axis cell is again mean (std) over
runs. ``vla-torchrl-report runs={SFT:[SFT],RL:[PPO-s0,PPO-s1]}`` adds this as a section of the
report and ``runs.csv``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.tables import AXES, AXIS_LABELS, Stat, _axis_tasks, _label, format_drop
from vla_torchrl.utils.stats import mean_std

__all__ = ["RunStat", "check_runs", "over_runs", "runs_markdown", "write_runs_csv"]


@dataclass(frozen=True)
class RunStat:
    """A method's value over its training runs: ``mean``, ``std`` and each run's ``values``
    (in the order the runs were given; NaN where undefined, e.g. a drop with IND = 0)."""

    mean: float
    std: float
    values: tuple[float, ...]


def check_runs(runs: Mapping[str, Sequence[str]], policies: Sequence[str]) -> dict[str, list[str]]:
    """``runs`` as ``{method: [policy, ...]}``, each policy one of ``policies``; else a
    :class:`UserError` naming the method and the policies there are.

    Examples:
        >>> check_runs({"RL": ["PPO-s0", "PPO-s1"]}, ["SFT", "PPO-s0", "PPO-s1"])
        {'RL': ['PPO-s0', 'PPO-s1']}
        >>> check_runs({"RL": ["PPO-s2"]}, ["SFT", "PPO-s0"])
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: runs.RL: no policy PPO-s2 in the results (they hold SFT, PPO-s0); list a method's training runs by their policy labels, e.g. runs={RL:[PPO-s0,PPO-s1]}
    """
    out = {}
    for method, members in runs.items():
        members = [members] if isinstance(members, str) else [str(m) for m in members]
        if not members:
            raise UserError(f"runs.{method} is empty; give the policy label of each training run")
        missing = [m for m in members if m not in policies]
        if missing:
            raise UserError(
                f"runs.{method}: no policy {', '.join(missing)} in the results (they hold "
                f"{', '.join(policies)}); list a method's training runs by their policy labels, "
                "e.g. runs={RL:[PPO-s0,PPO-s1]}"
            )
        if len(set(members)) < len(members):
            raise UserError(f"runs.{method}={members} names a policy twice; list each run once")
        out[str(method)] = members
    return out


def _rate(stat: Stat) -> float:
    return stat.count / stat.n if stat.n else math.nan


def over_runs(
    summary: Mapping[tuple[str, str], Mapping[str, Stat]],
    runs: Mapping[str, Sequence[str]],
    *,
    task_axes: Mapping[str, str],
    ind_task: str = "ind",
    metric: str = "success",
    ddof: int = 0,
) -> tuple[dict[tuple[str, str], RunStat], dict[tuple[str, str], dict[str, RunStat]]]:
    """Per (method, task) and per (method, axis): the metric over the method's runs.

    Args:
        summary: :func:`~vla_torchrl.evaluation.tables.summarize` of the results.
        runs: ``{method: [policy label of each training run]}``.
        task_axes: task -> axis; ind_task: the drops' reference.
        metric: the per-episode metric (default: success).
        ddof: of the std over runs (0: population, as the report's tables).

    Returns:
        ``({(method, task): RunStat}, {(method, axis): {"ood": RunStat, "drop": RunStat}})``;
        a task is in a method's rows only if every run of the method has it.

    Examples:
        >>> s = lambda c, n: {"success": Stat(c / n, 0.0, 1, n=n, count=c)}
        >>> summary = {("a", "ind"): s(4, 8), ("a", "table"): s(2, 8),
        ...            ("b", "ind"): s(2, 8), ("b", "table"): s(2, 8)}
        >>> tasks, axes = over_runs(summary, {"RL": ["a", "b"]}, task_axes={"table": "vision"})
        >>> tasks[("RL", "ind")]
        RunStat(mean=0.375, std=0.125, values=(0.5, 0.25))
        >>> axes[("RL", "vision")]["drop"].values  # (0.25 - 0.5) / 0.5, (0.25 - 0.25) / 0.25
        (-0.5, 0.0)
    """

    def stat(values: list[float]) -> RunStat:
        ms = mean_std(values, ddof=ddof)
        return RunStat(ms.mean, ms.std, tuple(values))

    tasks_out: dict[tuple[str, str], RunStat] = {}
    axes_out: dict[tuple[str, str], dict[str, RunStat]] = {}
    present = list(dict.fromkeys(t for _, t in summary))  # tasks in order of appearance
    for method, members in runs.items():
        for task in present:
            if all((p, task) in summary for p in members):
                rates = [_rate(summary[(p, task)][metric]) for p in members]
                tasks_out[(method, task)] = stat(rates)
        for axis in AXES:
            tasks = [
                t
                for t in _axis_tasks(summary, task_axes, axis, ind_task)
                if t != ind_task and (method, t) in tasks_out
            ]
            if not tasks or (method, ind_task) not in tasks_out:
                continue
            ood, drop = [], []
            for i in range(len(members)):
                rates = [tasks_out[(method, t)].values[i] for t in tasks]
                ind = tasks_out[(method, ind_task)].values[i]
                ood.append(sum(rates) / len(rates))
                drop.append(
                    sum((r - ind) / ind for r in rates) / len(rates) if ind > 0 else math.nan
                )
            axes_out[(method, axis)] = {"ood": stat(ood), "drop": stat(drop)}
    return tasks_out, axes_out


def _cell(s: RunStat | None, digits: int = 3) -> str:
    if s is None or math.isnan(s.mean):
        return "-"
    if len(s.values) < 2:  # one run: no spread to show
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ({s.std:.{digits}f})".replace("(0.", "(.")


def _drop_cell(s: RunStat | None) -> str:
    if s is None:
        return "-"
    if len(s.values) < 2 or math.isnan(s.std):
        return format_drop(s.mean)
    return f"{format_drop(s.mean)} ({100 * s.std:.1f})"


def _delta(s: RunStat | None, base: RunStat | None) -> str:
    if s is None or base is None or math.isnan(s.mean) or math.isnan(base.mean):
        return "-"
    return f"{100 * (s.mean - base.mean):+.1f}"


def runs_markdown(
    tasks_out: Mapping[tuple[str, str], RunStat],
    axes_out: Mapping[tuple[str, str], Mapping[str, RunStat]],
    runs: Mapping[str, Sequence[str]],
    *,
    task_order: Sequence[str],
    metric_label: str = "Suc.",
) -> list[str]:
    """The report section: a per-axis summary and a per-task table, one column per method
    ("mean (std)" over its runs) and the difference of each method from the first in points."""
    methods = list(runs)
    base = methods[0]
    others = methods[1:]
    lines = [
        "## Over training runs",
        "",
        "Each run's rate pools its episodes of a task; a cell is mean (std) over a method's "
        "runs ("
        + "; ".join(f"{m}: {', '.join(runs[m])}" for m in methods)
        + f"). Delta = difference of means from {base}, in points; the std of a relative drop "
        "is in points too.",
        "",
    ]
    head = ["Axis"]
    head += [f"OOD {metric_label} {m}" for m in methods] + [f"Delta {m}" for m in others]
    head += [f"Drop {m}" for m in methods]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for axis in AXES:
        if not any((m, axis) in axes_out for m in methods):
            continue
        ood = {m: axes_out.get((m, axis), {}).get("ood") for m in methods}
        drop = {m: axes_out.get((m, axis), {}).get("drop") for m in methods}
        row = [AXIS_LABELS.get(axis, axis)] + [_cell(ood[m]) for m in methods]
        row += [_delta(ood[m], ood[base]) for m in others]
        row += [_drop_cell(drop[m]) for m in methods]
        lines.append("| " + " | ".join(row) + " |")
    head = ["Task"] + [f"{metric_label} {m}" for m in methods] + [f"Delta {m}" for m in others]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in task_order:
        if not any((m, task) in tasks_out for m in methods):
            continue
        cells = {m: tasks_out.get((m, task)) for m in methods}
        row = [_label(task)] + [_cell(cells[m]) for m in methods]
        row += [_delta(cells[m], cells[base]) for m in others]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_runs_csv(
    tasks_out: Mapping[tuple[str, str], RunStat],
    axes_out: Mapping[tuple[str, str], Mapping[str, RunStat]],
    runs: Mapping[str, Sequence[str]],
    path: str | Path,
    *,
    task_axes: Mapping[str, str],
) -> Path:
    """``runs.csv``: one row per (method, task) and per (method, axis, quantity), with the mean,
    the std, the number of runs and each run's value (``policy=value`` pairs)."""
    path = Path(path)

    def values(method: str, s: RunStat) -> list:
        per_run = " ".join(f"{p}={v!r}" for p, v in zip(runs[method], s.values, strict=True))
        return [repr(s.mean), repr(s.std), len(s.values), per_run]

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "task", "axis", "quantity", "mean", "std", "n_runs", "runs"])
        for (method, task), s in tasks_out.items():
            writer.writerow([method, task, task_axes.get(task, ""), "rate", *values(method, s)])
        for (method, axis), quantities in axes_out.items():
            for name, s in quantities.items():
                quantity = "ood_rate" if name == "ood" else "relative_drop"
                writer.writerow([method, "", axis, quantity, *values(method, s)])
    return path
