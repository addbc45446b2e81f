"""Issue #8 end to end: bad input is refused in one line before expensive work, a simulator error
during training costs one episode, and damaged checkpoints are never resumed from.

Bad inputs go through the real entry points (``vla_torchrl.recipes.train.main`` and
``vla_torchrl.recipes.evaluate.cli``, i.e. ``run_cli``) in this process, which is what the console
scripts call; ``test_train.py`` and ``test_errors.py`` check the exit status and ``--debug`` in
subprocesses.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import SMALL_TRAIN as SMALL
from vla_torchrl.config.load import compose_config
from vla_torchrl.envs.toy import ToyReachEnv
from vla_torchrl.evaluation import eval_loop
from vla_torchrl.recipes import evaluate as evaluate_module
from vla_torchrl.recipes import train as train_module
from vla_torchrl.training import loop as loop_module
from vla_torchrl.training import update as update_module
from vla_torchrl.training.checkpointing import CheckpointError, CheckpointManager
from vla_torchrl.training.run import start_run

# Hydra in-process: no log handlers on pytest's captured streams, no .hydra/ files
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none", "hydra.output_subdir=null"]


def _train_cli(tmp_path, *overrides, capsys):
    argv = ["--config-name", "train_cpu", *SMALL, f"run_dir={tmp_path / 'run'}", *overrides]
    status = train_module.main([*argv, *QUIET])
    return status, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("VLA_TORCHRL_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.mark.parametrize(
    ("overrides", "phrases"),
    [
        (["env.task=kitchen"], ["env.task='kitchen' is not a known task", "known tasks: ind"]),
        (["algo.name=a2c"], ["algo.name='a2c' is not a known algorithm", "ppo"]),
        (["algo=a2c"], ["Could not find 'algo/a2c'"]),
        (["optim.lr=-0.001"], ["optim.lr=-0.001 must be > 0", "1e-4"]),
        (["algo.clip_epsilon=0"], ["algo.clip_epsilon=0.0 must be > 0", "0.2"]),
        (["model.temperature=0"], ["model.temperature=0.0 must be > 0"]),
        (["model.lora_rank=0"], ["model.lora_rank=0 must be an integer >= 1"]),
        (["algo=grpo", "algo.critic=shared_h0"], ["algo.name=grpo", "algo.critic=none"]),
        (["algo=tpo", "algo.reference=none"], ["algo.name=tpo", "algo.reference=initial"]),
        (["device=cuda"], ["device='cuda' was requested but this machine has no CUDA device"]),
        (["model.checkpoint=/nonexistent/openvla"], ["model.checkpoint='/nonexistent/openvla'"]),
        (["model.init_from=/nonexistent/policy"], ["/nonexistent/policy"]),
        (["algo=true"], ["bad command line", "algo=true"]),
    ],
)
def test_train_bad_input_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, overrides, phrases
):
    if "device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    built = []
    monkeypatch.setattr(loop_module, "_make_env", lambda *a: built.append("env"))
    status, err = _train_cli(tmp_path, *overrides, capsys=capsys)
    line = _one_line(err)
    assert status == 2
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    if not any(o.startswith("model.") for o in overrides):
        assert not built  # refused during validation, before the env (or the model) is built


def test_model_checkpoint_missing_files_and_mismatched_shapes(tmp_path, capsys):
    from vla_torchrl.modules.config import OpenVLAConfig
    from vla_torchrl.modules.openvla import OpenVLA

    empty = tmp_path / "empty"
    empty.mkdir()
    status, err = _train_cli(tmp_path, f"model.checkpoint={empty}", capsys=capsys)
    line = _one_line(err)
    assert status == 2 and f"model.checkpoint='{empty}' cannot be loaded" in line
    assert "config.json" in line

    # a tiny checkpoint one of whose weights has the wrong shape
    from safetensors.torch import load_file, save_file

    from vla_torchrl.modules.checkpoint import save_openvla

    ckpt = tmp_path / "ckpt"
    save_openvla(OpenVLA(OpenVLAConfig.tiny()), ckpt)
    (weights,) = ckpt.glob("*.safetensors")
    tensors = load_file(str(weights))
    name = sorted(k for k, v in tensors.items() if v.ndim == 2)[0]
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    save_file(tensors, str(weights))
    status, err = _train_cli(tmp_path, f"model.checkpoint={ckpt}", capsys=capsys)
    line = _one_line(err)
    assert status == 2 and "cannot be loaded" in line and name in line and "shape" in line


def test_resume_from_a_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    CheckpointManager(run).save(16, tensors={"policy.lora_A": torch.zeros(3, 3)})
    status, err = _train_cli(tmp_path, "collector.total_env_steps=32", capsys=capsys)
    line = _one_line(err)
    assert status == 2 and "does not match the model being resumed" in line
    assert "missing" in line and "1 unexpected tensor(s), e.g. ['policy.lora_A']" in line


def test_assets_requested_but_not_found(tmp_path):
    from vla_torchrl.config.train_schema import EnvConfig
    from vla_torchrl.errors import ConfigError
    from vla_torchrl.training.environments import make_recipe_env

    options = {"asset_source": "rl4vla", "rl4vla_dir": str(tmp_path / "no-assets")}
    env = EnvConfig(backend="maniskill", options=options)
    with pytest.raises(ConfigError, match="asset_source='rl4vla' but no RL4VLA asset directory"):
        make_recipe_env(env, seed=0)
    with pytest.raises(ConfigError, match=r"env.options \['colour'\] are not options"):
        make_recipe_env(EnvConfig(backend="maniskill", options={"colour": 1}), seed=0)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["tasks=[kitchen]"], "unknown task(s) ['kitchen'] for the toy backend"),
        (["temperature=0"], "temperature=0.0 must be > 0"),
        (["device=cuda"], "no CUDA device"),
        (["episodes=0"], "episodes=0 must be >= 1"),
        (["seeds=[a,b]"], "seeds=['a', 'b'] is invalid: expected a list"),
        (["episode=3"], "Could not override 'episode'"),
        (["+episode=3"], "unknown config key(s) episode"),
        (["--nope"], "unknown option(s) --nope"),
        (["env.width=-1"], "env.width=-1 must be >= 1"),
    ],
)
def test_eval_bad_input_one_line(tmp_path, capsys, monkeypatch, args, phrase):
    if "cuda" in " ".join(args) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text("{}")
    argv = [f"policies.RL={policy}", "env=toy", f"out={tmp_path / 'e'}", *args]
    status = evaluate_module.main(argv)
    line = _one_line(capsys.readouterr().err)
    assert status == 2 and phrase in line, line


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--tasks", "kitchen"], "unknown task(s) ['kitchen'] for the toy backend"),
        (["--episodes", "0"], "episodes=0 must be >= 1"),
        (["--seeds", "a,b"], "seeds=['a', 'b'] is invalid: expected a list"),
        (["--policy", "RL"], "--policy 'RL' must look like LABEL=VALUE"),
    ],
)
def test_eval_deprecated_flags_still_work_with_one_deprecation_line(tmp_path, capsys, args, phrase):
    """The --flag spelling of the last release: translated to overrides, one line saying so."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text("{}")
    argv = ["--policy", f"RL={policy}", "--backend", "toy", "--out", str(tmp_path / "e"), *args]
    status = evaluate_module.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and phrase in err[-1], err
    if "--policy" not in args[:1]:
        assert len(err) == 2 and "deprecated" in err[0] and "Traceback" not in err[0]
        assert f"policies={{RL:'{policy}'}}" in err[0] and "env.backend='toy'" in err[0]


