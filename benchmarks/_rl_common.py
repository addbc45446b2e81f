"""Shared pieces of the RL-loop benchmarks: policy/env setup, one PPO update, the JSON record."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.keys import ADVANTAGE_KEY
from vla_torchrl.modules import build_policy
from vla_torchrl.objectives import GAEAdvantage, VLAPPOLoss
from vla_torchrl.objectives import functional as F

RESULTS = Path(__file__).with_name("results.jsonl")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(
    *,
    model: str,
    critic: str,
    device: str,
    dtype: str,
    num_envs: int,
    steps: int,
    gradient_checkpointing: bool = False,
    seed: int = 0,
):
    """Tiny or 7B-layout random policy and a toy env with an episode of ``steps`` steps."""
    torch.manual_seed(seed)
    bundle = build_policy(
        model,
        critic=critic,
        device=device,
        dtype=getattr(torch, dtype),
        gradient_checkpointing=gradient_checkpointing,
    )
    env = make_toy_env(num_envs, seed=seed, image_size=32, max_steps=steps, device="cpu")
    return bundle, env


def collect(bundle, env, steps: int):
    """A [B, T] rollout (the actor runs on the model's device; the toy env on the CPU)."""
    with torch.no_grad():
        return env.rollout(steps, bundle.actor, break_when_any_done=False)


def ppo_update(bundle, rollout, optim, *, minibatch: int, accumulation: int, device) -> int:
    """GAE + one epoch of PPO over ``rollout``; optimizer step every ``accumulation`` minibatches.

    Returns the number of transitions processed.
    """
    rollout = GAEAdvantage(gamma=0.99, lmbda=0.95, value_network=bundle.actor)(rollout)
    loss_fn = VLAPPOLoss(bundle.evaluator)
    loss_fn.advantage_stats_fn = F.frozen_advantage_stats(rollout[ADVANTAGE_KEY])
    flat = rollout.reshape(-1)
    params = [p for g in bundle.param_groups for p in g["params"]]
    for i, mb in enumerate(flat.split(minibatch)):
        losses = loss_fn(mb.to(device))
        total = sum(v for k, v in losses.items() if k.startswith("loss_"))
        (total / accumulation).backward()
        if (i + 1) % accumulation == 0:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            optim.zero_grad(set_to_none=True)
    return flat.shape[0]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def record(name: str, config: dict[str, Any], results: dict[str, Any], *, write: bool) -> None:
    """Print the JSON record and append it to ``benchmarks/results.jsonl``."""
    rec = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device_name(torch.device(config.get("device", "cpu"))),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "config": config,
        "results": {k: round(v, 6) if isinstance(v, float) else v for k, v in results.items()},
    }
    print(json.dumps(rec, indent=1))
    if write:
        with RESULTS.open("a") as f:
            f.write(json.dumps(rec) + "\n")
