"""Statistics and tables of evaluation results: per-task metrics over seeds, 95% intervals, paired
comparisons, relative drops, Tables 1-3.

For each (policy, task) and metric, the per-seed value is the mean over that seed's episodes and
the reported value is the mean and standard deviation over seeds (``ddof=0`` by default; the
paper's Tables 1-3 are consistent with the population std over its 3 seeds). Each cell also
carries what a reader needs to trust it (issue 15):

* ``n``: the episodes behind it, pooled over seeds, and ``count``: those where the metric holds;
* ``ci``: the 95% Wilson score interval of the pooled rate ``count / n``. This is the interval the
  tables show: an evaluation runs ONE checkpoint, and its seeds only draw different scenes, so
  every episode is an independent draw from the same policy and the episode is the unit;
* ``seed_ci``: the 95% Student-t interval over the seed means (``mean +- t_{k-1} s / sqrt(k)``,
  sample std, clipped to [0, 1]; None with one seed), for when the seeds are the unit (e.g. one
  policy trained per seed). With 3 seeds ``t_2 = 4.30``: wide, honestly so.

:func:`paired_comparisons` compares policies on the SAME episodes (``(task, seed, episode_id)``;
the evaluation gives every policy the same scenes): the exact McNemar test of the discordant
pairs (its p-value) and a paired percentile bootstrap interval of the difference of rates.

The relative drop of Sec. 5.3 is ``(OOD - IND) / IND``; with IND = 0 it is undefined and shown as
"n/a" with that reason (:data:`DROP_UNDEFINED`), never NaN. Tables are Markdown in the paper's
layout (rows = tasks with IND first, column groups Acc. / Cont. Acc. / Suc. with one sub-column
per policy) and CSV.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.results import METRIC_LABELS, METRICS, EpisodeResult
from vla_torchrl.utils.stats import (
    mcnemar_exact,
    mean_std,
    paired_bootstrap,
    t_interval,
    wilson_interval,
)

__all__ = [
    "AXES",
    "AXIS_LABELS",
    "DROP_UNDEFINED",
    "PAPER_TASK_AXES",
    "TASK_LABELS",
    "Paired",
    "Stat",
    "format_cell",
    "format_drop",
    "paired_comparisons",
    "read_summary_csv",
    "relative_drop",
    "relative_drops",
    "summarize",
    "table_markdown",
    "write_paired_csv",
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
    """One table cell: mean and std over seeds of the per-seed episode means, and its intervals.

    Attributes:
        mean, std, n_seeds: over the seeds' episode means.
        n: episodes pooled over the seeds; ``count``: those where the metric holds.
        ci: 95% Wilson interval of ``count / n`` (episodes as the unit; the one the tables show).
        seed_ci: 95% t-interval over the seed means, clipped to [0, 1] (seeds as the unit);
            None with fewer than 2 seeds.
    """

    mean: float
    std: float
    n_seeds: int
    n: int = 0
    count: int = 0
    ci: tuple[float, float] | None = None
    seed_ci: tuple[float, float] | None = None


def _clip01(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    if interval is None:
        return None
    return max(0.0, interval[0]), min(1.0, interval[1])


def summarize(
    results: Iterable[EpisodeResult], *, ddof: int = 0, level: float = 0.95
) -> dict[tuple[str, str], dict[str, Stat]]:
    """Per (policy, task) and metric: mean/std over seeds of the per-seed episode mean, ``n``,
    the Wilson interval over the pooled episodes and the t-interval over the seeds.

    Args:
        results: episode results.
        ddof: delta degrees of freedom of the std over seeds (0: population std). The
            t-interval always uses the sample std (``ddof=1``), as its formula requires.
        level: coverage of both intervals.

    Returns:
        ``{(policy, task): {metric: Stat}}``, in order of first appearance.

    Examples:
        >>> rows = [EpisodeResult("RL", "ind", s, e, True, e == 0, e == 0 and s == 0)
        ...         for s in (0, 1) for e in (0, 1)]
        >>> stat = summarize(rows)[("RL", "ind")]["success"]
        >>> stat.mean, stat.std, stat.n_seeds, stat.n, stat.count
        (0.25, 0.25, 2, 4, 1)
        >>> [round(x, 3) for x in stat.ci]  # Wilson, 1 of 4
        [0.046, 0.699]
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
            seeds = mean_std(per_seed, ddof=ddof)
            count = sum(int(getattr(e, metric)) for eps in by_seed.values() for e in eps)
            n = sum(len(eps) for eps in by_seed.values())
            stats[metric] = Stat(
                seeds.mean,
                seeds.std,
                len(per_seed),
                n=n,
                count=count,
                ci=wilson_interval(count, n, level=level),
                seed_ci=_clip01(t_interval(per_seed, level=level)),
            )
        out[key] = stats
    return out


