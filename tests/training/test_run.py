from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vla_torchrl.config.train_schema import TrainConfig
from vla_torchrl.errors import UserError
from vla_torchrl.training.metrics import read_metrics
from vla_torchrl.training.run import start_run


class _Crash(Exception):
    pass


def _train(run_dir, *, total=10, crash_at=None, resume=True):
    """A miniature recipe: random data from all three RNGs, AdamW, checkpoint every 3 steps."""
    cfg = TrainConfig(run_dir=str(run_dir), device="cpu", seed=3, keep_last=2, resume=resume)
    ctx = start_run(cfg, cuda_available=False, tensorboard=False, wandb="off")
    model = torch.nn.Linear(3, 1)  # draws from the torch RNG, as a real model build does
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    if ctx.resumed is not None:
        model.load_state_dict(ctx.resumed.tensors)
        opt.load_state_dict(ctx.resumed.optimizer_states["opt"])
    ctx.restore_rng()
    step = ctx.counters.get("env_steps", 0)
    try:
        while step < total:
            x = torch.randn(8, 3)
            target = x.sum(1, keepdim=True) + 0.1 * float(np.random.randn()) + random.random()
            loss = ((model(x) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            ctx.logger.log({"losses/mse": loss.item()}, step=step)
            if step == crash_at:
                raise _Crash
            if step % 3 == 0:
                ctx.save(
                    step, tensors=model.state_dict(), optimizer_states={"opt": opt.state_dict()}
                )
    except _Crash:
        ctx.logger._fh.close()  # die without a clean close
        return None
    ctx.close()
    return model


def test_interrupted_run_resumes_exactly(tmp_path):
    reference = _train(tmp_path / "straight")
    assert _train(tmp_path / "crashed", crash_at=8) is None  # last checkpoint: step 6
    assert _train(tmp_path / "crashed", crash_at=10) is None  # resumed at 6, dies again at 10
    resumed = _train(tmp_path / "crashed")  # resumed at 9
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    ref_log = [(r["step"], r["losses/mse"]) for r in read_metrics(tmp_path / "straight")]
    got_log = [(r["step"], r["losses/mse"]) for r in read_metrics(tmp_path / "crashed")]
    assert [s for s, _ in got_log] == list(range(1, 11))  # no gap, no duplicate
    assert got_log == ref_log
    ckpts = [p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir()]
    assert sorted(ckpts) == ["step_000000000006", "step_000000000009"]


def test_fresh_run_refuses_existing_dir(tmp_path):
    _train(tmp_path / "r", total=3)
    with pytest.raises(UserError, match="resume=true"):
        _train(tmp_path / "r", resume=False)


def test_crash_before_first_checkpoint_restarts_log(tmp_path):
    assert _train(tmp_path / "r", crash_at=2) is None
    _train(tmp_path / "r", total=4)
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3, 4]
