"""build_policy wiring, the separate-backbone critic, TorchRL ValueOperator composition."""

from __future__ import annotations

import pytest
import torch

from tests.modules.conftest import INSTRUCTIONS, make_batch
from vla_torchrl.keys import (
    ACTION_TOKENS_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    HIDDEN_KEY,
    TOKEN_LOG_PROBS_KEY,
    VALUE_KEY,
)
from vla_torchrl.modules import LoRASettings, build_policy, value_operator
from vla_torchrl.modules.checkpoint import save_openvla
from vla_torchrl.modules.passes import teacher_forced_hidden


def test_shared_critic_is_a_torchrl_value_operator_on_the_actor_features():
    bundle = build_policy("tiny", lora=LoRASettings(rank=4), text_tokenizer="builtin")
    td = bundle.actor(make_batch(INSTRUCTIONS))
    operator = value_operator(bundle.critic, in_key=HIDDEN_KEY, out_key="v_check")
    operator(td)
    torch.testing.assert_close(td["v_check"], td[VALUE_KEY])


def test_separate_critic_has_its_own_backbone():
    bundle = build_policy(
        "tiny", lora=LoRASettings(rank=4), critic="separate", text_tokenizer="builtin"
    )
    critic = bundle.critic
    assert critic.model is not bundle.model
    assert [g["name"] for g in bundle.param_groups] == ["lora", "value", "critic_backbone"]
    td = bundle.actor(make_batch(INSTRUCTIONS))
    images = td["observation", "image"]
    with torch.no_grad():
        hidden = teacher_forced_hidden(critic.model, bundle.processor, images, INSTRUCTIONS, None)
        torch.testing.assert_close(td[VALUE_KEY], critic.head(hidden[:, 0]))
    bundle.evaluator.train()
    bundle.evaluator(td)
    td[VALUE_KEY].sum().backward()
    policy_grads = [p.grad for p in bundle.param_groups[0]["params"]]
    critic_grads = [p.grad for p in bundle.param_groups[2]["params"]]
    assert all(g is None for g in policy_grads)  # value loss stays in the critic's backbone
    assert any(g is not None and g.abs().sum() > 0 for g in critic_grads)


def test_full_finetune_with_reference_copy():
    bundle = build_policy(
        "tiny", lora=False, critic="none", reference_copy=True, text_tokenizer="builtin"
    )
    assert [g["name"] for g in bundle.param_groups] == ["model"]
    td = bundle.actor(make_batch(INSTRUCTIONS))
    with torch.no_grad():
        for p in bundle.model.projector.parameters():
            p.add_(0.5)
        moved = bundle.evaluator(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
        with bundle.evaluator.reference():
            ref = bundle.evaluator(td.clone())[EVAL_TOKEN_LOG_PROBS_KEY]
    torch.testing.assert_close(ref, td[TOKEN_LOG_PROBS_KEY], atol=1e-4, rtol=0)
    assert not torch.allclose(moved, ref, atol=1e-4)


def test_checkpoint_source_needs_a_path():
    with pytest.raises(ValueError, match="checkpoint_path"):
        build_policy("checkpoint")


def test_checkpoint_source_loads(tmp_path):
    first = build_policy("tiny", lora=False, critic="none", text_tokenizer="builtin")
    save_openvla(first.model, tmp_path)
    again = build_policy(
        "checkpoint", checkpoint_path=tmp_path, lora=False, critic="none", text_tokenizer="builtin"
    )
    td = make_batch(INSTRUCTIONS)
    a = first.eval_actor(mode="greedy")(td.clone())
    b = again.eval_actor(mode="greedy")(td.clone())
    assert torch.equal(a[ACTION_TOKENS_KEY], b[ACTION_TOKENS_KEY])


def test_shared_value_network_matches_rollout_values():
    from vla_torchrl.modules import SharedValueNetwork

    bundle = build_policy("tiny", lora=LoRASettings(rank=4), text_tokenizer="builtin")
    td = bundle.actor(make_batch(INSTRUCTIONS))
    net = SharedValueNetwork(bundle.model, bundle.processor, bundle.critic, value_key="v")
    with torch.no_grad():
        net(td)
    torch.testing.assert_close(td["v"], td[VALUE_KEY], atol=1e-5, rtol=0)


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_trainable_state_round_trip(tmp_path, critic):
    def build():
        torch.manual_seed(0)
        return build_policy(
            "tiny", lora=LoRASettings(rank=4), critic=critic, text_tokenizer="builtin"
        )

    trained = build()
    with torch.no_grad():
        for group in trained.param_groups:
            for p in group["params"]:
                p.add_(0.05 * torch.randn_like(p))
    td = trained.actor(make_batch(INSTRUCTIONS))
    with torch.no_grad():
        expected = trained.evaluator(td.clone())
    trained.save_trainable(tmp_path / "state.safetensors")
    assert (tmp_path / "state.safetensors.adapters" / "adapter_config.json").is_file()
    fresh = build()
    with torch.no_grad():
        before = fresh.evaluator(td.clone())
        fresh.load_trainable(tmp_path / "state.safetensors")
        after = fresh.evaluator(td.clone())
    assert not torch.allclose(before[VALUE_KEY], expected[VALUE_KEY])
    torch.testing.assert_close(after[VALUE_KEY], expected[VALUE_KEY])
    torch.testing.assert_close(after[EVAL_TOKEN_LOG_PROBS_KEY], expected[EVAL_TOKEN_LOG_PROBS_KEY])
    other = build_policy("tiny", lora=LoRASettings(rank=4), critic="none", text_tokenizer="builtin")
    with pytest.raises(ValueError, match="does not match"):
        other.load_trainable(tmp_path / "state.safetensors")
