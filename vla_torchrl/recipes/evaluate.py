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
import logging
import math
import sys
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from tensordict import TensorDictBase

from vla_torchrl.config.train_schema import EnvConfig
from vla_torchrl.envs.sim_errors import guard_sim_errors, void_step_mask
from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, METRIC_KEYS, REWARD_KEY, next_key
from vla_torchrl.recipes._cli import UserError, run_cli
from vla_torchrl.recipes.report import IncrementalResults, write_report
from vla_torchrl.training.environments import make_recipe_env, task_names
from vla_torchrl.training.metrics import progress
from vla_torchrl.training.policy import load_policy
from vla_torchrl.utils import select_device

__all__ = ["cli", "episode_records", "evaluate", "main", "run_episodes"]

_log = logging.getLogger("vla_torchrl.recipes.evaluate")
RESULTS_FILE = "episodes.jsonl"


def episode_records(rollout: TensorDictBase) -> list[dict]:
    """The first episode of each env row of a ``[B, T]`` rollout that started with a reset.

    A row whose first episode was cut short by a simulator error (``SIM_ERROR_KEY``, see
    :mod:`vla_torchrl.envs.sim_errors`) gives no record: that episode is void, not a failure.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> flags = torch.tensor([[[False], [True], [True]]])
        >>> td = TensorDict({"episode_id": torch.tensor([[7, 7, 8]]),
        ...     "next": {"reward": torch.tensor([[[0.1], [1.1], [0.0]]]), "done": flags,
        ...              "grasped": flags, "continuous_grasp": flags, "success": flags}}, [1, 3])
        >>> episode_records(td)[0]["episode_id"], episode_records(td)[0]["length"]
        (7, 2)
    """
    done = rollout.get(next_key("done")).squeeze(-1)
    reward = rollout.get(next_key(REWARD_KEY)).squeeze(-1)
    void = void_step_mask(rollout)
    records = []
    for row in range(done.shape[0]):
        ends = done[row].nonzero()
        last = int(ends[0]) if len(ends) else done.shape[1] - 1
        if void[row, last]:
            continue
        record = {
            "episode_id": int(rollout.get(EPISODE_ID_KEY)[row, 0]),
            "return": float(reward[row, : last + 1].sum()),
            "length": last + 1,
        }
        for key in METRIC_KEYS:
            record[key] = int(rollout.get(next_key(key))[row, last].item())
        records.append(record)
    return records


def run_episodes(
    env,
    actor,
    *,
    episodes: int,
    max_steps: int,
    on_first_rollout: Callable[[TensorDictBase], None] | None = None,
) -> list[dict]:
    """Roll ``actor`` out until ``episodes`` episode records are in (see :func:`episode_records`).

    Each round resets every env and runs ``max_steps`` steps; the first episode of each env row
    counts. Extra rounds (at most as many again) make up for episodes void by a simulator error;
    the episode ids go on, so the replacements are new episodes. ``on_first_rollout`` sees the
    first round's rollout (e.g. to write videos).
    """
    records: list[dict] = []
    rounds = math.ceil(episodes / env.batch_size[0])
    for round_index in range(2 * rounds):
        if len(records) >= episodes:
            break
        with torch.no_grad():
            rollout = env.rollout(max_steps, actor, break_when_any_done=False)
        records.extend(episode_records(rollout))
        if round_index == 0 and on_first_rollout is not None:
            on_first_rollout(rollout)
    return records[:episodes]


def evaluate(
    policies: dict[str, str],
    *,
    tasks: Sequence[str],
    seeds: Sequence[int],
    episodes: int,
    out_dir: str | Path,
    backend: str = "maniskill",
    num_envs: int = 4,
    max_episode_steps: int = 80,
    width: int = 640,
    height: int = 480,
    temperature: float = 0.6,
    greedy: bool = False,
    videos_per_task: int = 1,
    device: str = "cpu",
) -> dict[str, Path]:
    """Evaluate ``policies`` (label -> saved policy dir) and write the report; returns its files."""
    if episodes < 1:
        raise UserError(f"--episodes={episodes} must be >= 1")
    if temperature <= 0 and not greedy:
        raise UserError(f"--temperature={temperature} must be > 0 (or use --greedy)")
    try:
        dev = select_device(device)
    except ValueError as err:
        raise UserError(f"--device: {err}") from err
    known = task_names(backend)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise UserError(f"unknown task(s) {unknown} for the {backend} backend; known: {known}")
    for label, path in policies.items():
        if not (Path(path) / "policy.json").is_file():
            raise UserError(f"policy {label}={path}: not a saved policy (no policy.json there)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = IncrementalResults(out / RESULTS_FILE)
    todo = store.pending(policies, tasks, seeds)
    if len(todo) < len(policies) * len(tasks) * len(seeds):
        _log.info("continuing an earlier evaluation: %d groups left", len(todo))
    env_cfg = EnvConfig(
        backend=backend,
        num_envs=min(num_envs, episodes),
        max_episode_steps=max_episode_steps,
        width=width,
        height=height,
    )
    actors = {}
    bar = progress(total=len(todo), desc="eval groups", unit="group")
    # One env per (task, seed), re-seeded for each policy: every policy replays the same episodes.
    by_env: dict[tuple[str, int], list[str]] = {}
    for label, task, seed in todo:
        by_env.setdefault((task, seed), []).append(label)
    for (task, seed), labels in by_env.items():
        env = guard_sim_errors(make_recipe_env(env_cfg, seed=seed, task=task, device="cpu"))
        try:
            for label in labels:
                if label not in actors:
                    bundle = load_policy(policies[label], device=dev)
                    actors[label] = bundle.eval_actor(
                        temperature=temperature if not greedy else 1.0,
                        mode="greedy" if greedy else "sample",
                    )
                env.set_seed(seed)  # restart the episode ids: the same episodes for each policy
                # action sampling seeded per group: repeated evaluations give identical tables
                torch.manual_seed(zlib.crc32(f"{task}:{seed}".encode()))
                videos = None  # a few rollout videos per task, from the first seed
                if seed == seeds[0]:
                    videos = partial(
                        _write_videos,
                        folder=out / "videos",
                        stem=f"{label}-{task}",
                        count=videos_per_task,
                    )
                records = run_episodes(
                    env,
                    actors[label],
                    episodes=episodes,
                    max_steps=max_episode_steps,
                    on_first_rollout=videos,
                )
                store.append_group(label, task, seed, records)
                bar.update(1)
        finally:
            env.close()
    bar.close()
    return write_report(store.results(), out / "report", policies=list(policies))


def _write_videos(rollout: TensorDictBase, folder: Path, stem: str, count: int) -> None:
    if count < 1:
        return
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    frames = rollout.get(IMAGE_KEY)
    for row in range(min(count, frames.shape[0])):
        iio.imwrite(folder / f"{stem}-{row}.gif", frames[row].cpu().numpy(), duration=200, loop=0)


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
    policies = {}
    for item in args.policy:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise UserError(f"--policy {item!r} must look like LABEL=DIR, e.g. RL=runs/ppo/policy")
        policies[label] = path
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