def test_eval_corrupt_policy_one_line(tmp_path, capsys):
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.json").write_text('{"model": {"name": "tiny", "lora_rank": "x"')
    argv = [f"policies.RL={policy}", "env=toy", f"out={tmp_path / 'e'}", "episodes=1"]
    argv += ["env.max_episode_steps=1", "env.width=16", "env.height=16"]
    status = evaluate_module.main(argv)
    line = _one_line(capsys.readouterr().err)
    assert status == 2 and "policy.json is not a valid policy description" in line


# ---------------------------------------------------------------------------- checkpoints


def test_resume_skips_a_truncated_or_corrupt_latest_checkpoint(tmp_path):
    """A damaged newest checkpoint is never picked: resume takes the previous complete one."""
    cfg = compose_config([*SMALL, f"run_dir={tmp_path}"], config_name="train_cpu")
    manager = CheckpointManager(tmp_path, keep_last=5)
    for step in (16, 32, 48):
        manager.save(step, tensors={"w": torch.full((4,), float(step))}, counters={"s": step})
    newest = manager.checkpoints()
    (newest[-1] / "tensors.safetensors").write_bytes(b"\x00" * 7)  # truncated
    data = bytearray((newest[-2] / "optimizer.pt").read_bytes())
    data[-5] ^= 0xFF  # one corrupt byte
    (newest[-2] / "optimizer.pt").write_bytes(bytes(data))
    ctx = start_run(cfg, tasks=["ind"], cuda_available=False)
    try:
        assert ctx.resumed.step == 16 and ctx.counters["s"] == 16
    finally:
        ctx.close()
    # the damaged ones were moved aside (named in the log), not deleted
    (aside,) = tmp_path.glob("discarded-*")
    assert manager.checkpoints() == newest[:1]
    with pytest.raises(CheckpointError, match="truncated"):
        manager.load(aside / newest[-1].name)
    with pytest.raises(CheckpointError, match="optimizer.pt is corrupt"):
        manager.load(aside / newest[-2].name)


