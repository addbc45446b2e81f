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
import json
import sys
from pathlib import Path

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.report_writer import write_report
from vla_torchrl.evaluation.tables import PAPER_TASK_AXES

__all__ = ["main"]


# ------------------------------------------------------------------------------------------ CSV


# ---------------------------------------------------------------------------------- radar charts


# ---------------------------------------------------------------------------------------- report


# --------------------------------------------------------------------------- incremental results


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
