"""``vla-torchrl-collect``: scripted-expert demonstrations, written as a memory-mapped TensorDict.

Usage (Hydra overrides)::

    vla-torchrl-collect episodes=64 out=data/demos                    # ManiSkill ``ind``, 640x480
    vla-torchrl-collect env=toy episodes=256 out=data/toy-demos        # the toy env's oracle
    vla-torchrl-train algo=sft algo.demos=data/demos                   # SFT on them
    vla-torchrl-collect env=maniskill_cpu privileged=true env.max_episode_steps=1 \\
        keep_failures=true filter_idle=false episodes=8000 out=data/scenes
        # one frame per scene, straight after the reset (~0.08 s each on one core): the
        # scene_frames of vla-torchrl-pretrain-vision

Expert: :class:`~vla_torchrl.envs.maniskill.expert.PutOnExpert` on ManiSkill (``env.backend=
maniskill``; the scenes run in this process, one after the other, since the expert reads the
simulator), the toy env's oracle on ``env.backend=toy``. Episodes ``0 .. episodes - 1`` of
``seed`` are played (the same scenes as ``vla-torchrl-eval`` with that seed). An episode is kept
when it ends in success after a grasp (``keep_failures=true`` keeps every episode); its idle
steps are dropped (the paper's filter: translation < 1 cm, rotation < 0.06 rad, gripper
unchanged; ``filter_idle=false`` keeps them). ``expert_noise=0.01`` plays the expert with 1 cm
of Gaussian noise on each executed translation before the grasp (:data:`NOISY_PHASES`; every step
on the toy env) and records its clean actions (DART): the demos then cover the states a learned
policy drifts into, and how the expert recovers from them. ``policy=<saved policy dir>`` lets a learned
policy drive (``expert_share`` of the steps execute the expert's action) while the expert labels
every state it visits (DAgger); every episode is kept then.

On-disk layout: ``out`` is a ``TensorDict.memmap`` directory (``TensorDict.load_memmap(out)``
reads it back; ``vla-torchrl-train algo=sft algo.demos=<out>`` reads it), batch ``[N]``
transitions in episode order:

- ``IMAGE_KEY`` uint8 ``[N, H, W, 3]``: the frame the action was taken on;
- ``INSTRUCTION_KEY``: one string per transition (non-tensor);
- ``ACTION_KEY`` float32 ``[N, 7]``: the env action (xyz delta m, Euler delta rad, gripper);
- ``ACTION_TOKENS_KEY`` int64 ``[N, 7]``: its OpenVLA tokens under the statistics-free
  tokenizer (actions in [-1, 1], the tiny model's); training re-tokenizes with its model's
  ``norm_stats``;
- ``EPISODE_ID_KEY`` int64 ``[N]``: the episode each transition comes from;
- ``PRIVILEGED_KEY`` (only with ``privileged=true``, ManiSkill): the simulator state the
  action was computed from, labels for vision pretraining (``tcp_position``,
  ``object_position``, ``receptacle_position`` float ``[N, 3]`` in the robot root frame,
  ``is_grasped`` bool ``[N]``, ``tcp_rotation`` float ``[N, 3, 3]``, ``object_yaw`` float
  ``[N]``, ``expert_phase`` int64 ``[N]``; see
  :meth:`~vla_torchrl.envs.maniskill.expert.PutOnExpert.privileged_state`);

plus ``summary.json`` (episodes, successes, kept episodes and steps, seconds per episode, the
config). Memory: the transitions are gathered in RAM before writing (about 0.9 MB per kept step
at 640x480; ``env.width=224 env.height=224`` for large sets).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tensordict import NonTensorData, NonTensorStack, TensorDict

from vla_torchrl.assets import apply_assets_policy
from vla_torchrl.config.collect_schema import CollectConfig, to_collect_config
from vla_torchrl.envs.demos import is_demos_folder, save_demos
from vla_torchrl.errors import UserError
from vla_torchrl.keys import (
    ACTION_KEY,
    ACTION_TOKENS_KEY,
    DONE_KEY,
    EPISODE_ID_KEY,
    GRASPED_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    PRIVILEGED_KEY,
    SUCCESS_KEY,
)
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.utils.logging import progress
from vla_torchrl.utils.threads import torch_threads

__all__ = ["SUMMARY_FILE", "collect", "main"]

_log = logging.getLogger("vla_torchrl.recipes.collect")
SUMMARY_FILE = "summary.json"


#: ManiSkill expert phases that get ``expert_noise``: those before the grasp, where a learned
#: policy's drift decides whether it grasps. After the grasp the expert plays clean: its
#: waypoints are reached within 8 mm, and 1 cm of noise on every step left 1 of 8 episodes
#: successful (7 of 8 grasped; measured, seed 5, ``env=maniskill_cpu``).
NOISY_PHASES: tuple[str, ...] = ("approach", "descend")


def _expert(env, backend: str, *, privileged: bool = False):
    """The expert as three functions of the env's current state: its actions ``[B, 7]``;
    (``privileged``; else None) the simulator state its last action saw (a dict of ``[B, ...]``);
    which rows ``[B]`` may get ``expert_noise`` on that action (:data:`NOISY_PHASES`; None on
    the toy env: every row)."""
    if backend == "toy":
        if privileged:
            raise UserError(
                "privileged=true records the ManiSkill simulator's state (positions, grasp, "
                "expert phase); the toy env has none: use env.backend=maniskill or privileged=false"
            )
        return env.oracle_action, None, None  # noise on every step
    from vla_torchrl.envs.maniskill.expert import PHASES, ExpertPolicy

    try:
        policy = ExpertPolicy(env)
    except ValueError as err:
        raise UserError(str(err)) from err
    noisy = torch.tensor([p in NOISY_PHASES for p in PHASES])

    def noisy_rows() -> torch.Tensor:
        return noisy[policy.privileged_state()["expert_phase"].reshape(-1)]

    return policy.actions, (policy.privileged_state if privileged else None), noisy_rows


def _protected(out: Path) -> str | None:
    """Why ``out`` must never be replaced (the working directory, one of its ancestors, the
    home directory, the filesystem root), or None."""
    target = out.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if target == cwd or target in cwd.parents:
        return "it is the working directory or one of its parents"
    if target == home or target in home.parents:
        return "it is the home directory or one of its parents"
    if target == Path(target.anchor):
        return "it is the filesystem root"
    return None


def _prepare_out(cfg: CollectConfig) -> Path:
    """Check ``cfg.out`` before any work: new, empty, or (``overwrite=true``) a demos folder."""
    out = Path(cfg.out)
    if not out.exists() and not out.is_symlink():
        return out
    why = _protected(out)
    if why is not None:
        raise UserError(
            f"out={str(out)!r} cannot hold the demonstrations: {why}; choose a folder of its "
            "own, e.g. out=data/demos"
        )
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return out
    if not cfg.overwrite:
        raise UserError(
            f"out={str(out)!r} already exists and is not empty; choose another out= or pass "
            "overwrite=true to replace it (only a demonstrations folder is replaced)"
        )
    if not is_demos_folder(out, extra_files=(SUMMARY_FILE,)):
        why = "it is not a demonstrations folder (meta.json, *.memmap and summary.json only)"
        raise UserError(
            f"overwrite=true refuses to replace out={str(out)!r}: {why}; choose another out= "
            "(or delete it yourself if you mean to)"
        )
    return out


def _write_demos(data: TensorDict, out: Path, summary: dict[str, Any]) -> None:
    """Write the demos next to ``out`` and swap them in: an old set is replaced only once the
    new one is complete (a crash or a full disk leaves the old one as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_demos(data, tmp)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
        old = None
        if out.exists():
            old = out.parent / f".trash-{out.name}-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _play_round(
    env,
    expert,
    max_steps: int,
    state=None,
    *,
    noise: float = 0.0,
    noisy_rows=None,
    generator: torch.Generator | None = None,
    driver=None,
    expert_share: float = 0.0,
) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """One episode per env row, until every row is done or ``max_steps``.

    ``driver`` (a function of the step's tensordict returning actions ``[B, 7]``, e.g. a
    learned policy) executes instead of the expert, on each row with probability
    ``1 - expert_share``; the record keeps the expert's action for the state (DAgger).

    With ``noise > 0`` the env executes the expert's action plus Gaussian noise of that standard
    deviation on the translation dims (0-2; DART, Laskey et al. 2017), clipped to the action
    bounds, on the rows ``noisy_rows()`` (``[B]`` bool, called after the expert; all rows when
    None) marks, while the record keeps the expert's clean action: the demos then show how the
    expert recovers from the drift a learned policy makes (its closed loop re-reads the state
    every step, so it labels the perturbed states).

    Returns:
        the per-step records (image, instruction, action, episode id, and ``state()``'s
        privileged labels when given; all rows), and the rows' final ``success`` / ``grasped``
        flags ``[B]``.
    """
    td = env.reset()
    b = env.batch_size[0]
    alive = torch.ones(b, dtype=torch.bool)
    success = torch.zeros(b, dtype=torch.bool)
    grasped = torch.zeros(b, dtype=torch.bool)
    steps = []
    low, high = _action_bounds(env)
    for _ in range(max_steps):
        action = expert().reshape(b, 7).float().cpu()
        executed = action
        if driver is not None:
            own = torch.rand(b, generator=generator) >= expert_share
            executed = torch.where(own[:, None], driver(td).reshape(b, 7).float().cpu(), action)
        if noise > 0:
            executed = executed.clone()
            rows = torch.ones(b, 1) if noisy_rows is None else noisy_rows().reshape(b, 1).float()
            executed[:, :3] += rows * noise * torch.randn(b, 3, generator=generator)
            executed = torch.maximum(torch.minimum(executed, high), low)
        steps.append(
            {
                "alive": alive.clone(),
                IMAGE_KEY: td.get(IMAGE_KEY).cpu(),
                INSTRUCTION_KEY: list(td.get(INSTRUCTION_KEY)),
                ACTION_KEY: action,
                EPISODE_ID_KEY: td.get(EPISODE_ID_KEY).reshape(b).cpu(),
            }
        )
        if state is not None:
            steps[-1][PRIVILEGED_KEY] = {k: v.reshape(b, *v.shape[1:]) for k, v in state().items()}
        td.set(ACTION_KEY, executed.to(td.device))
        nxt = env.step(td).get("next")
        # metrics are "so far" flags: their value at an episode's last step is the metric
        success = torch.where(alive, nxt.get(SUCCESS_KEY).reshape(b).cpu(), success)
        grasped = torch.where(alive, nxt.get(GRASPED_KEY).reshape(b).cpu(), grasped)
        alive &= ~nxt.get(DONE_KEY).reshape(b).cpu()
        if not alive.any():
            break
        td = nxt
    return steps, success, grasped


