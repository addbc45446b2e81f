"""Plan, run (resumably) and report one of the paper's studies; the library side of ``vla-torchrl-study``.

A study (:mod:`vla_torchrl.studies.catalogue`) is a set of ``vla-torchrl-train`` runs: its
prerequisite runs (the SFT warm-up, once) then every variant x seed, each in
``<out>/runs/<variant>-seed<N>``, run in this process (Hydra compose API, the same code path as
``vla-torchrl-train``) or each in its own. A finished run (its saved policy and
``study_run.json`` exist) is skipped, an interrupted one resumes from its last checkpoint. The
report goes to ``<out>/`` (:mod:`vla_torchrl.studies.curves_report`,
:mod:`vla_torchrl.studies.eval_reports`).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from vla_torchrl.errors import UserError
from vla_torchrl.studies.catalogue import (
    SCALES,
    Scale,
    Study,
    base_overrides,
    config_name,
    get_study,
)
from vla_torchrl.studies.curves_report import RUN_INFO_FILE, write_curves_report
from vla_torchrl.training.paths import POLICY_DIR

__all__ = [
    "PLAN_FILE",
    "POLICY_DIR",
    "PlannedRun",
    "execute_run",
    "execute_run_subprocess",
    "is_finished",
    "plan_study",
    "plot_study",
    "run_study",
]

_log = logging.getLogger("vla_torchrl.recipes.study")


PLAN_FILE = "study.json"


@dataclass(frozen=True)
class PlannedRun:
    """One ``vla-torchrl-train`` run of a study.

    Args:
        role: ``prerequisite`` (e.g. the SFT warm-up) or ``variant``.
        label: the variant's legend entry, or the prerequisite's name.
        seed: the run's seed.
        run_dir: its directory.
        config_name: ``train`` or ``train_cpu``.
        overrides: every Hydra override, in order (``seed`` and ``run_dir`` included).
    """

    role: str
    label: str
    seed: int
    run_dir: str
    config_name: str
    overrides: tuple[str, ...]

    @property
    def policy_dir(self) -> Path:
        """Where the run saves its final policy."""
        return Path(self.run_dir) / POLICY_DIR

    def command(self) -> str:
        """The equivalent ``vla-torchrl-train`` command line."""
        args = ["vla-torchrl-train", "--config-name", self.config_name, *self.overrides]
        return _join(args)


def _join(args: Sequence[str]) -> str:
    """A shell command line; ``$VARS`` stay expandable.

    Examples:
        >>> _join(["a", "algo.demos=$DEMOS/140", "x y"])
        "a algo.demos=$DEMOS/140 'x y'"
    """
    safe = re.compile(r"[\w@%+=:,./${}^-]+")
    return " ".join(a if safe.fullmatch(a) else shlex.quote(a) for a in args)


def _slug(label: str) -> str:
    """A directory name for a label.

    Examples:
        >>> _slug("GRPO(s) whole (Eq. 5-6)")
        'grpo-s-whole-eq-5-6'
    """
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def plan_study(
    study: Study,
    *,
    scale: Scale,
    seeds: Sequence[int],
    out: str | Path,
    overrides: Sequence[str] = (),
    demos: str | None = None,
) -> list[PlannedRun]:
    """The runs of ``study``: prerequisites (first seed) then every variant x seed.

    Examples:
        >>> from vla_torchrl.studies.catalogue import STUDIES
        >>> runs = plan_study(STUDIES["epochs"], scale="tiny", seeds=[0, 1], out="/s")
        >>> [(r.role, r.label, r.seed) for r in runs][:3]
        [('prerequisite', 'warmup', 0), ('variant', 'epoch 1', 0), ('variant', 'epoch 1', 1)]
        >>> [o for o in runs[1].overrides if "init_from" in o or "epochs" in o]
        ['algo.epochs=1', 'model.init_from=/s/runs/warmup/policy']
    """
    if scale not in SCALES:
        raise UserError(f"scale={scale!r} is unknown; use one of {', '.join(SCALES)}")
    if not seeds:
        raise UserError("seeds is empty; give at least one seed, e.g. seeds=[0,1]")
    out = Path(out).resolve() if not str(out).startswith("/") else Path(out)
    cfg_name = config_name(scale)
    base = (*base_overrides(scale), *overrides)
    prereqs = study.prerequisites(scale)
    paths = {name: str(out / "runs" / name / POLICY_DIR) for name in prereqs}

    def resolve(items: Sequence[str]) -> tuple[str, ...]:
        resolved = []
        for item in items:
            for name, path in paths.items():
                item = item.replace(f"{{run:{name}}}", path)
            if "{demos}" in item:
                if not demos:
                    raise UserError(
                        f"study {study.name!r} at scale {scale!r} reads demonstrations ({item}); "
                        "pass demos=DIR (folders written by vla-torchrl-collect)"
                    )
                item = item.replace("{demos}", demos)
            if "{run:" in item:
                raise UserError(f"override {item!r} names an unknown prerequisite run")
            resolved.append(item)
        return tuple(resolved)

    runs = [
        PlannedRun(
            "prerequisite",
            name,
            seeds[0],
            str(out / "runs" / name),
            cfg_name,
            resolve((*base, *extra, f"seed={seeds[0]}", f"run_dir={out / 'runs' / name}")),
        )
        for name, extra in prereqs.items()
    ]
    labels = set()
    for variant in study.variants(scale):
        if _slug(variant.label) in labels:
            raise UserError(f"study {study.name!r} has two variants named like {variant.label!r}")
        labels.add(_slug(variant.label))
        for seed in seeds:
            run_dir = out / "runs" / f"{_slug(variant.label)}-seed{seed}"
            runs.append(
                PlannedRun(
                    "variant",
                    variant.label,
                    seed,
                    str(run_dir),
                    cfg_name,
                    resolve((*base, *variant.overrides, f"seed={seed}", f"run_dir={run_dir}")),
                )
            )
    return runs


def is_finished(run: PlannedRun) -> bool:
    """Whether ``run`` has finished (its policy and the runner's record exist)."""
    info = Path(run.run_dir) / RUN_INFO_FILE
    return (run.policy_dir / "policy.json").is_file() and info.is_file()


# -- running ------------------------------------------------------------------------------------
def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident set (Linux ``clear_refs``); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def execute_run(run: PlannedRun) -> dict[str, Any]:
    """Train ``run`` in this process (resuming it if interrupted); write ``study_run.json``.

    Memory: on CUDA the peak allocated memory of the run; on the CPU the peak resident set of
    the process during the run (Linux ``VmHWM`` after a reset: a proxy that includes the
    interpreter and libraries).
    """
    import torch

    from vla_torchrl.config.load import compose_config
    from vla_torchrl.training.loop import train

    cfg = compose_config(list(run.overrides), config_name=run.config_name)
    cuda = torch.cuda.is_available() and str(cfg.device) != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_reset = _reset_peak_rss()
    rss_before = _rss_kib("VmRSS")
    start = time.perf_counter()
    train(cfg)
    info: dict[str, Any] = {
        **asdict(run),
        "command": run.command(),
        "launcher": "inprocess",
        "wall_s": round(time.perf_counter() - start, 3),
        "finished_unix": time.time(),
    }
    peak = _rss_kib("VmHWM") if rss_reset else None
    if peak is not None and rss_before is not None:
        info["rss_peak_mb"] = round(peak / 1024, 1)
        info["rss_before_mb"] = round(rss_before / 1024, 1)
    if cuda:
        info["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    (Path(run.run_dir) / RUN_INFO_FILE).write_text(json.dumps(info, indent=1))
    return info


def execute_run_subprocess(run: PlannedRun) -> dict[str, Any]:
    """Train ``run`` in a fresh ``vla-torchrl-train`` process; write ``study_run.json``.

    Memory: the child's peak resident set (``wait4``'s ``ru_maxrss``): per run, unaffected by
    what earlier runs left in this process's allocator.
    """
    import os
    import subprocess

    cmd = [sys.executable, "-m", "vla_torchrl.recipes.train", "--config-name", run.config_name]
    start = time.perf_counter()
    proc = subprocess.Popen([*cmd, *run.overrides])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise UserError(
            f"run {run.label!r} seed {run.seed} failed (exit status {proc.returncode}): "
            f"{run.command()}; fix the cause and re-run the study (finished runs are kept)"
        )
    info: dict[str, Any] = {
        **asdict(run),
        "command": run.command(),
        "launcher": "subprocess",
        "wall_s": round(time.perf_counter() - start, 3),
        "finished_unix": time.time(),
        "rss_peak_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    }
    (Path(run.run_dir) / RUN_INFO_FILE).write_text(json.dumps(info, indent=1))
    return info


def run_study(
    name: str,
    *,
    scale: Scale = "cpu",
    seeds: Sequence[int] = (0, 1),
    out: str | Path,
    overrides: Sequence[str] = (),
    demos: str | None = None,
    plot: bool = True,
    launcher: Literal["inprocess", "subprocess"] = "inprocess",
) -> dict[str, Path]:
    """Run (or continue) study ``name`` and write its report; returns the report's files.

    ``launcher="subprocess"`` trains each run in its own process (clean per-run peak memory,
    a few seconds of start-up each); ``"inprocess"`` (default) reuses this one.
    """
    if launcher not in ("inprocess", "subprocess"):
        raise UserError(f"launcher={launcher!r} is unknown; use inprocess or subprocess")
    study = _study(name)
    out_arg, out = str(out), Path(out).resolve()
    runs = plan_study(study, scale=scale, seeds=seeds, out=out, overrides=overrides, demos=demos)
    out.mkdir(parents=True, exist_ok=True)
    command = _join(
        [
            "vla-torchrl-study",
            name,
            f"scale={scale}",
            f"seeds=[{','.join(map(str, seeds))}]",
            f"out={out_arg}",
            *([f"demos={demos}"] if demos else []),
            *([f"launcher={launcher}"] if launcher != "inprocess" else []),
            *(f"train.{o}" for o in overrides),
        ]
    )
    plan = {
        "study": name,
        "scale": scale,
        "seeds": list(seeds),
        "command": command,
        "runs": [asdict(r) for r in runs],
    }
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=1))
    for i, run in enumerate(runs, start=1):
        if is_finished(run):
            _log.info("[%d/%d] %s seed %d: finished, skipped", i, len(runs), run.label, run.seed)
            continue
        _log.info("[%d/%d] %s seed %d: %s", i, len(runs), run.label, run.seed, run.command())
        (execute_run if launcher == "inprocess" else execute_run_subprocess)(run)
    return plot_study(name, out=out) if plot else {}


def _study(name: str) -> Study:
    try:
        return get_study(name)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None


def _load_plan(out: Path) -> dict[str, Any]:
    path = out / PLAN_FILE
    if not path.is_file():
        raise UserError(
            f"{path} does not exist; run the study first (vla-torchrl-study NAME out={out})"
        )
    return json.loads(path.read_text())


def plot_study(name: str, *, out: str | Path) -> dict[str, Path]:
    """Turn the logs of study ``name`` in ``out`` into its figure and summary."""
    study = _study(name)
    out = Path(out).resolve()
    plan = _load_plan(out)
    if plan["study"] != name:
        raise UserError(f"{out} holds study {plan['study']!r}, not {name!r}")
    # runs live in <out>/runs/: found there even when the study folder was moved or cloned
    runs = [
        PlannedRun(
            **{
                **r,
                "overrides": tuple(r["overrides"]),
                "run_dir": str(out / "runs" / Path(r["run_dir"]).name),
            }
        )
        for r in plan["runs"]
    ]
    variants = [r for r in runs if r.role == "variant"]
    title = f"{study.figure}: {study.title} ({plan['scale']} scale)"
    common = {"name": name, "title": title, "command": plan["command"], "seeds": plan["seeds"]}
    if study.kind == "curves":
        groups: dict[str, list[str]] = {}
        for run in variants:
            groups.setdefault(run.label, []).append(run.run_dir)
        return write_curves_report(
            groups, out, metrics=study.metrics, x_axes=study.x_axes, notes=study.notes, **common
        )
    from vla_torchrl.studies import eval_reports as study_eval

    if study.kind == "sft_eval":
        return study_eval.sft_eval_report(study, variants, out, plan["scale"], **common)
    if study.kind == "sft_vs_rl":
        prereq = next(r for r in runs if r.role == "prerequisite")
        return study_eval.sft_vs_rl_report(prereq, variants, out, plan["scale"], **common)
    if study.kind == "coverage":
        prereq = next(r for r in runs if r.role == "prerequisite")
        return study_eval.coverage_report(prereq, variants, out, notes=study.notes, **common)
    raise UserError(f"study kind {study.kind!r} has no report")
