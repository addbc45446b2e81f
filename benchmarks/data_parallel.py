"""Data-parallel scaling of ``vla-torchrl-train``: 1 process vs ``torchrun`` with N ranks.

Weak scaling: every process runs the same per-rank config (``--num-envs`` envs x ``--steps``
steps, PPO, toy env, tiny model), so N ranks collect N times the env steps per iteration. The
figures come from the run's own ``metrics.jsonl``: wall time per iteration (``elapsed_s``
differences, the first iteration dropped as warm-up) and global env steps per second. On the
CPU, ranks share the machine's cores (1 torch thread each), so the figure is an upper bound on
communication + coordination cost, not a GPU scaling figure.

Usage (from the repository root)::

    python benchmarks/data_parallel.py --ranks 1 2 --iters 4
    python benchmarks/data_parallel.py --ranks 1 8 --device cuda --config train ...  # GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rl_common import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(ranks: int, args: argparse.Namespace, run_dir: Path) -> dict[str, float]:
    frames = args.num_envs * args.steps * ranks
    train = [
        "-m",
        "vla_torchrl.recipes.train",
        "--config-name",
        "train_cpu",
        f"device={args.device}",
        f"env.num_envs={args.num_envs}",
        f"collector.steps_per_env={args.steps}",
        f"env.max_episode_steps={args.steps}",
        f"env.width={args.image_size}",
        f"env.height={args.image_size}",
        f"optim.minibatch_size={args.minibatch}",
        f"optim.grad_accum_steps={args.num_envs * args.steps // args.minibatch}",
        f"collector.total_env_steps={frames * args.iters}",
        "checkpoint_every=0",
        "logger.progress_bar=false",
        f"run_dir={run_dir}",
    ]
    launcher = (
        [
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={ranks}",
            "--master-addr=127.0.0.1",
            f"--master-port={_free_port()}",
        ]
        if ranks > 1
        else []
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run([sys.executable, *launcher, *train], env=env, check=True, capture_output=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:], strict=False)]
    iteration_s = sorted(times)[len(times) // 2]
    return {
        f"r{ranks}_iteration_s": iteration_s,
        f"r{ranks}_env_steps_per_iteration": frames,
        f"r{ranks}_env_steps_per_s": frames / iteration_s,
        f"r{ranks}_update_s": sorted(r["perf/update_s"] for r in rows[1:])[(len(rows) - 1) // 2],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--minibatch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.ranks:
            results.update(run(ranks, args, Path(tmp) / f"r{ranks}"))
    base = min(args.ranks)
    for ranks in args.ranks:
        if ranks != base:
            results[f"throughput_r{ranks}_over_r{base}"] = (
                results[f"r{ranks}_env_steps_per_s"] / results[f"r{base}_env_steps_per_s"]
            )
    config = {k: v for k, v in vars(args).items() if k != "no_record"}
    record("data_parallel", config, results, write=not args.no_record)


if __name__ == "__main__":
    main()
