"""Helpers shared by test modules: small training overrides and subprocess launchers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from torchrl.envs.transforms import Transform

ROOT = Path(__file__).resolve().parents[1]

#: 4 envs x 4 steps = 16 transitions per iteration; 16 px images (the tiny model resizes to 28).
SMALL_TRAIN = [
    "env.num_envs=4",
    "collector.steps_per_env=4",
    "env.max_episode_steps=4",
    "env.width=16",
    "env.height=16",
    "optim.minibatch_size=8",
    "optim.grad_accum_steps=1",
    "logger.progress_bar=false",
]


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(
    args: list[str], *, env_extra: dict[str, str] | None = None, timeout: int = 240
) -> subprocess.CompletedProcess:
    """``python ARGS`` with this checkout first on the path, one thread, no inherited torchrun
    variables; asserts exit status 0 (showing the output's tail otherwise)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def torchrun(
    *args: str, env_extra: dict[str, str] | None = None, nproc: int = 2
) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node NPROC ARGS`` on localhost (a free port), via :func:`run_python`."""
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    rendezvous = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    return run_python([*launcher, *rendezvous, *args], env_extra=env_extra)


class AlwaysSuccess(Transform):
    """Marks every step a success: a user transform whose effect shows in eval's metrics."""

    def _step(self, tensordict, next_tensordict):
        next_tensordict.set("success", torch.ones_like(next_tensordict.get("success")))
        return next_tensordict


class SuccessWhileYoung(Transform):
    """Marks every step a success for the first ``steps`` batch steps of its env's life: an env
    whose outcomes depend on what it simulated before (as ManiSkill's CPU contact state)."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps, self.seen = int(steps), 0

    def _step(self, tensordict, next_tensordict):
        self.seen += 1
        if self.seen <= self.steps:
            next_tensordict.set("success", torch.ones_like(next_tensordict.get("success")))
        return next_tensordict
