"""``vla-torchrl-eval``: policies on SUITE tasks x seeds, the paper's metrics, tables and charts.

Usage::

    vla-torchrl-eval --policy SFT=runs/sft/policy --policy RL=runs/ppo/policy \\
        --tasks ind,table,texture-s,obj,obj-rep --seeds 0,1,2 --episodes 16 --out eval/

Every policy sees the same episodes: the env of (task, seed) numbers its episodes from 0, and an
episode's scene is a function of (seed, episode id). Sampling uses the evaluation temperature
(paper: 0.6) or greedy decoding. Results are appended per (policy, task, seed) to
``<out>/episodes.jsonl`` as they finish, so an interrupted evaluation keeps what it finished and
a second call continues where it stopped. The report (Markdown + CSV tables in the layout of the
paper's Tables 1-3, relative drops, radar charts like Fig. 7) goes to ``<out>/report/`` and a few
rollout videos per task to ``<out>/videos/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.eval_loop import evaluate
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.training.environments import task_names

__all__ = ["cli", "main"]


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vla-torchrl-eval", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="LABEL=DIR",
        help="a saved policy (<run_dir>/policy); repeat to compare policies",
    )
    parser.add_argument("--tasks", default="", help="comma-separated tasks (default: all)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (paper: 3)")
    parser.add_argument("--episodes", type=int, default=16, help="episodes per task and seed")
    parser.add_argument("--backend", choices=("maniskill", "toy"), default="maniskill")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=80, help="episode length (paper: 80)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--temperature", type=float, default=0.6, help="paper: 0.6")
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--videos", type=int, default=1, help="rollout GIFs per task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="eval")
    args = parser.parse_args(argv)
    policies = args.policy  # LABEL=DIR items, checked by evaluate (names, duplicates)
    try:
        seeds = [int(s) for s in _csv(args.seeds)]
    except ValueError as err:
        raise UserError(f"--seeds={args.seeds!r} must be comma-separated integers") from err
    files = evaluate(
        policies,
        tasks=_csv(args.tasks) or task_names(args.backend),
        seeds=seeds,
        episodes=args.episodes,
        out_dir=args.out,
        backend=args.backend,
        num_envs=args.num_envs,
        max_episode_steps=args.max_steps,
        width=args.width,
        height=args.height,
        temperature=args.temperature,
        greedy=args.greedy,
        videos_per_task=args.videos,
        device=args.device,
    )
    report = next((p for name, p in files.items() if str(p).endswith(".md")), None)
    print(f"report: {report or Path(args.out) / 'report'}")
    return 0


def cli() -> int:
    """Console entry point: user errors end in one line (``--debug`` shows the traceback)."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
