"""Env steps/s of make_env("ind") (CPU sim + CPU render) for several num_envs and image sizes.

Prints one JSON record per configuration and appends it to benchmarks/results.jsonl.
Usage: python benchmarks/env_throughput.py [--num-envs 1 4 16] [--sizes 480x640 224x224] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vla_torchrl.envs.builder import make_env


def run(num_envs: int, size: tuple[int, int], steps: int, parallel: bool) -> dict:
    t0 = time.perf_counter()
    env = make_env("ind", num_envs=num_envs, image_size=size, parallel=parallel)
    build_s = time.perf_counter() - t0
    try:
        td = env.reset()
        env.rollout(3, break_when_any_done=False, auto_reset=False, tensordict=td)  # warm-up
        t0 = time.perf_counter()
        env.rollout(steps, break_when_any_done=False)
        dt = time.perf_counter() - t0
    finally:
        env.close()
    import mani_skill
    import torchrl

    return {
        "benchmark": "env_throughput",
        "task": "ind",
        "num_envs": num_envs,
        "image_size": list(size),
        "parallel": parallel,
        "steps_per_env": steps,
        "aggregate_steps_per_s": num_envs * steps / dt,
        "build_s": build_s,
        "device": "cpu",
        "cpus": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "versions": {
            "torch": torch.__version__,
            "torchrl": torchrl.__version__,
            "mani_skill": mani_skill.__version__,
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sizes", nargs="+", default=["480x640", "224x224"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--serial", action="store_true", help="SerialEnv instead of ParallelEnv")
    args = parser.parse_args()
    out = Path(__file__).with_name("results.jsonl")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for n in args.num_envs:
            rec = run(n, (h, w), args.steps, parallel=not args.serial and n > 1)
            print(json.dumps(rec))
            with out.open("a") as f:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
