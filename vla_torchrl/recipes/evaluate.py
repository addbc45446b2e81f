"""``vla-torchrl-eval``: policies on SUITE tasks x seeds, the paper's metrics, tables and charts.

Usage (Hydra overrides, :class:`~vla_torchrl.config.cli_schema.EvalConfig`, ``conf/eval.yaml``)::

    vla-torchrl-eval policies.SFT=runs/sft/policy policies.RL=runs/ppo/policy \\
        tasks=[ind,table,texture-s,obj,obj-rep] seeds=[0,1,2] episodes=16 out=eval/
    vla-torchrl-eval env=toy policies.RL=runs/cpu-ppo-ind-seed0/policy out=eval-toy

(``'policies={SFT:DIR,RL:DIR}'``, quoted for the shell, says the same.)

Every policy sees the same episodes: the env of (task, seed) numbers its episodes from 0, and an
episode's scene is a function of (seed, episode id). Sampling uses the evaluation temperature
(paper: 0.6) or greedy decoding. Results are appended per (policy, task, seed) to
``<out>/episodes.jsonl`` as they finish, so an interrupted evaluation keeps what it finished and
a second call continues where it stopped. The report (Markdown + CSV tables in the layout of the
paper's Tables 1-3 with each cell's episode count and 95% interval, the paired comparison of
each policy with the first, relative drops, radar charts like Fig. 7) goes to
``<out>/report/`` and a few rollout videos per task to ``<out>/videos/``.

The ``--flag`` spelling of earlier releases (``--policy SFT=DIR --seeds 0,1,2 --backend toy``)
still works for this release, with a deprecation line naming the overrides it stands for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from vla_torchrl.assets import apply_assets_policy
from vla_torchrl.config.cli_schema import EvalConfig, to_cli_config
from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.eval_loop import evaluate
from vla_torchrl.recipes._cli import Flag, run_cli, translate_flags
from vla_torchrl.training.environments import task_names
from vla_torchrl.utils import select_device

__all__ = ["LEGACY_FLAGS", "cli", "main", "run"]

#: the deprecated ``--flag`` spelling (until the next release) -> the overrides
LEGACY_FLAGS = {
    "--policy": Flag("policies", "pairs"),
    "--tasks": Flag("tasks", "csv_str"),
    "--seeds": Flag("seeds", "csv_num"),
    "--episodes": Flag("episodes", "num"),
    "--backend": Flag("env.backend"),
    "--num-envs": Flag("env.num_envs", "num"),
    "--max-steps": Flag("env.max_episode_steps", "num"),
    "--width": Flag("env.width", "num"),
    "--height": Flag("env.height", "num"),
    "--temperature": Flag("temperature", "num"),
    "--greedy": Flag("greedy", "on"),
    "--videos": Flag("videos", "num"),
    "--device": Flag("device"),
    "--out": Flag("out"),
}


def run(cfg: EvalConfig) -> dict[str, Path]:
    """Evaluate as ``cfg`` says; returns the report's files."""
    try:
        select_device(cfg.device)
    except ValueError as err:
        raise UserError(f"device={cfg.device!r}: {err}") from err
    env = cfg.env
    return evaluate(
        {str(k): str(v) for k, v in cfg.policies.items()},
        tasks=list(cfg.tasks) or task_names(env.backend),
        seeds=list(cfg.seeds),
        episodes=cfg.episodes,
        out_dir=cfg.out,
        backend=env.backend,
        num_envs=env.num_envs,
        max_episode_steps=env.max_episode_steps,
        width=env.width,
        height=env.height,
        temperature=cfg.temperature,
        greedy=cfg.greedy,
        videos_per_task=cfg.videos,
        device=cfg.device,
        env_options=env.options,
        transforms=env.transforms,
        fresh_env=cfg.fresh_env,
    )


def _legacy(argv: list[str]) -> list[str]:
    args = translate_flags(argv, LEGACY_FLAGS, prog="vla-torchrl-eval")
    for arg in args:
        _refuse_repeated_labels(arg)
    return args


def _mapping_keys(text: str) -> list[str]:
    """The keys of a Hydra mapping literal ``{A:x,'B':y}``, in order, repeats kept."""
    body = text.strip()[1:-1]
    keys, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body + ","):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            item = body[start:i]
            if item.strip():
                keys.append(item.split(":", 1)[0].strip().strip("'\""))
            start = i + 1
    return keys


def _refuse_repeated_labels(arg: str) -> None:
    """``policies={A:x,A:y}``: a mapping keeps the last of two equal keys, which would drop
    ``A:x`` without a word; refuse it (as ``--policy A=x --policy A=y`` is refused).

    Examples:
        >>> _refuse_repeated_labels("policies={A:x,B:y}")
        >>> _refuse_repeated_labels("policies={A:x,A:'y, z'}")
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: policies: label 'A' is given twice in {A:x,A:'y, z'}; give each policy its own label
    """
    key, sep, value = arg.lstrip("+~").partition("=")
    if not sep or key != "policies" or not value.strip().startswith("{"):
        return
    seen = set()
    for label in _mapping_keys(value):
        if label in seen:
            raise UserError(
                f"policies: label {label!r} is given twice in {value}; give each policy its own "
                "label"
            )
        seen.add(label)


def main(argv: Sequence[str] | None = None) -> int:
    """``vla-torchrl-eval key=value ...``; user errors end in one line (``--debug``: traceback)."""

    def task(dict_cfg) -> None:
        from vla_torchrl.utils import setup_logging

        setup_logging()
        cfg = to_cli_config(EvalConfig, dict_cfg)
        apply_assets_policy(cfg.assets, backend=cfg.env.backend)
        files = run(cfg)
        report = next((p for p in files.values() if str(p).endswith(".md")), None)
        print(f"report: {report or Path(cfg.out) / 'report'}")

    return run_cli(
        task, config_name="eval", argv=argv, compose=True, legacy=_legacy, open_keys=("policies",)
    )


def cli() -> int:
    """Console entry point (``vla-torchrl-eval``)."""
    return main()


if __name__ == "__main__":
    sys.exit(cli())
