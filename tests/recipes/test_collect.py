"""vla-torchrl-collect: on-disk format, idle filter, errors, and collect -> SFT end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.config.collect_schema import CollectConfig
from vla_torchrl.config.train_schema import EnvConfig
from vla_torchrl.keys import (
    ACTION_KEY,
    ACTION_TOKENS_KEY,
    EPISODE_ID_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
)
from vla_torchrl.recipes.collect import SUMMARY_FILE, collect, main

TOY = EnvConfig(backend="toy", num_envs=4, max_episode_steps=10, width=16, height=16)


def _toy(tmp_path, name, **kw):
    cfg = CollectConfig(env=TOY, out=str(tmp_path / name), episodes=6, progress_bar=False, **kw)
    return collect(cfg), TensorDict.load_memmap(tmp_path / name).to_tensordict()


def _idle_by_hand(actions: torch.Tensor) -> list[bool]:
    """The paper's rule, one step at a time: |dx| < 1 cm, |deuler| < 0.06, same gripper."""
    a = actions.tolist()
    out = [False]
    for prev, cur in zip(a[:-1], a[1:]):
        still = np.linalg.norm(cur[:3]) < 0.01 and np.linalg.norm(cur[3:6]) < 0.06
        out.append(bool(still and (cur[6] >= 0) == (prev[6] >= 0)))
    return out


def test_toy_demos_format_tokens_and_idle_filter(tmp_path):
    raw_summary, raw = _toy(tmp_path, "raw", filter_idle=False)
    summary, kept = _toy(tmp_path, "kept")
    n = kept.batch_size[0]
    # format: the keys SFT reads, with the documented dtypes and shapes
    assert kept.get(IMAGE_KEY).dtype == torch.uint8 and kept.get(IMAGE_KEY).shape == (n, 16, 16, 3)
    assert kept.get(ACTION_KEY).dtype == torch.float32 and kept.get(ACTION_KEY).shape == (n, 7)
    assert kept.get(EPISODE_ID_KEY).dtype == torch.int64
    texts = kept.get(INSTRUCTION_KEY).tolist()
    assert len(texts) == n and all(t.startswith("put dot on ") for t in texts)
    # tokens: OpenVLA's formula (FACTS.md), id = 32000 - digitize(clip(a, -1, 1), bins)
    bins = np.linspace(-1, 1, 256)
    expected = 32000 - np.digitize(np.clip(kept.get(ACTION_KEY).numpy(), -1, 1), bins)
    assert np.array_equal(kept.get(ACTION_TOKENS_KEY).numpy(), expected)
    # the oracle solves every toy episode; all 6 kept, ids 0..5 (the seed's first episodes)
    assert summary["successes"] == summary["kept_episodes"] == 6
    assert sorted(set(kept.get(EPISODE_ID_KEY).tolist())) == list(range(6))
    # idle filter: the kept steps are the unfiltered ones minus those the rule marks idle
    keep_rows = []
    for episode in range(6):
        rows = (raw.get(EPISODE_ID_KEY) == episode).nonzero().flatten()
        idle = _idle_by_hand(raw.get(ACTION_KEY)[rows])
        keep_rows += [int(r) for r, i in zip(rows, idle) if not i]
    assert torch.equal(kept.get(ACTION_KEY), raw.get(ACTION_KEY)[keep_rows])
    assert summary["kept_steps"] == n == len(keep_rows)
    assert raw_summary["kept_steps"] == raw_summary["steps"] == summary["steps"]
    assert json.loads((tmp_path / "kept" / SUMMARY_FILE).read_text())["kept_steps"] == n