def _driver(cfg: CollectConfig):
    """The saved policy ``cfg.policy`` as a function of a step's tensordict -> actions."""
    from vla_torchrl.training.policy import load_policy

    actor = load_policy(cfg.policy).eval_actor(
        temperature=cfg.policy_temperature or 1.0,
        mode="greedy" if cfg.policy_temperature == 0 else "sample",
    )

    def act(td):
        with torch.no_grad():
            return actor(td.clone()).get(ACTION_KEY)

    return act


def _action_bounds(env) -> tuple[torch.Tensor, torch.Tensor]:
    """The env's action bounds ``[7]`` (unbounded dims get +-inf)."""
    spec = env.full_action_spec[ACTION_KEY]
    if not hasattr(spec, "low"):  # an Unbounded spec
        inf = torch.full((7,), float("inf"))
        return -inf, inf
    return spec.low.reshape(-1, 7)[0].float().cpu(), spec.high.reshape(-1, 7)[0].float().cpu()


def _episode(steps: list[dict], row: int, *, filter_idle: bool) -> tuple[TensorDict, int]:
    """Row ``row``'s transitions (idle ones dropped when asked) and its length before that."""
    from vla_torchrl.envs.demos import is_idle

    live = [s for s in steps if bool(s["alive"][row])]
    actions = torch.stack([s[ACTION_KEY][row] for s in live])
    keep = ~is_idle(actions) if filter_idle else torch.ones(len(live), dtype=torch.bool)
    idx = keep.nonzero().flatten().tolist()
    ep = TensorDict(
        {
            IMAGE_KEY: torch.stack([live[i][IMAGE_KEY][row] for i in idx]),
            ACTION_KEY: actions[idx],
            EPISODE_ID_KEY: torch.stack([live[i][EPISODE_ID_KEY][row] for i in idx]),
        },
        batch_size=[len(idx)],
    )
    if PRIVILEGED_KEY in live[0]:
        labels = live[0][PRIVILEGED_KEY]
        ep.set(
            PRIVILEGED_KEY,
            TensorDict(
                {k: torch.stack([live[i][PRIVILEGED_KEY][k][row] for i in idx]) for k in labels},
                batch_size=[len(idx)],
            ),
        )
    ep.set(
        INSTRUCTION_KEY,
        NonTensorStack(*[NonTensorData(live[i][INSTRUCTION_KEY][row]) for i in idx]),
    )
    return ep, len(live)


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Play ``cfg.episodes`` expert episodes, keep the good ones, write them; returns the summary.

    Torch runs on ``cfg.torch_threads`` threads meanwhile (see :mod:`vla_torchrl.utils.threads`).
    """
    with torch_threads(cfg.torch_threads):
        return _collect(cfg)


def _collect(cfg: CollectConfig) -> dict[str, Any]:
    from vla_torchrl.modules.processors.action import ActionTokenizer
    from vla_torchrl.training.environments import make_recipe_env

    out = _prepare_out(cfg)
    env_cfg = cfg.env
    if env_cfg.backend == "maniskill":
        # the expert reads the simulator: scenes in this process (SerialEnv), not in workers
        env_cfg = dataclasses.replace(env_cfg, options={**env_cfg.options, "parallel": False})
    env = make_recipe_env(env_cfg, seed=cfg.seed, device="cpu")
    parts: list[TensorDict] = []
    n_success = n_grasped = n_kept = n_steps = 0
    try:
        # starts the scenes (a SerialEnv builds lazily)
        expert, state, noisy_rows = _expert(env, env_cfg.backend, privileged=cfg.privileged)
        env.set_seed(cfg.seed)  # episode ids restart at 0: the scenes vla-torchrl-eval replays
        t0 = time.perf_counter()  # seconds per episode: playing only, not building the scenes
        b = env.batch_size[0]
        generator = torch.Generator().manual_seed(cfg.seed)
        driver = _driver(cfg) if cfg.policy is not None else None
        keep_all = cfg.keep_failures or cfg.policy is not None  # DAgger: labels are the expert's
        bar = progress(
            cfg.episodes, desc="expert episodes", unit="ep", disable=not cfg.progress_bar or None
        )
        try:
            for start in range(0, cfg.episodes, b):
                steps, success, grasped = _play_round(
                    env,
                    expert,
                    env_cfg.max_episode_steps,
                    state,
                    noise=cfg.expert_noise,
                    noisy_rows=noisy_rows,
                    generator=generator,
                    driver=driver,
                    expert_share=cfg.expert_share,
                )
                rows = min(b, cfg.episodes - start)
                for row in range(rows):
                    n_success += int(success[row])
                    n_grasped += int(grasped[row])
                    # a success without a grasp (object settled onto the receptacle) shows nothing
                    if not keep_all and not (success[row] and grasped[row]):
                        continue
                    ep, length = _episode(steps, row, filter_idle=cfg.filter_idle)
                    n_kept += 1
                    n_steps += length
                    parts.append(ep)
                bar.update(rows)
                bar.set_postfix(success=f"{n_success / (start + rows):.2f}")
        finally:
            bar.close()
    finally:
        env.close()
    seconds = time.perf_counter() - t0
    if not parts:
        raise UserError(
            f"the expert succeeded in none of {cfg.episodes} episodes of "
            f"{env_cfg.backend}/{env_cfg.task}; nothing to save (keep_failures=true keeps them)"
        )
    data = torch.cat(parts)
    # OpenVLA action tokens, statistics-free (the tiny model's); training re-tokenizes
    data.set(ACTION_TOKENS_KEY, ActionTokenizer().actions_to_tokens(data.get(ACTION_KEY)))
    summary = {
        "episodes": cfg.episodes,
        "successes": n_success,
        "success_rate": n_success / cfg.episodes,
        "grasped": n_grasped,
        "kept_episodes": n_kept,
        "steps": n_steps,
        "kept_steps": int(data.batch_size[0]),
        "seconds_per_episode": seconds / cfg.episodes,
        "path": str(out),
        "config": dataclasses.asdict(cfg),
    }
    _write_demos(data, out, summary)
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    print(
        f"[collect] {s['episodes']} episodes, {s['successes']} successes "
        f"({100 * s['success_rate']:.1f}%), {s['kept_episodes']} kept: "
        f"{s['kept_steps']} of {s['steps']} steps after the idle filter, "
        f"{s['seconds_per_episode']:.2f} s/episode -> {s['path']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Console entry point (Hydra): ``vla-torchrl-collect [env=toy] key=value ...``."""

    def _main(dict_cfg) -> None:
        from vla_torchrl.utils import setup_logging

        setup_logging()
        cfg = to_collect_config(dict_cfg)
        apply_assets_policy(cfg.assets, backend=cfg.env.backend)
        _print_summary(collect(cfg))

    return run_cli(
        _main,
        config_name="collect",
        argv=argv,
        hydra_overrides=("hydra/job_logging=none", "hydra/hydra_logging=none"),
    )


if __name__ == "__main__":
    sys.exit(main())
