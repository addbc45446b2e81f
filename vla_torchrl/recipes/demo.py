"""The main job behind ``make demo``: the paper's pipeline, small enough for a CPU (~3 minutes).

1. SFT warm-up of the tiny OpenVLA on scripted-expert demonstrations (paper Sec. 4.2, "VLA
   warm-up"), on the toy env's learnable ``reach-corner`` task (28 px, 6-step episodes; the
   demonstrations come from its oracle, which makes them instant). The warm-up is deliberately
   weak (8 demonstrations, 1 epoch), as the paper's 140-demonstration warm-up, so RL has room.
2. PPO from the warm-up policy (paper Sec. 4.2 recipe: shared h^0 critic, 1 epoch, GAE).
3. Evaluation of both policies, SFT vs RL, on the same toy episodes (3 seeds), and a short
   ManiSkill SUITE evaluation (WidowX scene, Vision / Semantics / Execution perturbations) of
   the same two policies, replaying the same episodes for both, with the report: tables in the
   layout of Tables 1-3, radar charts like Fig. 7, rollout GIFs.

The final printout says what improved from SFT to RL, by how much and on which episodes. The
ManiSkill numbers of these toy-trained policies are ~0 (they never saw the scene): that part
shows the machinery only; `docs/results/maniskill-cpu/` records what the toolkit's CPU scale of
the real benchmark reaches (see README, "Learning on the real benchmark"). With
``maniskill_policies.SFT=DIR maniskill_policies.RL=DIR`` (two policies the toolkit trained at
that scale, e.g. by the recipes in that folder), the ManiSkill stage evaluates those instead, on
``maniskill_episodes`` held-out ``ind`` episodes at ``env=maniskill_cpu``, and the printout
ends with what changed between them.

Usage (Hydra overrides, :class:`~vla_torchrl.config.cli_schema.DemoConfig`, ``conf/demo.yaml``):
``python -m vla_torchrl.recipes.demo [out=outputs/demo] [maniskill=false] [ppo_steps=3072]``
(``make demo ARGS="maniskill=false"``). The ``--out`` / ``--ppo-steps`` / ``--skip-maniskill``
spelling of earlier releases still works for this release, with a deprecation line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vla_torchrl.config.cli_schema import DemoConfig, to_cli_config
from vla_torchrl.config.load import compose_config
from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.eval_loop import RESULTS_FILE, evaluate
from vla_torchrl.evaluation.results import load_results
from vla_torchrl.recipes._cli import Flag, run_cli, translate_flags
from vla_torchrl.training.loop import train
from vla_torchrl.utils import setup_logging
from vla_torchrl.utils.stats import mcnemar_exact

# Small CPU settings shared by the stages: the learnable toy task (the CPU scale of the studies).
TOY_TASK, TOY_SIZE, TOY_STEPS = "reach-corner", 28, 6
TOY = [
    f"env.task={TOY_TASK}",
    f"env.width={TOY_SIZE}",
    f"env.height={TOY_SIZE}",
    "env.num_envs=8",
    f"env.max_episode_steps={TOY_STEPS}",
    "collector.steps_per_env=16",
    "model.finetune=full",  # the tiny model is random: LoRA on frozen random weights is pointless
    "optim.lr=1e-3",
    "logger.progress_bar=true",
]
MANISKILL_TASKS = ["ind", "table", "noise-s", "instruct", "obj-pos"]
#: ``maniskill_policies``: the in-distribution task on episodes no demonstration came from
#: (the held-out episodes of docs/results/maniskill-cpu: demos from seeds 1-4)
MANISKILL_TASK, MANISKILL_HELD_OUT_SEED = "ind", 1000
#: the deprecated ``--flag`` spelling (until the next release) -> the overrides
LEGACY_FLAGS = {
    "--out": Flag("out"),
    "--ppo-steps": Flag("ppo_steps", "num"),
    "--skip-maniskill": Flag("maniskill", "off"),
}


def _legacy(argv: list[str]) -> list[str]:
    return translate_flags(argv, LEGACY_FLAGS, prog="make demo")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vla_torchrl.recipes.demo key=value ...`` (see the module docstring)."""

    def task(dict_cfg) -> int:
        return demo(to_cli_config(DemoConfig, dict_cfg))

    return run_cli(
        task,
        config_name="demo",
        argv=argv,
        compose=True,
        legacy=_legacy,
        open_keys=("maniskill_policies",),
    )