#: why a relative drop is "n/a": shown next to it in report.md and in drops.csv's ``note``
DROP_UNDEFINED = "IND success is 0, so (OOD - IND) / IND is undefined"


def relative_drop(ood: float, ind: float) -> float:
    """Relative performance drop ``(OOD - IND) / IND`` (Sec. 5.3); NaN when IND is 0 (reports
    show it as "n/a" with :data:`DROP_UNDEFINED`, see :func:`format_drop`).

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


def format_drop(value: float) -> str:
    """``"-12.5%"``, or ``"n/a (IND = 0)"`` for an undefined drop.

    Examples:
        >>> format_drop(-0.125), format_drop(float("nan"))
        ('-12.5%', 'n/a (IND = 0)')
    """
    return "n/a (IND = 0)" if math.isnan(value) else f"{100 * value:+.1f}%"


def _short(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("0.") else text


def format_cell(stat: Stat | None, *, digits: int = 3) -> str:
    """``"0.922 (.013) [.851, .962]"``: the mean, the std without its leading zero, and the 95%
    Wilson interval when the cell has one.

    Examples:
        >>> format_cell(Stat(0.921875, 0.0127, 3))
        '0.922 (.013)'
        >>> format_cell(Stat(0.875, 0.0, 3, n=8, count=7, ci=(0.529, 0.978)))
        '0.875 (.000) [.529, .978]'
    """
    if stat is None or math.isnan(stat.mean):
        return "n/a"
    text = f"{stat.mean:.{digits}f} ({_short(stat.std, digits)})"
    if stat.ci is not None:
        text += f" [{_short(stat.ci[0], digits)}, {_short(stat.ci[1], digits)}]"
    return text


def _episodes(stats: Sequence[Stat | None]) -> str:
    """The ``n`` column: episodes per policy, one number when they agree (``"48"`` or ``"48/40"``)."""
    ns = [str(s.n) for s in stats if s is not None]
    return "" if not ns else ns[0] if len(set(ns)) == 1 else "/".join(ns)


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

    Rows are ``tasks``; the ``n`` column holds the episodes of each cell (per policy when they
    differ); columns are grouped by metric (Acc., Cont. Acc., Suc.) with one sub-column per
    policy; a cell is "mean (std) [95% Wilson interval]" (:func:`format_cell`); the best mean of
    each group (at the shown precision) is bold.

    Examples:
        >>> s = {("SFT", "ind"): {m: Stat(0.5, 0.1, 3, n=12) for m in METRICS},
        ...      ("RL", "ind"): {m: Stat(0.75, 0.0, 3, n=12) for m in METRICS}}
        >>> print(table_markdown(s, tasks=["ind"]).splitlines()[2])
        | IND | 12 | 0.500 (.100) | **0.750 (.000)** | 0.500 (.100) | **0.750 (.000)** | 0.500 (.100) | **0.750 (.000)** |
    """
    policies = list(policies or _policies(summary))
    header = ["Task", "n"] + [f"{METRIC_LABELS[m]} {p}" for m in METRICS for p in policies]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        cells = [
            _label(task),
            _episodes([summary.get((p, task), {}).get("success") for p in policies]),
        ]
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


