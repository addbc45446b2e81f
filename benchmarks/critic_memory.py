"""Peak memory of a PPO update: shared-backbone vs separate-backbone critic, +/- checkpointing.

Each configuration runs in its own subprocess (a fresh allocator): build the policy, collect a
small rollout, then measure the peak during one PPO update (GAE, minibatch evaluator forward +
backward, AdamW step):

* on CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the figure to
  compare with the paper's 44.4 GB shared vs 81.3 GB separate, 7B model);
* on the CPU (**a proxy**): the process's peak resident set during the update minus the resident
  set before it (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``). It counts the
  activations, gradients and optimizer state the update adds, plus allocator noise; it is only
  indicative of the ratio, on the tiny model.

Usage::

    python benchmarks/critic_memory.py                       # tiny, CPU proxy
    python benchmarks/critic_memory.py --model random --device cuda --dtype bfloat16 \\
        --num-envs 8 --steps 2 --minibatch 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from _rl_common import collect, ppo_update, record, setup, sync


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args) -> dict[str, float]:
    torch.set_num_threads(1)
    device = torch.device(args.device)
    bundle, env = setup(
        model=args.model,
        critic=args.critic,
        device=args.device,
        dtype=args.dtype,
        num_envs=args.num_envs,
        steps=args.steps,
        gradient_checkpointing=args.gc,
    )
    rollout = collect(bundle, env, args.steps)
    optim = torch.optim.AdamW(bundle.param_groups)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        ppo_update(bundle, rollout, optim, minibatch=args.minibatch, accumulation=1, device=device)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_bytes": peak, "update_added_bytes": peak - base, "kind": "cuda_allocated"}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _rss_kib("VmRSS")
    ppo_update(bundle, rollout, optim, minibatch=args.minibatch, accumulation=1, device=device)
    peak = _rss_kib("VmHWM")
    return {
        "peak_bytes": peak * 1024,
        "update_added_bytes": (peak - base) * 1024,
        "kind": "cpu_rss_proxy",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["tiny", "random"], default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--minibatch", type=int, default=32)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--critic", default="shared", help=argparse.SUPPRESS)
    p.add_argument("--gc", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    results: dict[str, float | str] = {}
    base_cmd = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        args.model,
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--num-envs",
        str(args.num_envs),
        "--steps",
        str(args.steps),
        "--minibatch",
        str(args.minibatch),
    ]
    for critic in ("shared", "separate"):
        for gc in (False, True):
            cmd = base_cmd + ["--critic", critic] + (["--gc"] if gc else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            name = f"{critic}{'_gc' if gc else ''}"
            results[f"{name}_peak_mb"] = r["peak_bytes"] / 2**20
            results[f"{name}_update_added_mb"] = r["update_added_bytes"] / 2**20
            results["measure"] = r["kind"]
    results["separate_over_shared_added"] = (
        results["separate_update_added_mb"] / results["shared_update_added_mb"]
    )
    config = {k: v for k, v in vars(args).items() if k not in ("child", "critic", "gc")}
    record("critic_memory", config, results, write=not args.no_record)


if __name__ == "__main__":
    main()
