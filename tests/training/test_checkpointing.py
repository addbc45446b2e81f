from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_torchrl.training.checkpointing import (
    CheckpointError,
    CheckpointManager,
    capture_rng_states,
    restore_rng_states,
)

REPO = Path(__file__).resolve().parents[2]


def _payload(step: int):
    g = torch.Generator().manual_seed(step)
    tensors = {
        "lora.A": torch.randn(16, 8, generator=g),
        "head.bias": torch.arange(5, dtype=torch.bfloat16),
        "ids": torch.tensor([1, 2, 3], dtype=torch.int64),
    }
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4, generator=g)).sum().backward()
    opt.step()
    return tensors, {"policy": opt.state_dict()}


def test_round_trip_bit_identical(tmp_path):
    tensors, opt_states = _payload(3)
    manager = CheckpointManager(tmp_path)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = manager.save(
        40,
        tensors=tensors,
        optimizer_states=opt_states,
        counters={"env_steps": 40, "updates": 2, "wall": 1.5},
        extra_files={"config.yaml": b"algo: ppo\n", "sub/notes.txt": b"\x00\xff"},
    )
    expected_next = (random.random(), float(np.random.rand()), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(7)  # move the generators on

    ckpt = manager.load(path)
    assert ckpt.step == 40 and ckpt.path == path
    assert set(ckpt.tensors) == set(tensors)
    for name, t in tensors.items():
        assert ckpt.tensors[name].dtype == t.dtype
        assert torch.equal(ckpt.tensors[name], t)
    state = ckpt.optimizer_states["policy"]
    ref = opt_states["policy"]
    assert state["param_groups"] == ref["param_groups"]
    for k, v in ref["state"].items():
        for name, value in v.items():
            assert torch.equal(state["state"][k][name], value)
    assert ckpt.counters == {"env_steps": 40, "updates": 2, "wall": 1.5}
    assert ckpt.extra_files == {"config.yaml": b"algo: ppo\n", "sub/notes.txt": b"\x00\xff"}
    restore_rng_states(ckpt.rng_states)
    assert random.random() == expected_next[0]
    assert float(np.random.rand()) == expected_next[1]
    assert torch.equal(torch.rand(3), expected_next[2])


def test_rng_restore_gaussian_cache():
    np.random.seed(5)
    np.random.randn()  # leaves a cached gaussian in the legacy state
    states = capture_rng_states()
    a = np.random.randn(3)
    restore_rng_states(states)
    assert np.array_equal(np.random.randn(3), a)


def _damage(path: Path, how: str) -> Path:
    target = path / "tensors.safetensors"
    data = bytearray(target.read_bytes())
    if how == "truncate":
        target.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) - 3] ^= 0x01
        target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how, word", [("truncate", "truncated"), ("flip", "corrupt")])
def test_damaged_file_refused_with_its_name(tmp_path, how, word):
    manager = CheckpointManager(tmp_path, keep_last=5)
    tensors, _ = _payload(1)
    good = manager.save(1, tensors=tensors)
    bad = manager.save(2, tensors=tensors)
    target = _damage(bad, how)
    with pytest.raises(CheckpointError) as info:
        manager.load(bad)
    assert str(target) in str(info.value) and word in str(info.value)
    assert manager.latest() == good
    assert manager.load().step == 1


def test_half_written_checkpoints_are_skipped(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=5)
    good = manager.save(5, tensors={"x": torch.ones(3)})
    # a temp dir left behind by a crashed save
    tmp = manager.root / ".tmp-step_000000000009-999-1"
    tmp.mkdir()
    (tmp / "tensors.safetensors").write_bytes(b"partial")
    # a final-named dir without manifest
    no_manifest = manager.root / "step_000000000007"
    no_manifest.mkdir()
    (no_manifest / "tensors.safetensors").write_bytes(b"x")
    # a manifest that is itself cut short
    cut = manager.root / "step_000000000008"
    cut.mkdir()
    (cut / "manifest.json").write_text('{"format": 1, "step": 8, "fil')
    assert manager.latest() == good
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        manager.load(no_manifest)
    with pytest.raises(CheckpointError, match="corrupt"):
        manager.load(cut)


