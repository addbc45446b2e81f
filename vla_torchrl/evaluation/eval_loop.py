"""Evaluate saved policies on tasks x seeds: episodes -> per-episode results -> report.

The library side of ``vla-torchrl-eval`` (:mod:`vla_torchrl.recipes.evaluate` is its command
line). Every policy sees the same episodes: the env of (task, seed) numbers its episodes from 0,
and an episode's scene is a function of (seed, episode id). Results are appended per (policy,
task, seed) to ``<out>/episodes.jsonl`` as they finish (:class:`~vla_torchrl.evaluation.results.
IncrementalResults`), so an interrupted evaluation continues where it stopped; the report goes to
``<out>/report/`` and a few rollout videos per task to ``<out>/videos/``.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from vla_torchrl.config.train_schema import EnvConfig
from vla_torchrl.envs.episodes import run_episodes
from vla_torchrl.envs.sim_errors import guard_sim_errors
from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.groups import (
    check_reusable,
    group_settings,
    make_out_dir,
    parse_policies,
    policy_fingerprint,
)
from vla_torchrl.evaluation.report_writer import write_report
from vla_torchrl.evaluation.results import IncrementalResults
from vla_torchrl.keys import IMAGE_KEY
from vla_torchrl.training.environments import make_recipe_env, task_names
from vla_torchrl.training.policy import load_policy
from vla_torchrl.utils import select_device
from vla_torchrl.utils.logging import progress

__all__ = ["RESULTS_FILE", "evaluate"]

_log = logging.getLogger("vla_torchrl.recipes.evaluate")


RESULTS_FILE = "episodes.jsonl"


def evaluate(
    policies: Mapping[str, str] | Sequence[str] | Sequence[tuple[str, str]],
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
    env_options: Mapping[str, Any] | None = None,
    transforms: Sequence[Mapping[str, Any]] = (),
    fresh_env: bool = True,
) -> dict[str, Path]:
    """Evaluate ``policies`` and write the report; returns its files.

    ``env_options`` (the backend's env options, ``env.options``) and ``transforms`` (TorchRL
    transforms appended to every env, ``env.transforms``: ``[{_target_: pkg.Transform, ...}]``)
    are applied as in training, and recorded with each group's settings.

    ``policies``: ``{label: saved policy dir}``, or ``["LABEL=DIR", ...]`` / ``(label, dir)``
    pairs (a label given twice is refused). A second call into the same ``out_dir`` continues:
    finished groups are kept when made with the same settings (policy files, episodes,
    sampling, image size, episode length: :mod:`vla_torchrl.evaluation.groups`) and refused
    otherwise.

    ``fresh_env`` builds the env anew for each (policy, task, seed) group, so a group's episodes
    depend only on the policy, task, seed and settings: not on the policies evaluated before it
    in the same call, nor on whether the call was resumed. ManiSkill's CPU simulation keeps
    contact state across resets (the same scene comes back equal only to ~1e-7 m, and sampled
    rollouts diverge from there; measured in ``docs/results/maniskill-cpu/README.md``).
    ``fresh_env=False`` reuses one env per (task, seed): faster (a ManiSkill env takes ~20 s to
    build on 2 cores), the same scenes for every policy, but the sampled episodes of a policy
    then depend on the evaluation order.
    """
    if episodes < 1:
        raise UserError(f"--episodes={episodes} must be >= 1")
    if not greedy and not (math.isfinite(temperature) and temperature > 0):
        raise UserError(f"--temperature={temperature} must be > 0 and finite (or use --greedy)")
    for flag, value in (
        ("--num-envs", num_envs),
        ("--max-steps", max_episode_steps),
        ("--width", width),
        ("--height", height),
    ):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{flag}={value!r} must be an integer >= 1")
    seeds = [int(s) for s in seeds]
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise UserError(
            f"--seeds={','.join(map(str, seeds))!r} must be distinct integers >= 0, e.g. 0,1,2"
        )
    try:
        dev = select_device(device)
    except ValueError as err:
        raise UserError(f"--device: {err}") from err
    known = task_names(backend)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise UserError(f"unknown task(s) {unknown} for the {backend} backend; known: {known}")
    policies = parse_policies(policies.items() if isinstance(policies, Mapping) else policies)
    for label, path in policies.items():
        if not (Path(path) / "policy.json").is_file():
            raise UserError(f"policy {label}={path}: not a saved policy (no policy.json there)")
    out = make_out_dir(out_dir)
    store = IncrementalResults(out / RESULTS_FILE)
    options, user_transforms = dict(env_options or {}), [dict(t) for t in transforms]
    settings = {  # what each group's numbers depend on: a finished group is reused only if equal
        label: group_settings(
            policy=policy_fingerprint(path),
            episodes=episodes,
            backend=backend,
            num_envs=min(num_envs, episodes),
            max_episode_steps=max_episode_steps,
            width=width,
            height=height,
            greedy=greedy,
            temperature=temperature,
            env_options=options,
            transforms=user_transforms,
        )
        for label, path in policies.items()
    }
    check_reusable(store.completed_settings(), settings, results_file=store.path)
    todo = store.pending(policies, tasks, seeds)
    if len(todo) < len(policies) * len(tasks) * len(seeds):
        _log.info("continuing an earlier evaluation: %d groups left", len(todo))
    env_cfg = EnvConfig(
        backend=backend,
        num_envs=min(num_envs, episodes),
        max_episode_steps=max_episode_steps,
        width=width,
        height=height,
        options=options,
        transforms=user_transforms,
    )
    actors = {}
    bar = progress(total=len(todo), desc="eval groups", unit="group")
    t_start, done = time.perf_counter(), 0
    # Groups of the same (task, seed) in a row; every group starts its env from the seed, so
    # every policy replays the same episodes (scenes are a function of seed and episode id).
    by_env: dict[tuple[str, int], list[str]] = {}
    for label, task, seed in todo:
        by_env.setdefault((task, seed), []).append(label)
    for (task, seed), labels in by_env.items():
        env = None
        try:
            for label in labels:
                if label not in actors:
                    bundle = load_policy(policies[label], device=dev)
                    actors[label] = bundle.eval_actor(
                        temperature=temperature if not greedy else 1.0,
                        mode="greedy" if greedy else "sample",
                    )
                if env is not None and fresh_env:
                    env.close()
                    env = None
                if env is None:
                    env = guard_sim_errors(
                        make_recipe_env(env_cfg, seed=seed, task=task, device="cpu")
                    )
                env.set_seed(seed)  # restart the episode ids: the same episodes for each policy
                # action sampling seeded per group: with fresh_env, repeated (or resumed)
                # evaluations give identical tables
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
                store.append_group(label, task, seed, records, settings=settings[label])
                bar.update(1)
                done += 1
                _log.info("%s", _group_line(label, task, seed, records, done, len(todo), t_start))
        finally:
            if env is not None:
                env.close()
    bar.close()
    return write_report(store.results(), out / "report", policies=list(policies))


def _group_line(label, task, seed, records, done: int, total: int, t_start: float) -> str:
    """One progress line per finished group (also when stderr is no terminal, unlike the bar):
    its success rate, then groups done and the time left at the mean pace so far."""
    elapsed = time.perf_counter() - t_start
    left = elapsed / done * (total - done)
    success = sum(bool(r["success"]) for r in records) / max(len(records), 1)
    return (
        f"eval {done}/{total}: {label} on {task} seed {seed}: success {success:.2f} "
        f"({len(records)} episodes); {elapsed / 60:.1f} min so far, ~{left / 60:.1f} min left"
    )


def _write_videos(rollout: TensorDictBase, folder: Path, stem: str, count: int) -> None:
    if count < 1:
        return
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    frames = rollout.get(IMAGE_KEY)
    for row in range(min(count, frames.shape[0])):
        iio.imwrite(folder / f"{stem}-{row}.gif", frames[row].cpu().numpy(), duration=200, loop=0)
