"""LoRA: frozen base, value-loss gradient into the adapters, reference policy, save/load, bf16."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.modules.conftest import INSTRUCTIONS, make_batch, make_tiny_model
from vla_torchrl.keys import (
    ACTION_TOKENS_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    TOKEN_LOG_PROBS_KEY,
    VALUE_KEY,
)
from vla_torchrl.modules.actor import OpenVLAActor
from vla_torchrl.modules.critic import ValueHead
from vla_torchrl.modules.evaluator import OpenVLAEvaluator
from vla_torchrl.modules.lora import (
    LoRASettings,
    apply_lora,
    base_model,
    load_adapters,
    save_adapters,
    trainable_parameter_groups,
)
from vla_torchrl.modules.processors import OpenVLAProcessor


def _rollout(model, processor):
    td = make_batch(INSTRUCTIONS)
    OpenVLAActor(model, processor, mode="greedy")(td)
    return td


def _perturb_adapters(peft_model, scale=0.5):
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale)


def test_value_loss_reaches_adapters_and_not_base_weights():
    model = make_tiny_model()
    processor = OpenVLAProcessor.from_config(model.config, text_tokenizer="builtin")
    td = _rollout(model, processor)
    peft_model = apply_lora(model, LoRASettings(rank=4))
    head = ValueHead(model.config.llm_hidden_size)
    groups = trainable_parameter_groups(peft_model, head)
    assert [g["name"] for g in groups] == ["lora", "value"]
    evaluator = OpenVLAEvaluator(model, processor, critic=head, peft_model=peft_model)
    evaluator.train()
    evaluator(td)
    loss = (td[VALUE_KEY] - 1.0).pow(2).mean()  # value loss only
    loss.backward()
    base = [(n, p) for n, p in peft_model.named_parameters() if "lora_" not in n]
    assert base and all(p.grad is None and not p.requires_grad for _, p in base)
    lm_b = [
        p.grad for n, p in peft_model.named_parameters() if "language_model" in n and "lora_B" in n
    ]
    assert lm_b and any(g is not None and g.abs().sum() > 0 for g in lm_b)
    vision_b = [
        p.grad
        for n, p in peft_model.named_parameters()
        if "vision_backbone.featurizer" in n and "lora_B" in n
    ]
    assert any(g is not None and g.abs().sum() > 0 for g in vision_b)


def test_reference_disables_adapters():
    model = make_tiny_model()
    frozen = copy.deepcopy(model)  # independent copy of the starting policy
    processor = OpenVLAProcessor.from_config(model.config, text_tokenizer="builtin")
    td = _rollout(model, processor)
    peft_model = apply_lora(model, LoRASettings(rank=4))
    _perturb_adapters(peft_model)
    evaluator = OpenVLAEvaluator(model, processor, peft_model=peft_model)
    with torch.no_grad():
        adapted = evaluator(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
        with evaluator.reference():
            ref = evaluator(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
        start = OpenVLAEvaluator(frozen, processor)(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
    torch.testing.assert_close(ref, start, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref, td[TOKEN_LOG_PROBS_KEY], atol=1e-4, rtol=0)
    assert (adapted - ref).abs().max() > 1e-3


def test_reference_model_copy_without_lora():
    model = make_tiny_model()
    other = make_tiny_model(seed=3)
    processor = OpenVLAProcessor.from_config(model.config, text_tokenizer="builtin")
    td = _rollout(model, processor)
    evaluator = OpenVLAEvaluator(other, processor, reference_model=model)
    with torch.no_grad(), evaluator.reference():
        ref = evaluator(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
    torch.testing.assert_close(ref, td[TOKEN_LOG_PROBS_KEY], atol=1e-4, rtol=0)
    assert evaluator.model is other


def test_adapters_save_and_load(tmp_path):
    model = make_tiny_model()
    processor = OpenVLAProcessor.from_config(model.config, text_tokenizer="builtin")
    td = _rollout(model, processor)
    peft_model = apply_lora(model, LoRASettings(rank=4))
    _perturb_adapters(peft_model)
    with torch.no_grad():
        expected = OpenVLAEvaluator(model, processor)(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
    save_adapters(peft_model, tmp_path / "adapters")
    loaded = load_adapters(make_tiny_model(), tmp_path / "adapters")
    with torch.no_grad():
        got = OpenVLAEvaluator(base_model(loaded), processor)(td.clone())
    torch.testing.assert_close(got[EVAL_TOKEN_LOG_PROBS_KEY], expected, atol=1e-6, rtol=0)


def test_bf16_actor_and_evaluator_run():
    model = make_tiny_model().to(torch.bfloat16)
    processor = OpenVLAProcessor.from_config(
        model.config, text_tokenizer="builtin", dtype=torch.bfloat16
    )
    peft_model = apply_lora(model, LoRASettings(rank=4))
    head = ValueHead(model.config.llm_hidden_size)
    td = make_batch(INSTRUCTIONS)
    OpenVLAActor(model, processor, critic=head)(td)
    assert td[ACTION_TOKENS_KEY].dtype == torch.int64
    evaluator = OpenVLAEvaluator(model, processor, critic=head, peft_model=peft_model)
    evaluator(td)
    assert td[EVAL_TOKEN_LOG_PROBS_KEY].dtype == torch.float32
    assert torch.isfinite(td[EVAL_TOKEN_LOG_PROBS_KEY]).all()
    # bf16 teacher forcing agrees with bf16 generation up to bf16 rounding
    torch.testing.assert_close(
        td[EVAL_TOKEN_LOG_PROBS_KEY], td[TOKEN_LOG_PROBS_KEY], atol=0.1, rtol=0
    )
    td[VALUE_KEY].sum().backward()


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = make_tiny_model()
        processor = OpenVLAProcessor.from_config(model.config, text_tokenizer="builtin")
        td = _rollout(model, processor)
        peft_model = apply_lora(model, LoRASettings(rank=4))
        _perturb_adapters(peft_model, scale=0.1)
        model.set_gradient_checkpointing(checkpointing)
        evaluator = OpenVLAEvaluator(model, processor, peft_model=peft_model).train()
        evaluator(td)[EVAL_TOKEN_LOG_PROBS_KEY].sum().backward()
        grads.append(
            torch.cat(
                [p.grad.flatten() for n, p in peft_model.named_parameters() if p.grad is not None]
            )
        )
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_policies_saved_with_adapters_on_the_unused_vit_block_still_load(tmp_path):
    """Before the last ViT blocks were excluded, saved policies held (untrained) adapters there."""
    from safetensors.torch import load_file, save_file

    from vla_torchrl.modules import build_policy

    torch.manual_seed(0)
    bundle = build_policy(
        "tiny", lora=LoRASettings(rank=2), critic="shared", text_tokenizer="builtin"
    )
    path = tmp_path / "trainable.safetensors"
    bundle.save_trainable(path)
    state = load_file(str(path))
    last = len(bundle.model.vision_backbone.featurizer.blocks) - 1
    legacy = f"policy.base_model.model.vision_backbone.featurizer.blocks.{last}.attn.qkv.lora_A.default.weight"
    save_file({**state, legacy: torch.zeros(2, 32)}, str(path))
    bundle.load_trainable(path)  # the legacy adapter is dropped, everything else must match
    save_file({**state, "policy.something.else": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="unexpected"):
        bundle.load_trainable(path)
