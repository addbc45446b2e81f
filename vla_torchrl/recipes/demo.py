"""The main job behind ``make demo``: the paper's pipeline, small enough for a CPU (~3 minutes).

1. SFT warm-up of the tiny OpenVLA on scripted-expert demonstrations (paper Sec. 4.2, "VLA
   warm-up"). The demonstrations come from the toy task's oracle, which makes them instant; the
   ManiSkill expert (``vla_torchrl.envs.maniskill.expert``) writes real ones through
   ``vla-torchrl-collect``.
2. PPO from the warm-up policy (paper Sec. 4.2 recipe: shared h^0 critic, 1 epoch, GAE).
3. Evaluation of both policies, SFT vs RL, on the toy task and on a handful of the paper's
   ManiSkill SUITE tasks (WidowX scene, Vision / Semantics / Execution perturbations), replaying
   the same episodes for both, and the report: tables in the layout of Tables 1-3, radar charts
   like Fig. 7, rollout GIFs.

The tiny model is random-initialised and trained for seconds, so its ManiSkill numbers are ~0:
the demo shows the machinery end to end, not the paper's results (see README, "Reproduce the
paper", for the GPU commands with the real checkpoint).

Usage: ``python -m vla_torchrl.recipes.demo [--out outputs/demo] [--skip-maniskill]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vla_torchrl.config.load import compose_config
from vla_torchrl.evaluation.eval_loop import evaluate
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.training.loop import train
from vla_torchrl.utils import setup_logging

# Small CPU settings shared by the stages (toy env at 32 px, 16 envs, 16-step episodes).
TOY = [
    "env.width=32",
    "env.height=32",
    "env.num_envs=16",
    "env.max_episode_steps=16",
    "collector.steps_per_env=16",
    "model.finetune=full",  # the tiny model is random: LoRA on frozen random weights is pointless
    "logger.progress_bar=true",
]
MANISKILL_TASKS = ["ind", "table", "noise-s", "instruct", "obj-pos"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/demo", help="where runs and the report go")
    parser.add_argument("--ppo-steps", type=int, default=4096, help="PPO environment steps")
    parser.add_argument(
        "--skip-maniskill", action="store_true", help="evaluate on the toy task only"
    )
    args = parser.parse_args(argv)
    log = setup_logging()
    out = Path(args.out).resolve()
    start = time.perf_counter()

    def banner(text: str) -> None:
        log.info("=== %s  (%.0f s elapsed)", text, time.perf_counter() - start)

    # ---- 1. SFT warm-up on expert demonstrations ----------------------------------------------
    banner("1/3 SFT warm-up of the tiny OpenVLA on 64 expert demonstrations")
    sft_cfg = compose_config(
        [
            *TOY,
            "algo=sft",
            "algo.epochs=8",
            "algo.demo_episodes=64",
            "optim.lr=1e-3",
            f"run_dir={out / 'sft'}",
        ],
        config_name="train_cpu",
    )
    sft_policy = train(sft_cfg)

    # ---- 2. PPO from the warm-up policy ---------------------------------------------------------
    banner(f"2/3 PPO for {args.ppo_steps} environment steps from the warm-up policy")
    ppo_cfg = compose_config(
        [
            *TOY,
            "algo=ppo",
            "optim.lr=1e-4",
            f"collector.total_env_steps={args.ppo_steps}",
            f"model.init_from={sft_policy}",
            f"run_dir={out / 'ppo'}",
        ],
        config_name="train_cpu",
    )
    ppo_policy = train(ppo_cfg)
    policies = {"SFT": str(sft_policy), "RL": str(ppo_policy)}

    # ---- 3. evaluation: SFT vs RL, same episodes ------------------------------------------------
    banner("3/3 evaluation, SFT vs RL, on the toy task")
    toy = evaluate(
        policies,
        tasks=["ind"],
        seeds=[0, 1, 2],
        episodes=16,
        backend="toy",
        num_envs=16,
        max_episode_steps=16,
        width=32,
        height=32,
        out_dir=out / "eval-toy",
    )
    reports = [toy]
    if not args.skip_maniskill:
        banner(f"3/3 evaluation on ManiSkill SUITE tasks {MANISKILL_TASKS} (builds scenes)")
        reports.append(
            evaluate(
                policies,
                tasks=MANISKILL_TASKS,
                seeds=[0],
                episodes=2,
                backend="maniskill",
                num_envs=2,
                max_episode_steps=10,
                width=224,
                height=224,
                out_dir=out / "eval-maniskill",
            )
        )
    banner("done")
    for files in reports:
        report = next(p for p in files.values() if str(p).endswith(".md"))
        print(f"report: {report}")
    print(
        f"training curves: python -m vla_torchrl.recipes.plot_curves {out / 'ppo'} --out curves.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
