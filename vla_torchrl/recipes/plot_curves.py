"""Training curves like the paper's Fig. 5/6: metrics vs environment steps (or wall clock).

Reads the ``metrics.jsonl`` of one or several runs (:class:`~vla_torchrl.training.metrics.
MetricLogger`), groups runs that differ only by seed, and plots the mean +- std over seeds on a
common x grid (each run linearly interpolated, over the x range all runs of the group cover).

Usage (Hydra overrides, :class:`~vla_torchrl.config.cli_schema.PlotCurvesConfig`,
``conf/plot_curves.yaml``)::

    python -m vla_torchrl.recipes.plot_curves runs=[runs/ppo-seed0,runs/ppo-seed1] \
        groups.GRPO=[runs/grpo-seed0,runs/grpo-seed1] metrics=[eval/success] x=env_steps \
        hlines.SFT-16k=0.78 out=fig.png

``smooth=N`` averages each run's last N logged points (trailing) before aggregating: per-iteration
training metrics over a few episodes each are otherwise too noisy to read.

A directory in ``runs`` joins the curve named after it with a trailing ``seed<N>`` removed;
``groups`` names curves explicitly. The ``--flag`` spelling of earlier releases
(``plot_curves RUN_DIR... "LABEL=DIR,DIR" --metric M --hline L=V --out fig.png``) still works
for this release, with a deprecation line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from vla_torchrl.config.cli_schema import PlotCurvesConfig, to_cli_config
from vla_torchrl.recipes._cli import Flag, hydra_quote, run_cli, translate_flags
from vla_torchrl.studies.curves import DEFAULT_METRICS, group_runs, plot_curves

__all__ = ["LEGACY_FLAGS", "main", "run"]

#: the deprecated ``--flag`` spelling (until the next release) -> the overrides
LEGACY_FLAGS = {
    "--out": Flag("out"),
    "--metric": Flag("metrics", "append"),
    "--x": Flag("x"),
    "--hline": Flag("hlines", "pairs_num"),
}
_KEYS = ("runs", "groups", "out", "metrics", "x", "hlines", "smooth", "hydra")


def run(cfg: PlotCurvesConfig) -> Path:
    """Draw the curves ``cfg`` asks for; returns the PNG."""
    groups = group_runs(list(cfg.runs))
    for label, dirs in (cfg.groups or {}).items():
        groups.setdefault(str(label), []).extend(Path(d) for d in dirs)
    return plot_curves(
        groups,
        out=cfg.out,
        metrics=list(cfg.metrics) or DEFAULT_METRICS,
        x=cfg.x,
        hlines={str(k): float(v) for k, v in (cfg.hlines or {}).items()},
        smooth=cfg.smooth,
    )


def _old_groups(left: list[str]) -> list[str]:
    """The old positional ``LABEL=DIR,DIR`` groups -> one ``groups={...}`` override."""
    groups, rest = [], []
    for item in left:
        key = item.split("=", 1)[0].lstrip("+~").split(".")[0]
        if "=" in item and key not in _KEYS:
            label, dirs = item.split("=", 1)
            paths = ",".join(hydra_quote(d) for d in dirs.split(",") if d)
            groups.append(f"{label}:[{paths}]")
        else:
            rest.append(item)
    return ([f"groups={{{','.join(groups)}}}"] if groups else []) + rest


def _legacy(argv: list[str]) -> list[str]:
    return translate_flags(
        argv,
        LEGACY_FLAGS,
        prog="plot_curves",
        positional=Flag("runs", "append"),
        rest=_old_groups,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vla_torchrl.recipes.plot_curves key=value ...`` (see the module docstring)."""

    def task(dict_cfg) -> None:
        print(run(to_cli_config(PlotCurvesConfig, dict_cfg)))

    return run_cli(
        task,
        config_name="plot_curves",
        argv=argv,
        compose=True,
        legacy=_legacy,
        open_keys=("groups", "hlines"),
    )


if __name__ == "__main__":
    sys.exit(main())
