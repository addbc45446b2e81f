"""benchmarks/gpu_suite.py: its steps on the CPU with small sizes, and its no-CUDA exit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_the_script_prints_one_line_and_exits_0():
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_suite.sh")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().count("\n") == 0 and "no CUDA" in out.stdout


def test_rollout_step_small_on_cpu():
    r = _suite().rollout_step(
        model_source="tiny",
        num_envs=2,
        image_hw=(32, 32),
        device="cpu",
        dtype=torch.float32,
        iters=1,
    )
    assert r["env_steps_per_s"] > 0 and r["speedup_vs_hf_generate"] > 0


def test_update_memory_step_small_on_cpu():
    r = _suite().update_memory_step(
        model_source="tiny",
        minibatch_size=2,
        grad_accum_steps=2,
        num_envs=2,
        image_hw=(32, 32),
        device="cpu",
        dtype=torch.float32,
    )
    assert r["planner_update_gib"] > 0 and r["planner_rollout_gib"] > 0


def test_overhead_step_small_on_cpu():
    r = _suite().overhead_step(device="cpu", num_envs=2, steps=2, minibatch=2, iters=1)
    assert r["overhead_ratio"] >= 1.0 * r["raw_parts_s"] / r["iteration_s"] > 0


def test_records_are_json_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    _suite().append_record("x", torch.device("cpu"), {"a": 1}, {"b": 2.0}, path)
    entry = json.loads(path.read_text())
    assert entry["benchmark"] == "gpu_suite/x" and entry["results"] == {"b": 2.0}


@pytest.mark.slow
@pytest.mark.maniskill
def test_sim_step_small_on_cpu():
    r = _suite().sim_step(num_envs=1, image_hw=(64, 64), steps=2, sim_backend="cpu")
    assert r["non_blank"] and r["env_steps_per_s"] > 0 and r["frame_shape"][-1] == 3
