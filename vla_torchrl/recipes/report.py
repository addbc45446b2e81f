"""Evaluation report: per-task metrics over seeds, relative drops, paper-style tables and radars.

Input: per-episode records ``(policy, task, seed, episode_id, grasped, continuous_grasp,
success)`` from a list, a CSV or a JSONL file (:func:`load_results`), or the incremental
results file of an evaluation (:class:`IncrementalResults`). For each (policy, task) and metric,
the per-seed value is the mean over that seed's episodes and the reported value is the mean and
standard deviation over seeds (``ddof=0`` by default; the paper's Tables 1-3 are consistent with
the population std over its 3 seeds). The relative drop of Sec. 5.3 is ``(OOD - IND) / IND``.

Command line (Hydra overrides, :class:`~vla_torchrl.config.cli_schema.ReportConfig`,
``conf/report.yaml``)::

    vla-torchrl-report results=runs/eval/episodes.jsonl out=runs/eval/report \
        policies=[SFT,RL] [task_axes=axes.json]

``results=[a/episodes.jsonl,b/episodes.jsonl]`` reports several evaluations together: e.g. a
new checkpoint evaluated on the episodes an earlier evaluation gave the baseline (same tasks,
seeds, episode counts and env settings), paired episode by episode.
``seeds=[1000]`` reports one slice of the evaluation seeds (e.g. 64 of 256 episodes).
``'runs={SFT:[SFT],RL:[PPO-s0,PPO-s1]}'`` adds each method's mean (std) over its training
runs, per task and axis (:mod:`~vla_torchrl.evaluation.training_runs`), and ``runs.csv``.

(``python -m vla_torchrl.recipes.report`` is the same; the ``--flag`` spelling of earlier
releases, ``report RESULTS --out DIR --policies SFT,RL``, still works for this release, with a
deprecation line.)

Outputs (:func:`write_report`): ``report.md`` with one table per axis in the layout of the
paper's Tables 1-3 (rows = tasks with IND first and their episode count n, column groups Acc. /
Cont. Acc. / Suc. with one sub-column per policy, "0.922 (.013) [.851, .962]" cells: mean (std)
over seeds and the 95% Wilson interval, best per group in bold), a per-axis summary like
Fig. 7a and the paired comparison of each policy with the first on the same episodes (paired
bootstrap interval of the difference, exact McNemar p); ``summary.csv`` (long format with n and
both intervals, readable back with
:func:`~vla_torchrl.evaluation.tables.read_summary_csv`), ``table_<axis>.csv``,
``paired.csv``, ``drops.csv`` ("n/a" with the reason where IND is 0); and radar charts like
Fig. 7b/7c
(``radar_success.png``, ``radar_ood_ind_ratio.png``) and grouped success bars annotated
with the relative drop like Fig. 7a (``bars_success.png``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vla_torchrl.config.cli_schema import ReportConfig, to_cli_config
from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.report_writer import write_report
from vla_torchrl.evaluation.results import merge_results
from vla_torchrl.evaluation.tables import PAPER_TASK_AXES
from vla_torchrl.recipes._cli import Flag, run_cli, translate_flags

__all__ = ["LEGACY_FLAGS", "cli", "main", "run"]

#: the deprecated ``--flag`` spelling (until the next release) -> the overrides
LEGACY_FLAGS = {
    "--out": Flag("out"),
    "--policies": Flag("policies", "csv_str"),
    "--task-axes": Flag("task_axes"),
    "--ind-task": Flag("ind_task"),
    "--ddof": Flag("ddof", "num"),
}


def run(cfg: ReportConfig) -> dict[str, Path]:
    """Write the report ``cfg`` asks for; returns its files."""
    task_axes = PAPER_TASK_AXES
    if cfg.task_axes:
        try:
            task_axes = json.loads(Path(cfg.task_axes).read_text())
        except (OSError, ValueError) as err:
            raise UserError(
                f"task_axes={cfg.task_axes}: cannot read a JSON mapping ({err})"
            ) from err
    results = merge_results([cfg.results] if isinstance(cfg.results, str) else cfg.results)
    if cfg.seeds:
        present = sorted({r.seed for r in results})
        results = [r for r in results if r.seed in set(cfg.seeds)]
        if not results:
            raise UserError(
                f"seeds={list(cfg.seeds)}: no episode of these seeds in the results (their "
                f"seeds: {present}); pick some of those, or seeds=[] for all"
            )
    return write_report(
        results,
        cfg.out,
        task_axes=task_axes,
        policies=list(cfg.policies) or None,
        ind_task=cfg.ind_task,
        ddof=cfg.ddof,
        resamples=cfg.resamples,
        runs=cfg.runs,
    )


def _legacy(argv: list[str]) -> list[str]:
    return translate_flags(
        argv,
        LEGACY_FLAGS,
        prog="vla-torchrl-report",
        positional=Flag("results"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``vla-torchrl-report key=value ...``: write the report of a results file."""

    def task(dict_cfg) -> None:
        files = run(to_cli_config(ReportConfig, dict_cfg))
        print(files["report.md"])

    return run_cli(task, config_name="report", argv=argv, compose=True, legacy=_legacy)


def cli() -> int:
    """Console entry point (``vla-torchrl-report``)."""
    return main()


if __name__ == "__main__":
    sys.exit(cli())