def test_existing_output_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "demos"
    out.mkdir()
    (out / "something").write_text("x")
    status = main(["env=toy", "episodes=1", f"out={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "already exists" in err[0] and "overwrite=true" in err[0]


def test_bad_episode_count_is_a_one_line_error(tmp_path, capsys):
    status = main(["env=toy", "episodes=0", f"out={tmp_path / 'd'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "episodes=0" in err[0]


@pytest.mark.slow
@pytest.mark.maniskill
def test_maniskill_collect_then_sft_reads_the_demos(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    demos, run = tmp_path / "demos", tmp_path / "sft"
    collect_cmd = [
        sys.executable,
        "-m",
        "vla_torchrl.recipes.collect",
        "episodes=2",
        "env.width=40",
        "env.height=32",
        "+env.options.asset_source=procedural",
        "seed=1",
        "progress_bar=false",
        f"out={demos}",
    ]
    # seed 1's first two procedural episodes (the expert solves both, 50 steps in all, measured)
    result = subprocess.run(collect_cmd, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((demos / SUMMARY_FILE).read_text())
    assert summary["episodes"] == 2 and summary["kept_episodes"] >= 1
    assert "[collect] 2 episodes" in result.stdout
    data = TensorDict.load_memmap(demos)
    assert data.get(IMAGE_KEY).shape[1:] == (32, 40, 3)
    train_cmd = [
        sys.executable,
        "-m",
        "vla_torchrl.recipes.train",
        "--config-name",
        "train_cpu",
        "algo=sft",
        f"algo.demos={demos}",
        f"run_dir={run}",
        "optim.minibatch_size=8",
        "optim.grad_accum_steps=1",
        "logger.progress_bar=false",
    ]
    result = subprocess.run(train_cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # one SFT epoch over exactly the collected transitions
    assert records[-1]["step"] == summary["kept_steps"]
    assert np.isfinite(records[-1]["losses/loss_sft"])
    assert (run / "policy" / "policy.json").is_file()


# --------------------------------------------- overwrite=true replaces demos folders only (issue 17)


def test_overwrite_replaces_a_demos_folder(tmp_path):
    first, _ = _toy(tmp_path, "demos", seed=0)
    second, data = _toy(tmp_path, "demos", seed=1, overwrite=True)
    assert json.loads((tmp_path / "demos" / SUMMARY_FILE).read_text())["config"]["seed"] == 1
    assert data.batch_size[0] == second["kept_steps"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demos"]  # no temp or trash left


@pytest.mark.parametrize("content", ["text file", "pickle", "nested text"])
def test_overwrite_refuses_a_folder_that_is_not_demos(tmp_path, content):
    from vla_torchrl.errors import UserError

    _toy(tmp_path, "demos")
    out = tmp_path / "demos"
    extra = {
        "text file": out / "notes.txt",
        "pickle": out / "other.pickle",
        "nested text": next(p for p in out.rglob("*.memmap")).parent / "mine.txt",
    }[content]
    extra.write_text("keep me")
    before = sorted(str(p) for p in out.rglob("*"))
    with pytest.raises(UserError, match="not a demonstrations folder"):
        _toy(tmp_path, "demos", overwrite=True)
    assert sorted(str(p) for p in out.rglob("*")) == before and extra.read_text() == "keep me"


def test_overwrite_refuses_a_plain_folder_and_the_working_tree(tmp_path, monkeypatch):
    from vla_torchrl.errors import UserError

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a demonstrations folder"):
        collect(CollectConfig(env=TOY, out=str(plain), episodes=1, overwrite=True))
    assert (plain / "notes.txt").read_text() == "x"
    # the working directory and its parents, the home directory: refused even when empty
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for out in (".", str(work), "..", str(tmp_path), "/"):
        for overwrite in (True, False):
            with pytest.raises(UserError, match="working directory|filesystem root"):
                collect(CollectConfig(env=TOY, out=out, episodes=1, overwrite=overwrite))
    assert work.is_dir()
    home = tmp_path / "home"
    (home / "x").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for out in (home, home.parent / "home" / ".."):
        with pytest.raises(UserError, match="home directory|working directory"):
            collect(CollectConfig(env=TOY, out=str(out), episodes=1, overwrite=True))
    with pytest.raises(UserError, match="it is the home directory"):
        collect(CollectConfig(env=TOY, out=str(home), episodes=1, overwrite=True))
    assert (home / "x").is_dir()


# ------------------------------------ privileged=true: simulator state as labels (issue 14)


def test_privileged_on_the_toy_env_is_a_one_line_error(tmp_path):
    from vla_torchrl.errors import UserError

    with pytest.raises(UserError, match="privileged=true.*env.backend=maniskill"):
        _toy(tmp_path, "demos", privileged=True)


@pytest.mark.slow
@pytest.mark.maniskill
def test_maniskill_privileged_state_follows_the_physics(tmp_path):
    """The stored labels obey what must hold in the scene, checked step by step: the object
    rests until grasped, a held object moves with the gripper (a fixed offset), the grasp
    happens with the gripper at the object, and the expert's phases start at "approach"."""
    from vla_torchrl.envs.maniskill.expert import PHASES
    from vla_torchrl.keys import PRIVILEGED_KEY

    cfg = CollectConfig(
        env=EnvConfig(
            backend="maniskill",
            num_envs=1,
            width=40,
            height=32,
            max_episode_steps=60,
            options={"asset_source": "procedural"},
        ),
        out=str(tmp_path / "demos"),
        episodes=1,
        seed=1,
        filter_idle=False,
        privileged=True,
        progress_bar=False,
    )
    summary = collect(cfg)
    assert summary["kept_episodes"] == 1  # seed 1, episode 0: the expert solves it (measured)
    data = TensorDict.load_memmap(tmp_path / "demos").to_tensordict()
    s = data.get(PRIVILEGED_KEY)
    tcp, obj = s["tcp_position"], s["object_position"]
    grasped, phase = s["is_grasped"], s["expert_phase"]
    n = data.batch_size[0]
    assert tcp.shape == obj.shape == s["receptacle_position"].shape == (n, 3)
    assert phase[0] == PHASES.index("approach") and int(phase.max()) < len(PHASES)
    # the gripper's orientation is a rotation matrix at every step
    r = s["tcp_rotation"]
    assert r.shape == (n, 3, 3)
    eye = torch.eye(3).expand(n, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-4)
    assert torch.allclose(torch.linalg.det(r), torch.ones(n), atol=1e-4)
    first_grasp = int(grasped.nonzero()[0])
    # the resting object keeps its long-axis yaw (mod pi) until it is grasped
    yaw = s["object_yaw"][:first_grasp]
    assert yaw.shape == (first_grasp,)
    assert float(torch.sin(yaw - yaw[0]).abs().max()) < 0.02
    # before the grasp the object rests (< 5 mm drift) while the gripper travels (> 5 cm)
    assert float((obj[:first_grasp] - obj[0]).norm(dim=-1).max()) < 0.005
    assert float((tcp[:first_grasp] - tcp[0]).norm(dim=-1).max()) > 0.05
    # at the grasp the gripper is at the object (a few cm: the bbox centre vs the fingertips)
    assert float((tcp[first_grasp] - obj[first_grasp]).norm()) < 0.05
    # held, the object keeps its offset to the gripper (< 1.5 cm) while both move
    held = grasped.nonzero().flatten().tolist()
    held = [i for i in held if i >= first_grasp and bool(grasped[first_grasp : i + 1].all())]
    offset = obj[held] - tcp[held]
    assert float((offset - offset[0]).norm(dim=-1).max()) < 0.015
    assert float((obj[held[-1]] - obj[held[0]]).norm()) > 0.03


# ------------------------------------ expert_noise: DART-style perturbed collection (issue 14)


def test_expert_noise_executes_perturbed_actions_and_records_the_clean_ones():
    """With noise the env moves by expert + noise (checked against the toy's own dynamics by
    hand: agent' = clip(agent + step * clip(a))), while every recorded action is the oracle's
    clean action for the recorded state; without noise the two coincide."""
    from vla_torchrl.envs.toy import make_toy_env
    from vla_torchrl.recipes.collect import _play_round

    for noise in (0.0, 0.3):
        env = make_toy_env(3, seed=0, image_size=16, max_steps=6, terminate_on_success=False)
        seen = []  # (agent, target) before each step, the oracle's clean action there

        def expert(env=env, seen=seen):
            seen.append((env.agent.clone(), env.targets[:, 0].clone()))
            return env.oracle_action()

        steps, _, _ = _play_round(
            env, expert, 6, noise=noise, generator=torch.Generator().manual_seed(0)
        )
        step = env.config.step_size
        for t, rec in enumerate(steps):
            agent, target = seen[t]
            clean = ((target - agent) / step).clamp(-1, 1)
            torch.testing.assert_close(rec[ACTION_KEY][:, :2], clean)
            if t + 1 < len(steps):
                moved = seen[t + 1][0] - agent
                if noise == 0:
                    torch.testing.assert_close(moved, (agent + step * clean).clamp(-1, 1) - agent)
                else:  # the executed action differs from the recorded one by the noise
                    assert float((moved - step * clean).abs().max()) > 1e-3
        assert len(steps) == 6


def test_expert_noise_out_of_range_is_a_clear_config_error():
    from vla_torchrl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"expert_noise=0\.2 must be in \[0, 0\.05\]"):
        CollectConfig(expert_noise=0.2)


# ------------------------------------ policy=...: DAgger, a learned policy drives (issue 14)


def test_a_driver_moves_the_env_while_the_expert_labels_each_visited_state():
    """A driver that always pushes +x executes (the toy's dynamics by hand: x' = clip(x + 0.4));
    every record holds the oracle's action for the state the driver reached; with
    ``expert_share=1`` the expert executes again."""
    from vla_torchrl.envs.toy import make_toy_env
    from vla_torchrl.recipes.collect import _play_round

    push = torch.tensor([1.0, 0, 0, 0, 0, 0, -1.0])
    for share in (0.0, 1.0):
        env = make_toy_env(2, seed=3, image_size=16, max_steps=5, terminate_on_success=False)
        seen = []

        def expert(env=env, seen=seen):
            seen.append(env.agent.clone())
            return env.oracle_action()

        def driver(td, b=2):
            return push.expand(b, 7)

        steps, _, _ = _play_round(
            env, expert, 5, driver=driver, expert_share=share,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        step = env.config.step_size
        target = env.targets[:, 0]
        for t, rec in enumerate(steps):
            clean = ((target - seen[t]) / step).clamp(-1, 1)
            torch.testing.assert_close(rec[ACTION_KEY][:, :2], clean)
            if t + 1 < len(steps):
                moved = seen[t + 1] - seen[t]
                executed = push[:2].expand(2, 2) if share == 0 else clean
                torch.testing.assert_close(
                    moved, (seen[t] + step * executed).clamp(-1, 1) - seen[t]
                )


def test_collect_with_a_policy_keeps_every_episode_and_labels_with_the_expert(tmp_path):
    from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
    from vla_torchrl.training.policy import build_policy_from_config, save_policy

    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    policy = save_policy(build_policy_from_config(model, algo), tmp_path / "p", model, algo)
    summary, data = _toy(tmp_path, "dagger", policy=str(policy), filter_idle=False)
    assert summary["kept_episodes"] == 6  # failures too: the labels are the expert's
    assert (data.get(ACTION_KEY)[:, 6] == 1.0).all()  # the oracle's gripper, not the policy's
    assert data.batch_size[0] == summary["steps"]


# ------------------------------------ torch_threads: the policy's CPU threads while collecting


@pytest.mark.parametrize("threads", [1, None])
def test_collect_runs_torch_on_the_configured_threads_and_restores_them(
    tmp_path, monkeypatch, threads
):
    """The expert is called inside the run: it sees ``torch_threads`` (or torch's own count
    when None); the caller's count is back afterwards."""
    import vla_torchrl.recipes.collect as collect_module

    seen = []
    real = collect_module._expert

    def spying_expert(*args, **kwargs):
        act, state, noisy = real(*args, **kwargs)

        def counted():
            seen.append(torch.get_num_threads())
            return act()

        return counted, state, noisy

    monkeypatch.setattr(collect_module, "_expert", spying_expert)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _toy(tmp_path, f"threads-{threads}", torch_threads=threads)
        assert seen and set(seen) == {threads or 2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_torch_threads_below_one_is_a_clear_config_error():
    from vla_torchrl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"torch_threads=0 must be >= 1, or null"):
        CollectConfig(torch_threads=0)
