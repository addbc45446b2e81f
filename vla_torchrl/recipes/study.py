"""``vla-torchrl-study``: run one of the paper's studies and turn its logs into its figure.

Usage::

    vla-torchrl-study list                                   # the studies and their figures
    vla-torchrl-study algorithms --scale cpu --seeds 0,1 --out studies/algorithms
    vla-torchrl-study plot algorithms --out studies/algorithms   # figure + table again
    vla-torchrl-study critics --scale paper --dry-run model.checkpoint=/data/openvla-7b

A study (:mod:`vla_torchrl.studies.catalogue`) is a set of ``vla-torchrl-train`` runs: its
prerequisite runs (the SFT warm-up, once) then every variant x seed. They run one after the
other in this process (Hydra compose API, the same code path as ``vla-torchrl-train``), each in
``<out>/runs/<variant>-seed<N>``. The study is resumable: a finished run (its saved policy and
``study_run.json`` exist) is skipped, an interrupted one resumes from its last checkpoint.
Extra ``key=value`` arguments are Hydra overrides applied to every run (the variant's own
overrides come last, so the factor under study always wins). ``--dry-run`` prints the equivalent
``vla-torchrl-train`` commands instead (the paper-scale recipe).

At the end (or with ``plot``) the study's report goes to ``<out>/``: the figure ``<name>.png``,
``summary.md`` and ``summary.json`` (:mod:`vla_torchrl.studies.curves_report`); evaluation studies
(``sft_demos``, ``sft_vs_rl``) also run ``vla-torchrl-eval``'s evaluation and report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vla_torchrl.errors import UserError
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.studies.catalogue import (
    SCALES,
    STUDIES,
)
from vla_torchrl.studies.runner import _study, plan_study, plot_study, run_study

__all__ = ["cli", "main"]


# -- command line ---------------------------------------------------------------------------------
def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise UserError(f"--seeds={text!r} must be comma-separated integers, e.g. 0,1") from err


def _list() -> str:
    lines = []
    for study in STUDIES.values():
        lines.append(f"{study.name:14s} {study.figure:18s} {study.title}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("list", "-l", "--list"):
        print(_list())
        return 0
    if args[0] in ("-h", "--help"):
        print(__doc__)
        print(_list())
        return 0
    from vla_torchrl.utils import setup_logging

    setup_logging()
    if args[0] == "plot":
        parser = argparse.ArgumentParser(prog="vla-torchrl-study plot")
        parser.add_argument("name", choices=sorted(STUDIES))
        parser.add_argument("--out", required=True, help="the study's output directory")
        opts = parser.parse_args(args[1:])
        files = plot_study(opts.name, out=opts.out)
        for key, path in files.items():
            print(f"{key}: {path}")
        return 0
    parser = argparse.ArgumentParser(prog="vla-torchrl-study", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(STUDIES), help="the study (see `list`)")
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (paper: 2)")
    parser.add_argument("--out", default=None, help="output directory (default studies/NAME-SCALE)")
    parser.add_argument("--demos", default=None, help="demonstration folders (paper scale)")
    parser.add_argument("--dry-run", action="store_true", help="print the train commands only")
    parser.add_argument("--no-plot", action="store_true", help="skip the figure and summary")
    parser.add_argument(
        "--launcher",
        choices=("inprocess", "subprocess"),
        default="inprocess",
        help="train in this process, or each run in its own (clean per-run peak memory)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run")
    opts = parser.parse_intermixed_args(args)
    out = opts.out or f"studies/{opts.name}-{opts.scale}"
    seeds = _seeds(opts.seeds)
    if opts.dry_run:
        runs = plan_study(
            _study(opts.name),
            scale=opts.scale,
            seeds=seeds,
            out=out,
            overrides=opts.overrides,
            demos=opts.demos or "$DEMOS",  # printed as a shell variable
        )
        for run in runs:
            print(run.command())
        return 0
    files = run_study(
        opts.name,
        scale=opts.scale,
        seeds=seeds,
        out=out,
        overrides=opts.overrides,
        demos=opts.demos,
        plot=not opts.no_plot,
        launcher=opts.launcher,
    )
    for key, path in files.items():
        print(f"{key}: {path}")
    return 0


def cli() -> int:
    """Console entry point: user errors end in one line (``--debug`` shows the traceback)."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
