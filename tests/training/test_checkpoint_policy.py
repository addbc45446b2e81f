"""training/checkpoint_policy.py: the policy a run held at one of its checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import SMALL_TRAIN
from vla_torchrl.config.load import compose_config
from vla_torchrl.errors import UserError
from vla_torchrl.training.checkpoint_policy import export_checkpoint_policy, main
from vla_torchrl.training.checkpointing import CheckpointManager
from vla_torchrl.training.loop import train
from vla_torchrl.training.policy import load_policy


def _tensors(policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.trainable_named_parameters().items()}


@pytest.mark.slow
def test_the_last_checkpoint_gives_the_runs_policy_and_an_earlier_one_its_own_step(tmp_path):
    """A PPO run checkpointing every rollout: the export of its last checkpoint equals the policy
    the run wrote at its end, tensor for tensor; the export of the first checkpoint holds that
    checkpoint's tensors, which training moved since."""
    run = tmp_path / "run"
    cfg = compose_config(
        [
            *SMALL_TRAIN,
            "algo=ppo",
            "model.finetune=full",
            "optim.lr=1e-3",
            "collector.total_env_steps=48",
            "collector.eval_every=0",
            "checkpoint_every=16",
            "keep_last=5",
            f"run_dir={run}",
        ],
        config_name="train_cpu",
    )
    train(cfg)
    checkpoints = CheckpointManager(run).checkpoints()
    assert len(checkpoints) == 3
    final = _tensors(load_policy(run / "policy"))
    last = _tensors(load_policy(export_checkpoint_policy(checkpoints[-1], tmp_path / "last")))
    assert final.keys() == last.keys()
    assert all(torch.equal(final[k], last[k]) for k in final)
    first = _tensors(load_policy(export_checkpoint_policy(checkpoints[0], tmp_path / "first")))
    saved = load_file(str(checkpoints[0] / "tensors.safetensors"))
    assert all(torch.equal(first[k], saved[k]) for k in first)
    assert any(not torch.equal(first[k], final[k]) for k in first)


def test_bad_checkpoints_are_refused_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "is not a checkpoint directory (no manifest.json)" in capsys.readouterr().err
    assert main([]) == 2
    with pytest.raises(UserError, match="no manifest.json"):
        export_checkpoint_policy(tmp_path / "missing", tmp_path / "out")


def test_an_sft_run_with_statistics_from_its_demos_is_refused(tmp_path):
    """Its checkpoints do not hold the statistics the demos gave: an export would un-normalise
    actions with the wrong q01/q99."""
    run = tmp_path / "sft"
    cfg = compose_config(
        [*SMALL_TRAIN, "algo=sft", "algo.epochs=1", "algo.demo_episodes=4", f"run_dir={run}"],
        config_name="train_cpu",
    )
    train(cfg)
    checkpoint = CheckpointManager(run).checkpoints()[-1]
    with pytest.raises(UserError, match="algo.norm_stats=demos: its checkpoints do not hold"):
        export_checkpoint_policy(checkpoint, tmp_path / "out")


def test_tensors_that_do_not_fit_the_runs_policy_are_refused_by_name(tmp_path):
    """A checkpoint whose manifest checks out but whose tensors do not fit the policy its config
    builds (here: one weight with the wrong shape, then one missing) is refused with the
    tensor's name, and nothing is written."""
    import dataclasses
    import json

    from vla_torchrl.training.policy import build_policy_from_config

    cfg = compose_config([*SMALL_TRAIN, "algo=ppo"], config_name="train_cpu")
    bundle = build_policy_from_config(cfg.model, cfg.algo)
    tensors = _tensors(bundle)
    name = next(iter(tensors))
    config = json.dumps(dataclasses.asdict(cfg)).encode()
    manager = CheckpointManager(tmp_path / "run")
    wrong = {**tensors, name: torch.zeros(*tensors[name].shape[:-1], tensors[name].shape[-1] + 1)}
    checkpoint = manager.save(16, tensors=wrong, extra_files={"config.json": config})
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        export_checkpoint_policy(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    missing = {k: v for k, v in tensors.items() if k != name}
    checkpoint = manager.save(32, tensors=missing, extra_files={"config.json": config})
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        export_checkpoint_policy(checkpoint, tmp_path / "out")
    # the bundle itself is left untouched when the last tensor is the one that does not fit
    last = list(tensors)[-1]
    moved = {k: v + 1.0 for k, v in tensors.items()}
    moved[last] = torch.zeros(tensors[last].numel() + 1)
    with pytest.raises(ValueError, match="'ckpt': .*saved shape"):
        bundle.load_trainable_state(moved, source="'ckpt'")
    assert all(torch.equal(v, tensors[k]) for k, v in _tensors(bundle).items())
    # the unchanged tensors export, and the policy holds them
    checkpoint = manager.save(48, tensors=tensors, extra_files={"config.json": config})
    back = _tensors(load_policy(export_checkpoint_policy(checkpoint, tmp_path / "out")))
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