_SUMMARY_FIELDS = (
    "policy",
    "task",
    "axis",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "n_episodes",
    "count",
    "ci_low",
    "ci_high",
    "seed_ci_low",
    "seed_ci_high",
)


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def write_summary_csv(
    summary: Mapping[tuple[str, str], Mapping[str, Stat]],
    path: str | os.PathLike,
    *,
    task_axes: Mapping[str, str] = PAPER_TASK_AXES,
) -> Path:
    """Write the summary in long format (one row per policy, task, metric).

    Columns: ``mean``, ``std``, ``n_seeds`` over seeds; ``n_episodes`` and ``count`` pooled;
    ``ci_low`` / ``ci_high`` the 95% Wilson interval; ``seed_ci_low`` / ``seed_ci_high`` the 95%
    t-interval over seeds (empty with one seed).
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_SUMMARY_FIELDS)
        for (policy, task), stats in summary.items():
            for metric in METRICS:
                s = stats[metric]
                ci, seed_ci = s.ci or (None, None), s.seed_ci or (None, None)
                writer.writerow(
                    [
                        policy,
                        task,
                        task_axes.get(task, ""),
                        metric,
                        repr(s.mean),
                        repr(s.std),
                        s.n_seeds,
                        s.n,
                        s.count,
                        *map(_num, ci),
                        *map(_num, seed_ci),
                    ]
                )
    return path


def _pair(row: Mapping[str, str], low: str, high: str) -> tuple[float, float] | None:
    if not row.get(low) or not row.get(high):
        return None
    return float(row[low]), float(row[high])


def read_summary_csv(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, Stat]]:
    """Read back :func:`write_summary_csv` output (also older files without ``n`` / intervals)."""
    out: dict[tuple[str, str], dict[str, Stat]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.setdefault((row["policy"], row["task"]), {})[row["metric"]] = Stat(
                float(row["mean"]),
                float(row["std"]),
                int(row["n_seeds"]),
                n=int(row.get("n_episodes") or 0),
                count=int(row.get("count") or 0),
                ci=_pair(row, "ci_low", "ci_high"),
                seed_ci=_pair(row, "seed_ci_low", "seed_ci_high"),
            )
    return out


def _write_table_csv(summary, path: Path, *, tasks: Sequence[str], policies: Sequence[str]):
    keys = ("mean", "std", "n", "ci_low", "ci_high")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["task"]
            + [f"{METRIC_LABELS[m]} {p} {k}" for m in METRICS for p in policies for k in keys]
        )
        for task in tasks:
            row: list[Any] = [_label(task)]
            for metric in METRICS:
                for p in policies:
                    s = summary.get((p, task), {}).get(metric)
                    if s is None:
                        row += [""] * len(keys)
                        continue
                    ci = s.ci or (math.nan, math.nan)
                    row += [f"{s.mean:.6f}", f"{s.std:.6f}", s.n, f"{ci[0]:.6f}", f"{ci[1]:.6f}"]
            writer.writerow(row)


# ------------------------------------------------------------------------------ paired comparison
@dataclass(frozen=True)
class Paired:
    """``policy`` vs ``baseline`` on the episodes both ran, for one task and metric.

    Attributes:
        n: shared episodes (pairs), matched on ``(seed, episode_id)``.
        baseline_rate, rate: the two rates over those pairs.
        only_baseline, only_policy: discordant pairs (the metric held for one policy only).
        diff, low, high: ``rate - baseline_rate`` and its 95% paired bootstrap interval.
        p_value: two-sided exact McNemar test of the discordant pairs.
        note: why the numbers are missing (NaN) when there are no shared episodes.
    """

    baseline: str
    policy: str
    task: str
    metric: str
    n: int
    baseline_rate: float
    rate: float
    only_baseline: int
    only_policy: int
    diff: float
    low: float
    high: float
    p_value: float
    note: str = ""


def paired_comparisons(
    results: Iterable[EpisodeResult],
    *,
    baseline: str,
    policies: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> list[Paired]:
    """Each policy vs ``baseline`` per task and metric, on the episodes both ran.

    An evaluation gives every policy the same scenes (an episode is a function of (task, seed,
    episode id)), so the two outcomes of an episode form a pair and the comparison needs no
    independence between policies: McNemar's exact test uses only the discordant pairs
    (:func:`~vla_torchrl.utils.stats.mcnemar_exact`), the interval resamples pairs
    (:func:`~vla_torchrl.utils.stats.paired_bootstrap`, fixed ``seed``). No correction for the
    number of tasks compared is applied: with 15 tasks, expect one p < 0.05 in 15 by chance.

    Args:
        results: episode results.
        baseline: the policy the others are compared with (e.g. ``"SFT"``).
        policies: the policies to compare (default: every other policy, in order of appearance).
        metrics: the metrics compared.
        level: coverage of the bootstrap interval.
        resamples, seed: of the bootstrap.

    Returns:
        One :class:`Paired` per (policy, task both policies ran, metric).

    Examples:
        >>> rows = [EpisodeResult(p, "ind", 0, e, True, True, ok)
        ...         for p, oks in (("SFT", (0, 0, 1, 1)), ("RL", (1, 1, 1, 0)))
        ...         for e, ok in enumerate(oks)]
        >>> c = paired_comparisons(rows, baseline="SFT", metrics=["success"])[0]
        >>> c.n, c.only_baseline, c.only_policy, c.diff, c.p_value
        (4, 1, 2, 0.25, 1.0)
    """
    by_policy: dict[str, dict[str, dict[tuple[int, int], EpisodeResult]]] = {}
    for r in results:
        cell = by_policy.setdefault(r.policy, {}).setdefault(r.task, {})
        key = (r.seed, r.episode_id)
        if key in cell:
            raise UserError(
                f"episode (task {r.task}, seed {r.seed}, id {r.episode_id}) appears twice for "
                f"policy {r.policy}; episodes must be unique to be paired"
            )
        cell[key] = r
    if baseline not in by_policy:
        raise UserError(f"baseline policy {baseline!r} has no results; have {list(by_policy)}")
    others = [p for p in (policies or by_policy) if p != baseline]
    out = []
    for policy in others:
        for task, base_eps in by_policy[baseline].items():
            eps = by_policy.get(policy, {}).get(task)
            if eps is None:
                continue
            shared = [k for k in base_eps if k in eps]
            for metric in metrics:
                out.append(
                    _paired(
                        baseline,
                        policy,
                        task,
                        metric,
                        shared,
                        base_eps,
                        eps,
                        level=level,
                        resamples=resamples,
                        seed=seed,
                    )
                )
    return out


def _paired(baseline, policy, task, metric, shared, base_eps, eps, *, level, resamples, seed):
    if not shared:
        nan = math.nan
        return Paired(
            baseline,
            policy,
            task,
            metric,
            0,
            nan,
            nan,
            0,
            0,
            nan,
            nan,
            nan,
            nan,
            note="no shared episodes (different seeds or episode ids)",
        )
    a = [int(getattr(base_eps[k], metric)) for k in shared]
    b = [int(getattr(eps[k], metric)) for k in shared]
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    diff, low, high = paired_bootstrap(a, b, level=level, resamples=resamples, seed=seed)
    return Paired(
        baseline,
        policy,
        task,
        metric,
        len(shared),
        sum(a) / len(a),
        sum(b) / len(b),
        only_a,
        only_b,
        diff,
        low,
        high,
        mcnemar_exact(only_a, only_b),
    )


_PAIRED_FIELDS = (
    "baseline",
    "policy",
    "task",
    "axis",
    "metric",
    "n_pairs",
    "baseline_rate",
    "rate",
    "only_baseline",
    "only_policy",
    "diff",
    "diff_low",
    "diff_high",
    "mcnemar_p",
    "note",
)


def write_paired_csv(
    comparisons: Iterable[Paired],
    path: str | os.PathLike,
    *,
    task_axes: Mapping[str, str] = PAPER_TASK_AXES,
) -> Path:
    """One row per comparison; numbers of a comparison without shared episodes are "n/a"."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_PAIRED_FIELDS)
        for c in comparisons:
            nums = [
                c.baseline_rate,
                c.rate,
                c.only_baseline,
                c.only_policy,
                c.diff,
                c.low,
                c.high,
                c.p_value,
            ]
            writer.writerow(
                [c.baseline, c.policy, c.task, task_axes.get(c.task, ""), c.metric, c.n]
                + ["n/a" if c.n == 0 else repr(x) if isinstance(x, float) else x for x in nums]
                + [c.note]
            )
    return path