def test_keep_last_and_empty(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    assert manager.latest() is None
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        manager.load()
    for step in (1, 2, 3, 4):
        manager.save(step, tensors={"s": torch.tensor([float(step)])})
    assert [p.name for p in manager.checkpoints()] == ["step_000000000003", "step_000000000004"]
    # the same step saved again replaces it
    manager.save(4, tensors={"s": torch.tensor([40.0])})
    assert manager.load().tensors["s"].item() == 40.0


def test_bad_extra_name(tmp_path):
    with pytest.raises(CheckpointError, match="relative path"):
        CheckpointManager(tmp_path).save(1, extra_files={"../evil": b""})
    assert CheckpointManager(tmp_path).latest() is None


_WRITER = textwrap.dedent(
    """
    import sys, torch
    from vla_torchrl.training.checkpointing import CheckpointManager
    manager = CheckpointManager(sys.argv[1], keep_last=2)
    step = int(sys.argv[2])
    while True:
        step += 1
        big = torch.full((1_500_000,), float(step))  # 6 MB per save
        print("saving", step, flush=True)
        manager.save(step, tensors={"big": big}, counters={"step": step},
                     optimizer_states={"s": {"v": torch.full((1000,), float(step))}})
    """
)


@pytest.mark.slow
def test_sigkill_during_save_never_breaks_latest(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    run_dir = tmp_path / "run"
    last_step = 0
    interrupted_saves = 0
    for _trial in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(run_dir), str(last_step)],
            env=env,
            stdout=subprocess.PIPE,
        )
        # let a few saves through (reading "saving k+1" means save k returned), then kill -9 a
        # few ms into the next one (a save takes ~60 ms here)
        for _ in range(rng.randint(2, 6)):
            announced = int(proc.stdout.readline().split()[1])
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        manager = CheckpointManager(run_dir, keep_last=2)
        leftovers = list(manager.root.glob(".tmp-*"))
        latest = manager.latest()
        assert latest is not None  # at least one save finished before the kill
        ckpt = manager.load(latest)
        if leftovers or ckpt.step < announced:
            interrupted_saves += 1
        # the content must be exactly what was saved for that step
        assert ckpt.counters["step"] == ckpt.step
        assert torch.equal(ckpt.tensors["big"], torch.full((1_500_000,), float(ckpt.step)))
        assert torch.equal(ckpt.optimizer_states["s"]["v"], torch.full((1000,), float(ckpt.step)))
        assert ckpt.step >= last_step
        # every directory that looks like a checkpoint is either complete or ignored
        for path in manager.checkpoints():
            manager.verify(path)
        last_step = ckpt.step
    assert interrupted_saves >= 1, "no kill landed inside a save; the test did not test anything"


@pytest.mark.gpu
def test_cuda_rng_and_map_location(tmp_path):
    assert torch.cuda.is_available()
    torch.cuda.manual_seed_all(7)
    manager = CheckpointManager(tmp_path)
    path = manager.save(1, tensors={"w": torch.ones(3, device="cuda")})
    expected = torch.rand(4, device="cuda")
    ckpt = manager.load(path, map_location="cuda")
    assert ckpt.tensors["w"].device.type == "cuda"
    restore_rng_states(ckpt.rng_states)
    assert torch.equal(torch.rand(4, device="cuda"), expected)


def test_shared_memory_and_empty(tmp_path):
    manager = CheckpointManager(tmp_path)
    base = torch.arange(6.0)
    tied = {"a": base, "b": base, "view": base[2:4], "t": base.view(2, 3).t()}
    ckpt = manager.load(manager.save(1, tensors=tied))
    for name, value in tied.items():
        assert torch.equal(ckpt.tensors[name], value), name
    assert manager.load(manager.save(2)).tensors == {}
    with pytest.raises(CheckpointError, match="not a torch.Tensor"):
        manager.save(3, tensors={"x": [1.0]})