# ---------------------------------------------------------------------------- simulator errors


@pytest.mark.slow
def test_simulator_error_during_training_is_counted_and_its_episodes_discarded(
    tmp_path, monkeypatch
):
    original = ToyReachEnv._step
    calls = {"n": 0}

    def flaky(self, tensordict):
        calls["n"] += 1
        if calls["n"] == 5:  # the first step of the 2nd rollout (4 steps per rollout)
            raise RuntimeError("injected simulator failure")
        return original(self, tensordict)

    monkeypatch.setattr(ToyReachEnv, "_step", flaky)
    sizes = []
    run_update = update_module.run_update

    def recording_update(batch, *args, **kwargs):
        sizes.append(batch.shape[0])
        return run_update(batch, *args, **kwargs)

    monkeypatch.setattr(update_module, "run_update", recording_update)
    cfg = compose_config(
        [*SMALL, f"run_dir={tmp_path}", "collector.total_env_steps=32", "checkpoint_every=16"],
        config_name="train_cpu",
    )
    loop_module.train(cfg)  # completes
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [16, 32]
    # the toy env is one batched simulator: its failed step voids the 4 envs' episodes, which
    # had just started (each rollout starts fresh episodes), so 4 of 16 steps are dropped
    assert [r["train/sim_errors"] for r in records] == [0, 4]
    assert sizes == [16, 12]
    # the counter survives a resume
    cfg = compose_config(
        [*SMALL, f"run_dir={tmp_path}", "collector.total_env_steps=48", "checkpoint_every=16"],
        config_name="train_cpu",
    )
    loop_module.train(cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/sim_errors"] for r in records] == [0, 4, 4]
    assert sizes == [16, 12, 16]


@pytest.mark.slow
def test_evaluation_replaces_episodes_void_by_a_simulator_error(tmp_path, monkeypatch):
    from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
    from vla_torchrl.training.policy import build_policy_from_config, save_policy

    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    policy = str(save_policy(build_policy_from_config(model, algo), tmp_path / "p", model, algo))
    original = ToyReachEnv._step
    calls = {"n": 0}

    def flaky(self, tensordict):
        calls["n"] += 1
        if calls["n"] == 2:  # 2nd step of the first round: both envs' episodes are void
            raise RuntimeError("injected simulator failure")
        return original(self, tensordict)

    monkeypatch.setattr(ToyReachEnv, "_step", flaky)
    eval_loop.evaluate(
        {"RL": policy},
        tasks=["ind"],
        seeds=[0],
        episodes=2,
        out_dir=tmp_path / "eval",
        backend="toy",
        num_envs=2,
        max_episode_steps=3,
        width=16,
        height=16,
        videos_per_task=0,
    )
    rows = [
        json.loads(line) for line in (tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()
    ]
    episodes = [r for r in rows if "episode_id" in r]
    # the two void episodes (ids 0 and 1) are not reported as failures; a 2nd round replaced them
    assert len(episodes) == 2 and not {0, 1} & {r["episode_id"] for r in episodes}
