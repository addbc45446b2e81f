"""What an update costs in memory: checkpointing applies, adapters stay in the model dtype and
every adapter is used (issue 18)."""

from __future__ import annotations

import pytest
import torch

from vla_torchrl.modules import LoRASettings, build_policy
from vla_torchrl.objectives import VLAPPOLoss
from vla_torchrl.planning.counter import LiveStorageCounter
from vla_torchrl.planning.memory import run_steps, synthetic_batch
from vla_torchrl.training.update import run_update


def _policy(*, critic="shared", gradient_checkpointing=False, dtype=torch.float32, **lora):
    return build_policy(
        "tiny",
        lora=LoRASettings(rank=2, **lora),
        critic=critic,
        text_tokenizer="builtin",
        gradient_checkpointing=gradient_checkpointing,
        dtype=dtype,
    )


def _update(bundle, *, n=4, minibatch=2):
    """One optimizer step of PPO over ``n`` synthetic transitions (2 minibatches)."""
    loss = VLAPPOLoss(bundle.evaluator)
    params = list(bundle.trainable_named_parameters().values())
    batch = synthetic_batch(bundle.model.config, n, frame_hw=(32, 32))
    return run_update(
        batch,
        loss,
        torch.optim.AdamW(bundle.param_groups),
        params,
        minibatch_size=minibatch,
        grad_accum_steps=n // minibatch,
        shuffle=False,
    )


def _count_calls(monkeypatch, modules):
    """Forward calls of ``modules`` (a checkpointed layer's MLP runs again in the backward).

    The class's ``forward`` is wrapped: the recomputation in the backward does not run module
    hooks, so hooks would not see it.
    """
    ids = {id(m) for m in modules}
    calls = {"n": 0}
    for cls in {type(m) for m in modules}:
        original = cls.forward

        def forward(self, *args, _original=original, **kwargs):
            if id(self) in ids:
                calls["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", forward)
    return calls


def _llm_mlps(model):
    return [layer.mlp for layer in model.language_model.model.layers]


def _vision_mlps(model):
    towers = (model.vision_backbone.featurizer, model.vision_backbone.fused_featurizer)
    return [block.mlp for tower in towers for block in tower.blocks[:-1]]  # the blocks used


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_checkpointing_recomputes_the_llm_layers_in_an_update(checkpointing, monkeypatch):
    bundle = _policy(gradient_checkpointing=checkpointing)
    mlps = _llm_mlps(bundle.model)
    calls = _count_calls(monkeypatch, mlps)
    _update(bundle)  # 2 minibatches
    # each layer runs once per minibatch, twice with checkpointing (recomputed in the backward)
    assert calls["n"] == len(mlps) * 2 * (2 if checkpointing else 1)
    assert not bundle.model.training  # the rollout / evaluation mode is back after the update


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_checkpointing_recomputes_the_vision_blocks_in_an_update(
    checkpointing, monkeypatch
):
    bundle = _policy(gradient_checkpointing=checkpointing)
    mlps = _vision_mlps(bundle.model)
    calls = _count_calls(monkeypatch, mlps)
    _update(bundle)
    assert calls["n"] == len(mlps) * 2 * (2 if checkpointing else 1)


def test_rollout_is_not_checkpointed(monkeypatch):
    bundle = _policy(gradient_checkpointing=True)
    calls = _count_calls(monkeypatch, _llm_mlps(bundle.model))
    td = synthetic_batch(bundle.model.config, 2, frame_hw=(32, 32), with_training_keys=False)
    with torch.no_grad():
        bundle.actor(td)
    assert calls["n"] == len(_llm_mlps(bundle.model)) * 7  # prefill + 6 cached decode steps


def test_checkpointed_update_gives_the_same_step():
    after = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        bundle = _policy(gradient_checkpointing=checkpointing)
        with torch.no_grad():
            for name, p in bundle.trainable_named_parameters().items():
                if "lora_B" in name:
                    p.normal_(0.0, 0.1)
        _update(bundle)
        after.append(
            torch.cat([p.detach().flatten() for p in bundle.trainable_named_parameters().values()])
        )
    torch.testing.assert_close(after[0], after[1], atol=1e-5, rtol=1e-4)


def test_lora_adapters_keep_the_model_dtype():
    bundle = _policy(dtype=torch.bfloat16)
    dtypes = {p.dtype for n, p in bundle.peft_model.named_parameters() if "lora_" in n}
    assert dtypes == {torch.bfloat16}


def _update_activation_peak(bundle):
    counter = LiveStorageCounter(round_to=1)
    with counter:
        update, _, _ = run_steps(
            bundle, counter, minibatch_size=4, grad_accum_steps=1, num_envs=1, frame_hw=(32, 32)
        )
    return update["activations"]


def test_bf16_adapters_remove_the_dtype_cast_copies_from_the_update():
    # the hidden size makes the LoRA layers' inputs dominate the activations, as on the 7B model
    overrides = {"llm_hidden_size": 256, "llm_intermediate_size": 512}
    peaks = {}
    for adapter_dtype in ("model", "float32"):
        torch.manual_seed(0)
        bundle = build_policy(
            "tiny",
            overrides=overrides,
            lora=LoRASettings(rank=2, adapter_dtype=adapter_dtype),
            critic="shared",
            text_tokenizer="builtin",
            dtype=torch.bfloat16,
        )
        peaks[adapter_dtype] = _update_activation_peak(bundle)
    # fp32 adapters keep an fp32 copy of each bf16 LoRA input for the backward (3x the bytes)
    assert peaks["model"] < 0.8 * peaks["float32"], peaks


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_every_trainable_tensor_gets_a_gradient(critic):
    bundle = _policy(critic=critic)
    params = bundle.trainable_named_parameters()
    loss = VLAPPOLoss(bundle.evaluator)
    batch = synthetic_batch(bundle.model.config, 2, frame_hw=(32, 32))
    sum(v for k, v in loss(batch).items() if k.startswith("loss_")).backward()
    missing = sorted(name for name, p in params.items() if p.grad is None)
    assert not missing, missing[:6]
