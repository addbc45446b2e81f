"""One ``vla-torchrl-train algo=ppo`` iteration on the ManiSkill CPU scale: collect vs update.

Runs the recipe (``env=maniskill_cpu model=small``: 4 ParallelEnv workers, 96x96 camera, the
10.7M-parameter OpenVLA) for ``--iters`` iterations of ``4 x --steps`` env steps in a
subprocess, and reads the run's own ``metrics.jsonl``: median ``perf/collect_s`` and
``perf/update_s`` (first iteration dropped as warm-up) and env steps per second of the whole
iteration. ``--code`` points the subprocess at another checkout (e.g. a worktree of an older
commit), so two versions compare on the same machine; the record names its commit.

Needs the real assets (``VLA_TORCHRL_ASSETS``) or runs on the procedural stand-ins.

Usage (from the repository root)::

    python benchmarks/maniskill_ppo_iteration.py --iters 4
    python benchmarks/maniskill_ppo_iteration.py --code /path/to/old/worktree --label before
    python benchmarks/maniskill_ppo_iteration.py --envs 8 --steps 80 model.freeze_vision=true

``--envs`` sets ``env.num_envs`` (ParallelEnv workers); trailing ``key=value`` arguments are passed
to the recipe as further overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rl_common import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--steps", type=int, default=16, help="env steps per env per iteration")
    p.add_argument("--envs", type=int, default=4, help="env.num_envs (worker processes)")
    p.add_argument("overrides", nargs="*", help="further recipe overrides (key=value)")
    p.add_argument("--minibatch", type=int, default=16)
    p.add_argument("--code", default=str(ROOT), help="checkout whose vla_torchrl runs")
    p.add_argument("--label", default="")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    frames = args.envs * args.steps
    commit = subprocess.run(
        ["git", "-C", args.code, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "vla_torchrl.recipes.train",
            "--config-name",
            "train_cpu",
            "algo=ppo",
            "model=small",
            "env=maniskill_cpu",
            f"env.num_envs={args.envs}",
            f"collector.steps_per_env={args.steps}",
            f"collector.total_env_steps={frames * args.iters}",
            "collector.eval_every=0",
            f"optim.minibatch_size={args.minibatch}",
            f"optim.grad_accum_steps={frames // args.minibatch}",
            "checkpoint_every=0",
            "logger.progress_bar=false",
            f"run_dir={run_dir}",
            *args.overrides,
        ]
        env = {**os.environ, "PYTHONPATH": args.code}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=args.code)
        metrics = run_dir / "metrics.jsonl"
        if done.returncode != 0 and not metrics.is_file():
            sys.exit(f"the training run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        # an older checkout may fail after its last iteration (e.g. closing its env twice):
        # its iterations are measured, and the record keeps the exit code
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows = rows[1:] if len(rows) > 1 else rows
    collect_s = statistics.median(r["perf/collect_s"] for r in rows)
    update_s = statistics.median(r["perf/update_s"] for r in rows)
    results = {
        "commit": commit,
        "collect_s": collect_s,
        "update_s": update_s,
        "iteration_env_steps_per_s": frames / (collect_s + update_s),
        "collect_env_steps_per_s": frames / collect_s,
        "update_transitions_per_s": frames / update_s,
        "iterations_measured": len(rows),
        "run_exit_code": done.returncode,
    }
    config = {k: v for k, v in vars(args).items() if k not in ("no_record", "code")}
    record("maniskill_ppo_iteration", config, results, write=not args.no_record)


if __name__ == "__main__":
    main()
