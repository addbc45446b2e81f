"""Training curves like the paper's Fig. 5/6: metrics vs environment steps (or wall clock).

Reads the ``metrics.jsonl`` of one or several runs (:class:`~vla_torchrl.training.metrics.
MetricLogger`), groups runs that differ only by seed, and plots the mean +- std over seeds on a
common x grid (each run linearly interpolated, over the x range all runs of the group cover).

Usage::

    python -m vla_torchrl.recipes.plot_curves runs/ppo-seed0 runs/ppo-seed1 \\
        "GRPO=runs/grpo-seed0,runs/grpo-seed1" --metric eval/success --x env_steps \\
        --hline SFT-16k=0.78 --out fig.png

A plain RUN_DIR joins the group named after it with a trailing ``seed<N>`` removed;
``LABEL=DIR,DIR`` names a group explicitly.
"""

from __future__ import annotations

import argparse
import sys

from vla_torchrl.errors import UserError
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.studies.curves import _X_FIELD, DEFAULT_METRICS, group_runs, plot_curves

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m vla_torchrl.recipes.plot_curves", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("runs", nargs="+", help="RUN_DIR or LABEL=DIR,DIR (seeds of one setting)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument(
        "--metric", action="append", help=f"metric to plot (repeatable; default {DEFAULT_METRICS})"
    )
    parser.add_argument("--x", choices=sorted(_X_FIELD), default="env_steps")
    parser.add_argument(
        "--hline", action="append", default=[], help="reference level LABEL=VALUE (repeatable)"
    )
    args = parser.parse_args(argv)
    hlines = {}
    for item in args.hline:
        label, _, value = item.rpartition("=")
        try:
            hlines[label or value] = float(value)
        except ValueError as err:
            raise UserError(f"--hline {item!r}: expected LABEL=NUMBER, e.g. SFT-16k=0.78") from err
    path = plot_curves(
        group_runs(args.runs),
        out=args.out,
        metrics=args.metric or DEFAULT_METRICS,
        x=args.x,
        hlines=hlines,
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
