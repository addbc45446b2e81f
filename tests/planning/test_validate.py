"""The fake-tensor estimate equals the real CPU allocator's peak within 5% (issue 18)."""

from __future__ import annotations

import platform

import pytest
import torch

from vla_torchrl.modules import LoRASettings
from vla_torchrl.planning.validate import compare

pytestmark = [
    pytest.mark.skipif(platform.system() != "Linux", reason="reads glibc's allocator"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

# a small model whose tensors dwarf the allocator's own noise (~40 MB of weights)
OVERRIDES = {"image_size": 56, "llm_hidden_size": 256, "llm_intermediate_size": 512}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("critic", "checkpointing", "dtype"),
    [
        ("shared", False, torch.float32),
        ("separate", True, torch.float32),
        ("shared", True, torch.bfloat16),
    ],
)
def test_estimate_matches_the_real_allocator_peak(critic, checkpointing, dtype):
    """Within 5% where ATen's own kernels run. On a CPU whose bf16 matmuls go through oneDNN
    (AVX-512 / AMX: ``_is_mkldnn_bf16_supported``) the allocator also holds oneDNN's private
    reorder and scratch buffers, which no tensor trace sees: measured on such a CI machine, the
    bf16 update step peaked at 94.0 MB against an estimate of 45.2 MB. There the estimate is
    checked as what it then is, a lower bound of the real peak."""
    onednn_bf16 = dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    report = compare(
        policy_kwargs={
            "lora": LoRASettings(rank=4),
            "critic": critic,
            "text_tokenizer": "builtin",
            "overrides": OVERRIDES,
            "dtype": dtype,
            "gradient_checkpointing": checkpointing,
        },
        minibatch_size=4,
        grad_accum_steps=2,
        num_envs=4,
        frame_hw=(64, 64),
    )
    for step in ("update", "rollout"):
        if onednn_bf16:
            assert report[step]["error"] < 0.05, (step, report[step])
        else:
            assert abs(report[step]["error"]) < 0.05, (step, report[step])


@pytest.mark.slow
def test_frozen_vision_has_no_gradients_or_adamw_state():
    """``freeze_vision``: the towers and projector still require grad (so checkpoints keep them)
    but are out of the optimizer and run under ``no_grad``. The estimate must drop exactly their
    gradients and their two AdamW moments, keep their weights (as frozen), save fewer
    activations, and still match the real allocator's peak."""
    from vla_torchrl.modules import build_policy
    from vla_torchrl.planning.memory import estimate_memory

    towers = {"embed_dim": 64, "depth": 2, "num_heads": 2}
    policy_kwargs = {
        "lora": False,
        "critic": "shared",
        "text_tokenizer": "builtin",
        "overrides": {**OVERRIDES, "dino": towers, "siglip": towers},
    }
    steps = dict(loss="ppo", minibatch_size=4, grad_accum_steps=2, num_envs=4, frame_hw=(64, 64))
    plain = estimate_memory(policy_kwargs=policy_kwargs, round_to=1, **steps)
    frozen_kwargs = {**policy_kwargs, "freeze_vision": True}
    frozen = estimate_memory(policy_kwargs=frozen_kwargs, round_to=1, **steps)

    model = build_policy("tiny", **policy_kwargs).model
    parts = (model.vision_backbone, model.projector)
    params = [p for part in parts for p in part.parameters()]
    vision = sum(p.numel() * p.element_size() for p in params)
    assert vision > 0.02 * plain.update["trainable_weights"]  # not lost in the rounding
    assert plain.update["gradients"] - frozen.update["gradients"] == vision
    # AdamW's two moments, and its float32 ``step`` scalar per tensor
    adamw = 2 * vision + 4 * len(params)
    assert plain.update["optimizer_state"] - frozen.update["optimizer_state"] == adamw
    assert frozen.update["frozen_weights"] - plain.update["frozen_weights"] == vision
    assert frozen.update["activations"] < plain.update["activations"]
    # the rollout step (no_grad either way) runs beside the weights and the AdamW state
    assert frozen.rollout_peak < plain.rollout_peak

    report = compare(policy_kwargs=frozen_kwargs, **steps)
    for step in ("update", "rollout"):
        assert abs(report[step]["error"]) < 0.05, (step, report[step])
