"""vla-torchrl-train end to end on the toy env with the tiny OpenVLA (CPU, tiny budgets)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from tensordict import TensorDict

from tests.helpers import SMALL_TRAIN as SMALL
from vla_torchrl.config.load import compose_config
from vla_torchrl.envs.episodes import episode_stats
from vla_torchrl.training.loop import NonFiniteUpdates, train


def _cfg(tmp_path, *overrides):
    return compose_config([*SMALL, f"run_dir={tmp_path}", *overrides], config_name="train_cpu")


def _run_cli(*args, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vla_torchrl.recipes.train", "--config-name", "train_cpu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_episode_stats_against_hand_computed_values():
    done = torch.tensor([[False, True, False, True], [False, False, False, False]])
    reward = torch.tensor([[0.1, 1.1, 0.0, 0.1], [0.1, 0.0, 0.0, 0.0]])
    success = torch.tensor([[False, True, False, False], [False] * 4])
    td = TensorDict(
        {
            "next": {
                "reward": reward[..., None],
                "done": done[..., None],
                "success": success[..., None],
                "grasped": done[..., None],
                "continuous_grasp": success[..., None],
            }
        },
        [2, 4],
    )
    stats = episode_stats(td)
    # two episodes end in env 0 (returns 1.2 and 0.1); env 1's episode never ends
    assert stats["episodes"] == 2
    assert abs(stats["episode_return"] - (1.2 + 0.1) / 2) < 1e-6
    assert stats["success"] == 0.5 and stats["grasped"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "ppo-orz", "grpo", "grpo-s", "tpo", "sft"])
def test_cli_runs_each_algorithm_and_writes_its_outputs(tmp_path, algo):
    extra = ["algo.group_size=2"] if algo in ("grpo", "grpo-s") else []
    extra += ["algo.demo_episodes=4"] if algo == "sft" else []
    result = _run_cli(
        *SMALL, f"algo={algo}", "collector.total_env_steps=32", f"run_dir={tmp_path}", *extra
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "policy" / "policy.json").is_file()
    assert (tmp_path / "policy" / "trainable.safetensors").is_file()
    assert any((tmp_path / "checkpoints").iterdir())
    records = _metrics(tmp_path)
    assert records and all(r["step"] > 0 for r in records)
    assert any(key.startswith("losses/") for key in records[-1])


@pytest.mark.slow
def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    train(_cfg(full, "collector.total_env_steps=64", "checkpoint_every=16"))
    # the same run stopped after 2 of its 4 iterations, then resumed to the end
    train(_cfg(split, "collector.total_env_steps=32", "checkpoint_every=16"))
    train(_cfg(split, "collector.total_env_steps=64", "checkpoint_every=16"))
    a = load_file(full / "policy" / "trainable.safetensors")
    b = load_file(split / "policy" / "trainable.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps_full = [r["step"] for r in _metrics(full)]
    assert steps_full == [r["step"] for r in _metrics(split)] == [16, 32, 48, 64]


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_without_gaps_or_duplicates(tmp_path):
    rng = random.Random(0)
    args = [*SMALL, "collector.total_env_steps=160", "checkpoint_every=16", f"run_dir={tmp_path}"]
    for _ in range(2):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vla_torchrl.recipes.train",
                "--config-name",
                "train_cpu",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(9.0, 14.0))  # imports take ~6 s; kill somewhere in the loop
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = _run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [r["step"] for r in _metrics(tmp_path)]
    assert steps == list(range(16, 161, 16))


@pytest.mark.slow
def test_nan_losses_are_skipped_counted_and_stop_the_run(tmp_path, monkeypatch):
    from vla_torchrl.objectives import VLAPPOLoss

    original = VLAPPOLoss.forward
    calls = {"n": 0}

    def poisoned(self, td):
        out = original(self, td)
        calls["n"] += 1
        if calls["n"] <= 2:  # the first two minibatches of the run: NaN
            out.set("loss_objective", out["loss_objective"] * float("nan"))
        return out

    monkeypatch.setattr(VLAPPOLoss, "forward", poisoned)
    train(_cfg(tmp_path / "a", "collector.total_env_steps=32"))
    last = _metrics(tmp_path / "a")[-1]
    assert last["train/skipped_updates"] == 2

    calls["n"] = -(10**6)  # now every minibatch is NaN: the run stops with a clear error
    with pytest.raises(NonFiniteUpdates, match="non-finite"):
        train(
            _cfg(tmp_path / "b", "collector.total_env_steps=320", "optim.max_consecutive_skips=3")
        )


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("algo=dqn", "algo"),
        ("optim.lr=-1", "optim.lr"),
        ("model.init_from=/nonexistent/policy", "/nonexistent/policy"),
    ],
)
def test_bad_input_exits_with_one_readable_line(tmp_path, override, needle):
    result = _run_cli(*SMALL, f"run_dir={tmp_path}", override, timeout=120)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert needle in lines[-1]


def test_refused_command_leaves_the_hydra_files_alone(tmp_path, monkeypatch, capsys):
    """resume=false on an existing run is refused before .hydra/ is rewritten (issue 17 item 9);
    a run that starts gets its .hydra/ files."""
    from vla_torchrl.recipes import train as recipe

    started = []
    monkeypatch.setattr(recipe, "train", lambda cfg: started.append(cfg.run_dir))
    run = tmp_path / "run"
    quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    args = ["--config-name", "train_cpu", *SMALL, f"run_dir={run}", *quiet]
    assert recipe.main([*args, "seed=4"]) == 0 and started == [str(run)]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "seed: 4" in config
    assert "seed=4" in (run / ".hydra" / "overrides.yaml").read_text()
    assert (run / ".hydra" / "hydra.yaml").is_file()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')  # the run exists now
    assert recipe.main([*args, "seed=5", "resume=false"]) == 2
    assert "resume=false" in capsys.readouterr().err
    assert (run / ".hydra" / "config.yaml").read_text() == config and len(started) == 1


@pytest.mark.slow
def test_a_diverging_run_is_undone_stopped_and_its_checkpoints_stay_finite(tmp_path):
    """optim.lr=1e30 (issue 17): finite gradients, overflowing weights. Each such step is undone
    and counted, the run stops with NonFiniteUpdates (not a sampling crash), and what it saved
    holds finite weights, so it resumes from them."""
    run = tmp_path / "run"
    args = ["optim.lr=1e30", "optim.value_lr=1e30", "optim.max_consecutive_skips=3"]
    with pytest.raises(NonFiniteUpdates, match=r"\d+ updates in a row.*undone"):
        train(_cfg(run, "collector.total_env_steps=320", "checkpoint_every=16", *args))
    saved = sorted(run.rglob("*.safetensors"))
    assert saved, "the first iteration (2 steps, both undone) wrote a checkpoint"
    for path in saved:
        for name, tensor in load_file(path).items():
            assert torch.isfinite(tensor.float()).all(), (path, name)
    assert _metrics(run)[-1]["train/skipped_updates"] >= 1


def test_a_run_whose_env_refuses_a_second_close_ends_and_saves_its_policy(tmp_path, monkeypatch):
    """TorchRL's batched envs (the ParallelEnv of env=maniskill*) raise "trying to close a
    closed environment" on a second close, and the collector's shutdown already closes its env:
    a PPO run on ManiSkill failed at its very end, before saving the policy."""
    import vla_torchrl.training.loop as loop

    real_make = loop._make_env

    def strict_env(*args, **kwargs):
        env = real_make(*args, **kwargs)
        close = env.close

        def close_once(*a, **k):
            if env.is_closed:
                raise RuntimeError("trying to close a closed environment")
            return close(*a, **k)

        env.close = close_once
        return env

    monkeypatch.setattr(loop, "_make_env", strict_env)
    policy = train(_cfg(tmp_path, "collector.total_env_steps=16"))
    assert (policy / "policy.json").is_file()
