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


# --------------------------------------------------------------- damaged checkpoints (issue 17)


def _flip(ckpt_dir):
    target = ckpt_dir / "tensors.safetensors"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))


def _steps(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step_"))


def test_no_verifying_checkpoint_stops_and_names_them(tmp_path):
    from vla_torchrl.training.checkpointing import CheckpointError

    run = tmp_path / "r"
    assert _train(run, crash_at=8) is None  # checkpoints 3 and 6 (keep_last=2)
    for name in _steps(run):
        _flip(run / "checkpoints" / name)
    log_before = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError) as info:
        _train(run)
    message = str(info.value)
    assert "\n" not in message
    assert "step_000000000003" in message and "step_000000000006" in message
    assert "resume=from_scratch" in message
    # nothing was restarted, rewritten or pruned
    assert (run / "metrics.jsonl").read_bytes() == log_before
    assert _steps(run) == ["step_000000000003", "step_000000000006"]


def test_from_scratch_moves_the_old_run_aside(tmp_path):
    reference = _train(tmp_path / "straight")
    run = tmp_path / "r"
    assert _train(run, crash_at=8) is None
    for name in _steps(run):
        _flip(run / "checkpoints" / name)
    again = _train(run, resume="from_scratch")
    for name, value in reference.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 11))
    (aside,) = run.glob("discarded-*")
    assert sorted(p.name for p in aside.iterdir()) == [
        "metrics.jsonl",
        "step_000000000003",
        "step_000000000006",
    ]
    assert len((aside / "metrics.jsonl").read_text().splitlines()) == 8  # the old log, kept whole


def test_damaged_latest_is_named_and_set_aside(tmp_path, caplog):
    reference = _train(tmp_path / "straight")
    run = tmp_path / "r"
    assert _train(run, crash_at=8) is None
    _flip(run / "checkpoints" / "step_000000000006")
    with caplog.at_level("WARNING", logger="vla_torchrl.recipes"):
        resumed = _train(run)  # from step 3
    assert any(
        "step_000000000006" in r.getMessage() and "damaged" in r.getMessage()
        for r in caplog.records
    )
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    (aside,) = run.glob("discarded-*")
    assert [p.name for p in aside.iterdir()] == ["step_000000000006"]
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 11))


def test_resume_from_an_explicit_step(tmp_path):
    from vla_torchrl.training.checkpointing import CheckpointError

    reference = _train(tmp_path / "straight")
    run = tmp_path / "r"
    assert _train(run, crash_at=8) is None  # checkpoints 3 and 6
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 4; steps there: \[3, 6\]"):
        _train(run, resume=4)
    resumed = _train(run, resume=3)
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    (aside,) = run.glob("discarded-*")
    assert [p.name for p in aside.iterdir()] == ["step_000000000006"]


@pytest.mark.parametrize("value", ["7", 1.5, None, True, -1])
def test_bad_counters_are_a_damaged_checkpoint(tmp_path, value):
    import hashlib
    import json

    from vla_torchrl.training.checkpointing import CheckpointError

    run = tmp_path / "r"
    _train(run, total=3)  # one checkpoint, step 3
    ckpt = run / "checkpoints" / "step_000000000003"
    counters = json.loads((ckpt / "counters.json").read_text())
    counters["iteration"] = value
    (ckpt / "counters.json").write_text(json.dumps(counters))
    manifest = json.loads((ckpt / "manifest.json").read_text())  # re-sign: checksums pass
    data = (ckpt / "counters.json").read_bytes()
    manifest["files"]["counters.json"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"counters.json: counter 'iteration' is"):
        _train(run, total=6)


@pytest.mark.parametrize("value", ["later", -2, 1.5])
def test_resume_mode_validated(value):
    from vla_torchrl.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a resume mode"):
        TrainConfig(resume=value)
