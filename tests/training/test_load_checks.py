"""Loading checks (issue 17): dtypes and finite values of resumed checkpoints and saved policies."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.errors import UserError
from vla_torchrl.training.checkpointing import CheckpointError, check_tensors
from vla_torchrl.training.policy import (
    TRAINABLE_FILE,
    build_policy_from_config,
    load_policy,
    save_policy,
)


@pytest.mark.parametrize(
    ("saved", "needle"),
    [
        (torch.zeros(2, 3, dtype=torch.float16), "tensor w is float16, the model expects float32"),
        (torch.zeros(2, 3, dtype=torch.int64), "tensor w is int64, the model expects float32"),
        (torch.tensor([[0.0, float("nan"), 0.0]] * 2), "tensor w holds NaN or inf"),
        (torch.tensor([[0.0, float("inf"), 0.0]] * 2), "tensor w holds NaN or inf"),
    ],
)
def test_resumed_tensors_keep_dtype_and_are_finite(saved, needle):
    with pytest.raises(CheckpointError, match=needle) as info:
        check_tensors({"w": saved}, {"w": torch.zeros(2, 3)}, where="checkpoint X")
    assert str(info.value).startswith("checkpoint X: ") and "\n" not in str(info.value)
    check_tensors({"w": torch.ones(2, 3)}, {"w": torch.zeros(2, 3)}, where="X")  # fine


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    path = tmp_path_factory.mktemp("policy")
    return save_policy(build_policy_from_config(model, algo), path, model, algo)


def _copy_with(policy_dir, tmp_path, change):
    import shutil

    target = tmp_path / "policy"
    shutil.copytree(policy_dir, target)
    state = load_file(str(target / TRAINABLE_FILE))
    name = sorted(state)[0]
    state[name] = change(state[name])
    save_file(state, str(target / TRAINABLE_FILE), metadata={"format": "pt"})
    return target, name


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t.to(torch.int64), "is int64, the model expects float32"),
        (lambda t: t.to(torch.float16), "is float16, the model expects float32"),
        (lambda t: torch.full_like(t, float("nan")), "holds NaN or inf values"),
    ],
)
def test_policy_load_refuses_other_dtypes_and_nan(policy_dir, tmp_path, change, needle):
    target, name = _copy_with(policy_dir, tmp_path, change)
    with pytest.raises(UserError) as info:
        load_policy(target)
    message = str(info.value)
    assert needle in message and str(target / TRAINABLE_FILE) in message and name in message
    assert "\n" not in message
    load_policy(policy_dir)  # the untouched policy still loads
