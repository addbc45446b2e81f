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
        assert abs(report[step]["error"]) < 0.05, (step, report[step])
