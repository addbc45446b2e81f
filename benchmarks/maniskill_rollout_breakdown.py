"""Where one collection step of the ManiSkill CPU scale spends its time: policy vs envs.

Builds the env of ``env=maniskill_cpu`` (``--envs`` ParallelEnv workers, ``--size`` camera,
40-step episodes) and a policy (``--policy DIR``, a saved policy such as ``runs/<run>/policy``;
default: the random ``small`` model at 64 px), then runs the collection loop by hand:
``actor(td)`` then ``env.step_and_maybe_reset(td)``, timing the two separately over ``--steps``
steps after ``--warmup``. ``--shared-buffers`` builds the ParallelEnv the TorchRL way (shared
memory, the parent spin-polls the workers) instead of the package's pipes, for a before/after.

``--groups G`` runs the training's ``collector.env_groups=G`` instead: the scenes in G
ParallelEnvs stepped in turn by the ``OverlappedCollector``, the policy acting on one group while
the others step (a warm-up rollout of ``--warmup`` steps, then one of ``--steps`` steps, timed;
policy ms: the policy's own time; env ms: the rest of the wall-clock).

Needs the real assets (``VLA_TORCHRL_ASSETS``) or runs on the procedural stand-ins. A random
policy's episodes last the full 40 steps; a trained one's end earlier (more resets).

Usage (from the repository root)::

    python benchmarks/maniskill_rollout_breakdown.py --policy runs/ppo3-res96b-s0/policy
    python benchmarks/maniskill_rollout_breakdown.py --policy runs/ppo3-res96b-s0/policy --shared-buffers
    python benchmarks/maniskill_rollout_breakdown.py --envs 8 --steps 60
    python benchmarks/maniskill_rollout_breakdown.py --policy runs/ppo3-res96b-s0/policy --envs 8 --groups 2
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rl_common import record  # noqa: E402


def _shared_buffers(parallel_env, *args, **kwargs):
    """TorchRL's default ParallelEnv: shared buffers (which need the parent's spec probe)."""
    kwargs.update(use_buffers=True, metadata_from_workers=False)
    return parallel_env(*args, **kwargs)


def _synchronous(env, actor, args) -> dict[str, float]:
    """The collector's loop: the policy on all envs, then all envs step. Times ``args.steps``
    steps after ``args.warmup``: policy seconds, env seconds, wall, env steps, episodes."""
    from vla_torchrl.keys import DONE_KEY

    timed = dict.fromkeys(("policy_s", "env_s", "wall_s", "env_steps", "episodes"), 0.0)
    td = env.reset()
    with torch.no_grad():
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            td = actor(td)
            t1 = time.perf_counter()
            out, td = env.step_and_maybe_reset(td)
            t2 = time.perf_counter()
            if i >= args.warmup:
                timed["policy_s"] += t1 - t0
                timed["env_s"] += t2 - t1
                timed["wall_s"] += t2 - t0
                timed["env_steps"] += out.shape[0]
                timed["episodes"] += int(out["next", DONE_KEY].sum())
    return timed


def _overlapped(groups, actor, args) -> dict[str, float]:
    """The training's ``collector.env_groups``: a warm-up rollout of ``args.warmup`` steps, then
    one of ``args.steps`` steps, timed: policy seconds, the rest (envs), wall, env steps."""
    from vla_torchrl.keys import DONE_KEY
    from vla_torchrl.training.overlapped_collector import OverlappedCollector

    spent = {"policy_s": 0.0}

    def timed_actor(td):
        t0 = time.perf_counter()
        out = actor(td)
        spent["policy_s"] += time.perf_counter() - t0
        return out

    collector = OverlappedCollector(groups, timed_actor, steps_per_env=max(args.warmup, 1))
    collector.rollout()
    collector.steps_per_env, spent["policy_s"] = args.steps, 0.0
    t0 = time.perf_counter()
    rollout = collector.rollout()
    wall = time.perf_counter() - t0
    return {
        "policy_s": spent["policy_s"],
        "env_s": wall - spent["policy_s"],
        "wall_s": wall,
        "env_steps": rollout.numel(),
        "episodes": int(rollout["next", DONE_KEY].sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default=None, help="a saved policy directory (default: random)")
    p.add_argument("--envs", type=int, default=4, help="ParallelEnv workers (one scene each)")
    p.add_argument("--size", type=int, default=96, help="square camera size in pixels")
    p.add_argument("--steps", type=int, default=120, help="timed collection steps")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--shared-buffers", action="store_true", help="TorchRL's default ParallelEnv")
    p.add_argument(
        "--groups", type=int, default=1, help="G > 1: collector.env_groups=G (OverlappedCollector)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()

    import torchrl.envs

    import vla_torchrl.envs.builder as builder
    from vla_torchrl.config.train_schema import EnvConfig
    from vla_torchrl.training.environments import make_recipe_env_groups

    if args.groups < 1 or args.envs % args.groups:
        p.error(f"--groups {args.groups} must divide --envs {args.envs}")
    if args.shared_buffers:  # the builder's ParallelEnv, with TorchRL's own default
        builder.ParallelEnv = functools.partial(_shared_buffers, torchrl.envs.ParallelEnv)
    cfg = EnvConfig(
        backend="maniskill",
        task="ind",
        num_envs=args.envs,
        max_episode_steps=40,
        width=args.size,
        height=args.size,
    )
    torch.manual_seed(args.seed)
    envs = make_recipe_env_groups(cfg, groups=args.groups, seed=args.seed)
    try:
        if args.policy:
            from vla_torchrl.training.policy import load_policy

            actor = load_policy(args.policy, temperature=args.temperature).actor
        else:
            from vla_torchrl.modules import build_policy

            bundle = build_policy("small", critic="none", temperature=args.temperature)
            actor = bundle.actor
        if args.groups > 1:
            timed = _overlapped(envs, actor, args)
        else:
            timed = _synchronous(envs[0], actor, args)
        threads = torch.get_num_threads()
    finally:
        for env in envs:
            if not env.is_closed:
                env.close()
    n = args.steps
    results = {
        "policy_ms_per_step": 1e3 * timed["policy_s"] / n,
        "env_ms_per_step": 1e3 * timed["env_s"] / n,
        "env_steps_per_s": timed["env_steps"] / timed["wall_s"],
        "episodes_ended": timed["episodes"],
        "torch_threads_in_loop": threads,
    }
    config = {k: v for k, v in vars(args).items() if k != "no_record"}
    record("maniskill_rollout_breakdown", config, results, write=not args.no_record)


if __name__ == "__main__":
    main()
