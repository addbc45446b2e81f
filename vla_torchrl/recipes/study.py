"""``vla-torchrl-study``: run one of the paper's studies and turn its logs into its figure.

Usage (Hydra overrides, :class:`~vla_torchrl.config.cli_schema.StudyConfig`,
``conf/study.yaml``; the first bare word is the study's name)::

    vla-torchrl-study list                                   # the studies and their figures
    vla-torchrl-study algorithms scale=cpu seeds=[0,1] out=studies/algorithms
    vla-torchrl-study plot algorithms out=studies/algorithms   # figure + table again
    vla-torchrl-study critics scale=paper action=dry_run train.model.checkpoint=/data/openvla-7b

A study (:mod:`vla_torchrl.studies.catalogue`) is a set of ``vla-torchrl-train`` runs: its
prerequisite runs (the SFT warm-up, once) then every variant x seed. They run one after the
other in this process (Hydra compose API, the same code path as ``vla-torchrl-train``), each in
``<out>/runs/<variant>-seed<N>``. The study is resumable: a finished run (its saved policy and
``study_run.json`` exist) is skipped, an interrupted one resumes from its last checkpoint.
Arguments ``train.KEY=VALUE`` are Hydra overrides ``KEY=VALUE`` applied to every run (the
variant's own overrides come last, so the factor under study always wins). ``action=dry_run``
prints the equivalent ``vla-torchrl-train`` commands instead (the paper-scale recipe). The
``--flag`` spelling of earlier releases (``--scale cpu --seeds 0,1 --dry-run KEY=VALUE``) still
works for this release, with a deprecation line.

At the end (or with ``plot``) the study's report goes to ``<out>/``: the figure ``<name>.png``,
``summary.md`` and ``summary.json`` (:mod:`vla_torchrl.studies.curves_report`); evaluation studies
(``sft_demos``, ``sft_vs_rl``) also run ``vla-torchrl-eval``'s evaluation and report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vla_torchrl.config.cli_schema import StudyConfig, to_cli_config
from vla_torchrl.errors import UserError
from vla_torchrl.recipes._cli import Flag, hydra_quote, run_cli, translate_flags
from vla_torchrl.studies.catalogue import STUDIES
from vla_torchrl.studies.runner import _study, plan_study, plot_study, run_study

__all__ = ["LEGACY_FLAGS", "cli", "main", "run"]

#: the deprecated ``--flag`` spelling (until the next release) -> the overrides
LEGACY_FLAGS = {
    "--scale": Flag("scale"),
    "--seeds": Flag("seeds", "csv_num"),
    "--out": Flag("out"),
    "--demos": Flag("demos"),
    "--dry-run": Flag("action", "on", const="dry_run"),
    "--no-plot": Flag("plot", "off"),
    "--launcher": Flag("launcher"),
}


def _list() -> str:
    lines = []
    for study in STUDIES.values():
        lines.append(f"{study.name:14s} {study.figure:18s} {study.title}")
    return "\n".join(lines)


def run(cfg: StudyConfig) -> int:
    """Run, plot or print study ``cfg.name`` as ``cfg.action`` says."""
    out = cfg.out or f"studies/{cfg.name}-{cfg.scale}"
    if cfg.action == "dry_run":
        runs = plan_study(
            _study(cfg.name),
            scale=cfg.scale,
            seeds=list(cfg.seeds),
            out=out,
            overrides=list(cfg.train),
            demos=cfg.demos or "$DEMOS",  # printed as a shell variable
        )
        for r in runs:
            print(r.command())
        return 0
    if cfg.action == "plot":
        files = plot_study(cfg.name, out=out)
    else:
        files = run_study(
            cfg.name,
            scale=cfg.scale,
            seeds=list(cfg.seeds),
            out=out,
            overrides=list(cfg.train),
            demos=cfg.demos,
            plot=cfg.plot,
            launcher=cfg.launcher,
        )
    for key, path in files.items():
        print(f"{key}: {path}")
    return 0


def _words_and_train(args: list[str]) -> list[str]:
    """The bare words (``NAME`` or ``plot NAME``) and the ``train.KEY=VALUE`` arguments as
    overrides of the study config: ``name=NAME``, ``action=plot``, ``train=[...]``."""
    words = [a for a in args if "=" not in a and not a.startswith("-")]
    train = [a.split("train.", 1)[1] for a in args if a.lstrip("+").startswith("train.")]
    rest = [a for a in args if a not in words and not a.lstrip("+").startswith("train.")]
    out = []
    if words[:1] == ["plot"]:
        out.append("action=plot")
        words = words[1:]
    if len(words) > 1:
        raise UserError(
            f"unexpected argument(s) {words[1:]}: give the study's name once, then key=value "
            "overrides (train.KEY=VALUE for the training runs)"
        )
    if words:
        out.append(f"name={hydra_quote(words[0])}")
    if train:
        out.append(f"train=[{','.join(hydra_quote(t) for t in train)}]")
    return out + rest


def _prepare(args: list[str]) -> list[str]:
    # the old spelling: trailing KEY=VALUE arguments were overrides of the training runs
    legacy = translate_flags(
        args,
        LEGACY_FLAGS,
        prog="vla-torchrl-study",
        rest=lambda left: [f"train.{a}" if "=" in a else a for a in left],
    )
    return _words_and_train(legacy)


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

    def task(dict_cfg) -> int:
        from vla_torchrl.utils import setup_logging

        setup_logging()
        return run(to_cli_config(StudyConfig, dict_cfg))

    return run_cli(task, config_name="study", argv=args, compose=True, legacy=_prepare)


def cli() -> int:
    """Console entry point: user errors end in one line (``--debug`` shows the traceback)."""
    return main()


if __name__ == "__main__":
    sys.exit(cli())
