"""Framework overhead: a full PPO iteration vs the sum of its raw parts, in the same run.

The iteration is ``env.rollout(T, actor)`` (TorchRL collection) + GAE + one PPO epoch. During it,
the raw parts are timed in place: every actor call, every env ``_step``/``_reset``, every
evaluator forward, every ``backward`` and optimizer step. ``overhead = total / sum(parts)``
(target: <= 1.15). Medians over ``--iters`` iterations after one warm-up.

Usage::

    python benchmarks/framework_overhead.py --num-envs 8 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _rl_common import record, setup

from vla_torchrl.keys import ADVANTAGE_KEY
from vla_torchrl.objectives import GAEAdvantage, VLAPPOLoss
from vla_torchrl.objectives import functional as F


def _timed(obj, name: str, acc: list[float]) -> None:
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[0] += time.perf_counter() - t

    setattr(obj, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--minibatch", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle, env = setup(
        model="tiny",
        critic="shared",
        device="cpu",
        dtype="float32",
        num_envs=args.num_envs,
        steps=args.steps,
    )
    optim = torch.optim.AdamW(bundle.param_groups)
    parts = [0.0]
    _timed(bundle.actor, "forward", parts)
    _timed(bundle.evaluator, "forward", parts)
    _timed(env, "_step", parts)
    _timed(env, "_reset", parts)
    totals, raw = [], []
    for i in range(args.iters + 1):
        parts[0] = 0.0
        t0 = time.perf_counter()
        with torch.no_grad():
            rollout = env.rollout(args.steps, bundle.actor, break_when_any_done=False)
        rollout = GAEAdvantage(value_network=bundle.actor)(rollout)
        loss_fn = VLAPPOLoss(bundle.evaluator)
        loss_fn.advantage_stats_fn = F.frozen_advantage_stats(rollout[ADVANTAGE_KEY])
        for mb in rollout.reshape(-1).split(args.minibatch):
            losses = loss_fn(mb)
            total = sum(v for k, v in losses.items() if k.startswith("loss_"))
            t = time.perf_counter()
            total.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            parts[0] += time.perf_counter() - t
        elapsed = time.perf_counter() - t0
        if i:
            totals.append(elapsed)
            raw.append(parts[0])
    ratios = [t / r for t, r in zip(totals, raw, strict=True)]
    results = {
        "iteration_s": statistics.median(totals),
        "raw_parts_s": statistics.median(raw),
        "overhead_ratio": statistics.median(ratios),
    }
    record("framework_overhead", vars(args), results, write=not args.no_record)


if __name__ == "__main__":
    main()
