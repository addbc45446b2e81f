"""Rollout throughput (env steps/s: actor + env) and PPO update throughput (transitions/s).

Rollout: ``env.rollout(T, actor)`` on ``B`` envs (actor = preprocess + prefill + 7 cached decode
steps + value). Update: GAE + one epoch of PPO minibatches (evaluator forward + backward,
optimizer step every ``--accumulation`` minibatches). Medians over ``--iters`` rounds.

Usage::

    python benchmarks/rollout_update_throughput.py --model tiny --num-envs 8 --steps 10
    # paper batch shape on a GPU (7B-layout random weights, bf16): 64 envs x 80 steps,
    # minibatch 8 x 20 accumulation
    python benchmarks/rollout_update_throughput.py --model random --device cuda \\
        --dtype bfloat16 --num-envs 64 --steps 80 --minibatch 8 --accumulation 20 --iters 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _rl_common import collect, ppo_update, record, setup, sync


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["tiny", "random"], default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--minibatch", type=int, default=8)
    p.add_argument("--accumulation", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bundle, env = setup(
        model=args.model,
        critic="shared",
        device=args.device,
        dtype=args.dtype,
        num_envs=args.num_envs,
        steps=args.steps,
    )
    optim = torch.optim.AdamW(bundle.param_groups)
    rollout_s, update_s = [], []
    for i in range(args.iters + 1):  # first round = warm-up
        sync(device)
        t0 = time.perf_counter()
        rollout = collect(bundle, env, args.steps)
        sync(device)
        t1 = time.perf_counter()
        n = ppo_update(
            bundle,
            rollout,
            optim,
            minibatch=args.minibatch,
            accumulation=args.accumulation,
            device=device,
        )
        sync(device)
        t2 = time.perf_counter()
        if i:
            rollout_s.append(t1 - t0)
            update_s.append(t2 - t1)
    transitions = args.num_envs * args.steps
    results = {
        "rollout_s": statistics.median(rollout_s),
        "rollout_env_steps_per_s": transitions / statistics.median(rollout_s),
        "update_s": statistics.median(update_s),
        "update_transitions_per_s": n / statistics.median(update_s),
    }
    record("rollout_update_throughput", vars(args), results, write=not args.no_record)


if __name__ == "__main__":
    main()