def demo(args: DemoConfig) -> int:
    """The three stages (see the module docstring); prints what changed from SFT to RL."""
    log = setup_logging()
    out = Path(args.out).resolve()
    for label, path in args.maniskill_policies.items():  # before minutes of training
        if not (Path(path) / "policy.json").is_file():
            raise UserError(
                f"maniskill_policies.{label}={path}: no saved policy there (no policy.json); "
                "give the policy/ directory of a training run (vla-torchrl-train writes "
                "<run_dir>/policy)"
            )
    start = time.perf_counter()

    def banner(text: str) -> None:
        log.info("=== %s  (%.0f s elapsed)", text, time.perf_counter() - start)

    # ---- 1. SFT warm-up on expert demonstrations ----------------------------------------------
    banner(f"1/3 SFT warm-up of the tiny OpenVLA on 8 expert demonstrations ({TOY_TASK})")
    sft_cfg = compose_config(
        [
            *TOY,
            "algo=sft",
            "algo.epochs=1",
            "algo.demo_episodes=8",
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
            f"collector.total_env_steps={args.ppo_steps}",
            f"model.init_from={sft_policy}",
            f"run_dir={out / 'ppo'}",
        ],
        config_name="train_cpu",
    )
    ppo_policy = train(ppo_cfg)
    policies = {"SFT": str(sft_policy), "RL": str(ppo_policy)}

    # ---- 3. evaluation: SFT vs RL, same episodes ------------------------------------------------
    banner(f"3/3 evaluation, SFT vs RL, on the toy task ({TOY_TASK}, 3 seeds x 32 episodes)")
    toy = evaluate(
        policies,
        tasks=[TOY_TASK],
        seeds=[0, 1, 2],
        episodes=32,
        backend="toy",
        num_envs=16,
        max_episode_steps=TOY_STEPS,
        width=TOY_SIZE,
        height=TOY_SIZE,
        out_dir=out / "eval-toy",
    )
    reports = [toy]
    if args.maniskill_policies:
        env = compose_config(["env=maniskill_cpu"], config_name="train_cpu").env
        banner(
            f"3/3 evaluation of the ManiSkill policies {args.maniskill_policies} on "
            f"{args.maniskill_episodes} held-out {MANISKILL_TASK} episodes (seed "
            f"{MANISKILL_HELD_OUT_SEED}, env=maniskill_cpu)"
        )
        reports.append(
            evaluate(
                args.maniskill_policies,
                tasks=[MANISKILL_TASK],
                seeds=[MANISKILL_HELD_OUT_SEED],
                episodes=args.maniskill_episodes,
                backend=env.backend,
                num_envs=env.num_envs,
                max_episode_steps=env.max_episode_steps,
                width=env.width,
                height=env.height,
                env_options=env.options,
                transforms=env.transforms,
                out_dir=out / "eval-maniskill",
            )
        )
    elif args.maniskill:
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
    for line in improvement_lines(out / "eval-toy" / RESULTS_FILE, TOY_TASK):
        print(line)
    if args.maniskill_policies:
        results = out / "eval-maniskill" / RESULTS_FILE
        for line in improvement_lines(results, MANISKILL_TASK, warm_up="SFT policy"):
            print(line)
    for files in reports:
        report = next(p for p in files.values() if str(p).endswith(".md"))
        print(f"report: {report}")
    print(
        f"training curves: python -m vla_torchrl.recipes.plot_curves runs=[{out / 'ppo'}] "
        "out=curves.png"
    )
    return 0


def improvement_lines(
    results_file: Path, task: str, *, warm_up: str = "warm-up policy"
) -> list[str]:
    r"""What changed from SFT to RL on the same episodes, one line per metric (and a verdict).

    Examples:
        >>> import json, tempfile
        >>> rows = [dict(policy=p, task="t", seed=0, episode_id=i, grasped=True,
        ...              continuous_grasp=True, success=(p == "RL" or i == 0)) for p in ("SFT", "RL")
        ...         for i in range(4)]
        >>> f = Path(tempfile.mkdtemp()) / "episodes.jsonl"
        >>> _ = f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        >>> print(improvement_lines(f, "t")[1])
          success            SFT  25.0%  ->  RL 100.0%   (+75.0 points; 0 vs 3 episodes differ, McNemar p = 0.25)
    """
    results = [r for r in load_results(results_file) if r.task == task]
    by = {p: [r for r in results if r.policy == p] for p in ("SFT", "RL")}
    n = len(by["SFT"])
    seeds = sorted({r.seed for r in by["SFT"]})
    lines = [f"SFT -> RL on {task}: the same {n} episodes (seeds {seeds}) for both policies"]
    gains = {}
    pairs = {(r.seed, r.episode_id): [r] for r in by["SFT"]}
    for r in by["RL"]:
        pairs.get((r.seed, r.episode_id), []).append(r)
    pairs = {k: v for k, v in pairs.items() if len(v) == 2}
    for metric in ("success", "grasped", "continuous_grasp"):
        sft = 100.0 * sum(getattr(r, metric) for r in by["SFT"]) / max(n, 1)
        rl = 100.0 * sum(getattr(r, metric) for r in by["RL"]) / max(len(by["RL"]), 1)
        gains[metric] = rl - sft
        # the same episodes for both: exact McNemar test of the episodes where they differ
        only_sft = sum(getattr(a, metric) and not getattr(b, metric) for a, b in pairs.values())
        only_rl = sum(getattr(b, metric) and not getattr(a, metric) for a, b in pairs.values())
        lines.append(
            f"  {metric:<17}  SFT {sft:5.1f}%  ->  RL {rl:5.1f}%   ({rl - sft:+.1f} points; "
            f"{only_sft} vs {only_rl} episodes differ, McNemar p = "
            f"{mcnemar_exact(only_sft, only_rl):.3g})"
        )
    if gains["success"] > 0:
        lines.append(f"  RL improved on the {warm_up}.")
    else:
        lines.append(
            f"  RL did NOT improve success on the {warm_up} in this run (see the PPO curves: "
            "python -m vla_torchrl.recipes.plot_curves runs=[<run_dir>] out=curves.png)."
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
