"""Hardware-gated tests: the 7B layout on a GPU, and a real checkpoint directory.

Deselected by default (markers ``gpu`` and ``real_checkpoint``, see pyproject.toml); run with
``pytest -m gpu tests/modules`` / ``VLA_TORCHRL_CHECKPOINT=/path/to/openvla-7b pytest -m
real_checkpoint tests/modules``.
"""

from __future__ import annotations

import os

import pytest
import torch

from tests.modules.conftest import INSTRUCTIONS, make_batch
from vla_torchrl.keys import (
    ACTION_KEY,
    ACTION_TOKENS_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    TOKEN_LOG_PROBS_KEY,
    VALUE_KEY,
)
from vla_torchrl.modules import build_policy


@pytest.mark.gpu
def test_7b_random_weights_generate_and_evaluate_on_gpu():
    if not torch.cuda.is_available():
        pytest.fail("marker 'gpu' selected but no CUDA device is visible")
    bundle = build_policy(
        "random", critic="shared", text_tokenizer="builtin", device="cuda", dtype=torch.bfloat16
    )
    td = make_batch(INSTRUCTIONS, size=224)
    bundle.actor(td)
    assert td[ACTION_TOKENS_KEY].shape == (3, 7) and td[VALUE_KEY].shape == (3, 1)
    bundle.evaluator.train()
    bundle.evaluator(td)
    diff = (td[EVAL_TOKEN_LOG_PROBS_KEY] - td[TOKEN_LOG_PROBS_KEY].to("cuda")).abs().max()
    assert diff < 0.2  # bf16 teacher forcing vs cached generation
    td[EVAL_TOKEN_LOG_PROBS_KEY].sum().backward()


@pytest.mark.real_checkpoint
def test_real_checkpoint_predicts_one_action():
    path = os.environ.get("VLA_TORCHRL_CHECKPOINT")
    if not path:
        pytest.skip("set VLA_TORCHRL_CHECKPOINT to a local openvla-7b directory")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bundle = build_policy(
        "checkpoint",
        checkpoint_path=path,
        lora=False,
        critic="none",
        unnorm_key="bridge_orig",
        device=device,
        dtype=torch.bfloat16,
    )
    assert sum(p.numel() for p in bundle.model.parameters()) == 7_541_237_184
    td = make_batch(INSTRUCTIONS[:1], size=224)
    bundle.eval_actor(mode="greedy")(td)
    tokens = td[ACTION_TOKENS_KEY]
    assert tokens.min() >= 31744 and tokens.max() <= 31999
    assert torch.isfinite(td[ACTION_KEY]).all()
