"""Actor generation vs the teacher-forced evaluator and a full-vocabulary reference forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.modules.conftest import INSTRUCTIONS, NORM_STATS, make_batch
from vla_torchrl.keys import (
    ACTION_KEY,
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    EVAL_ENTROPY_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    HIDDEN_KEY,
    TOKEN_LOG_PROBS_KEY,
    VALUE_KEY,
)
from vla_torchrl.modules.actor import OpenVLAActor
from vla_torchrl.modules.critic import ValueHead
from vla_torchrl.modules.evaluator import OpenVLAEvaluator


def _reference_logits(model, processor, td, tokens):
    """Full-vocabulary logits of [BOS, patches, prompt, tokens] (OpenVLA.forward), per sample,
    unpadded: rows are [..., vocab] at the 7 positions that predict the action tokens."""
    out = []
    for i in range(td.shape[0]):
        ids = processor.prompt_tokenizer.encode(td[i]["language_instruction"])
        ids = torch.tensor([ids + tokens[i].tolist()])
        pixels = processor.image_processor(td[i]["observation", "image"][None])
        with torch.no_grad():
            logits = model(pixels, ids, torch.ones_like(ids))
        out.append(logits[0, -8:-1])
    return torch.stack(out)


@pytest.mark.parametrize("uniform", [False, True], ids=["left-padded", "no-padding"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_log_probs_match_teacher_forced(tiny_model, processor, use_cache, uniform):
    td = make_batch([INSTRUCTIONS[0]] * 3 if uniform else INSTRUCTIONS)
    actor = OpenVLAActor(tiny_model, processor, temperature=1.0, use_cache=use_cache)
    actor(td)
    evaluator = OpenVLAEvaluator(tiny_model, processor, temperature=1.0)
    with torch.no_grad():
        evaluator(td)
    torch.testing.assert_close(
        td[EVAL_TOKEN_LOG_PROBS_KEY], td[TOKEN_LOG_PROBS_KEY], atol=1e-4, rtol=0
    )
    summed = td[EVAL_TOKEN_LOG_PROBS_KEY].sum(-1)
    torch.testing.assert_close(td[ACTION_LOG_PROB_KEY], summed, atol=1e-4, rtol=0)
    # independent reference: full-vocabulary logits sliced to the action ids, softmax by hand
    logits = _reference_logits(tiny_model, processor, td, td[ACTION_TOKENS_KEY])
    restricted = logits[..., 31744:32000].double()
    logp = restricted - torch.logsumexp(restricted, -1, keepdim=True)
    picked = logp.gather(-1, (td[ACTION_TOKENS_KEY] - 31744).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(td[TOKEN_LOG_PROBS_KEY].double(), picked, atol=1e-4, rtol=0)
    ent = -(logp.exp() * logp).sum(-1)
    torch.testing.assert_close(td[EVAL_ENTROPY_KEY].double(), ent, atol=1e-4, rtol=0)


def test_sample_alone_equals_inside_left_padded_batch(tiny_model, processor):
    actor = OpenVLAActor(tiny_model, processor, mode="greedy", temperature=0.6)
    batch = actor(make_batch(INSTRUCTIONS))
    lengths = {len(processor.prompt_tokenizer.encode(t)) for t in INSTRUCTIONS}
    assert len(lengths) == 3  # the batch really is left-padded
    for i in range(len(INSTRUCTIONS)):
        alone = actor(make_batch(INSTRUCTIONS)[i : i + 1])
        assert torch.equal(alone[ACTION_TOKENS_KEY][0], batch[ACTION_TOKENS_KEY][i])
        torch.testing.assert_close(
            alone[TOKEN_LOG_PROBS_KEY][0], batch[TOKEN_LOG_PROBS_KEY][i], atol=1e-4, rtol=0
        )
    evaluator = OpenVLAEvaluator(tiny_model, processor, temperature=0.6)
    with torch.no_grad():
        evaluator(batch)
    torch.testing.assert_close(
        batch[EVAL_TOKEN_LOG_PROBS_KEY], batch[TOKEN_LOG_PROBS_KEY], atol=1e-4, rtol=0
    )


def test_greedy_tokens_and_actions_follow_the_formulas(tiny_model, processor):
    td = make_batch(INSTRUCTIONS)
    OpenVLAActor(tiny_model, processor, mode="greedy", temperature=0.6)(td)
    tokens = td[ACTION_TOKENS_KEY]
    logits = _reference_logits(tiny_model, processor, td, tokens)
    expected_ids = logits[..., 31744:32000].argmax(-1) + 31744
    assert torch.equal(tokens, expected_ids)
    # decode + unnormalise by hand (FACTS.md formulas, NumPy)
    bins = np.linspace(-1, 1, 256)
    centers = (bins[:-1] + bins[1:]) / 2
    normalized = centers[np.clip(32000 - tokens.numpy() - 1, 0, 254)]
    stats = NORM_STATS["bridge_orig"]["action"]
    q01, q99, mask = (np.array(stats[k]) for k in ("q01", "q99", "mask"))
    expected = np.where(mask, 0.5 * (normalized + 1) * (q99 - q01) + q01, normalized)
    np.testing.assert_allclose(td[ACTION_KEY].numpy(), expected, atol=1e-6)


def test_cached_and_uncached_greedy_agree(tiny_model, processor):
    a = OpenVLAActor(tiny_model, processor, mode="greedy")(make_batch(INSTRUCTIONS))
    b = OpenVLAActor(tiny_model, processor, mode="greedy", use_cache=False)(
        make_batch(INSTRUCTIONS)
    )
    assert torch.equal(a[ACTION_TOKENS_KEY], b[ACTION_TOKENS_KEY])
    torch.testing.assert_close(a[TOKEN_LOG_PROBS_KEY], b[TOKEN_LOG_PROBS_KEY], atol=1e-4, rtol=0)


@pytest.mark.parametrize("critic_input", ["h0", "hn", "concat"])
def test_actor_and_evaluator_values_agree(tiny_model, processor, critic_input):
    width = {"h0": 64, "hn": 64, "concat": 8 * 64}[critic_input]
    head = ValueHead(width)
    td = make_batch(INSTRUCTIONS)
    actor = OpenVLAActor(tiny_model, processor, critic=head, critic_input=critic_input)
    actor(td)
    assert td[VALUE_KEY].shape == (3, 1)
    assert td[HIDDEN_KEY].shape == (3, width)
    rollout_value = td[VALUE_KEY].clone()
    # the head on the stored (detached) features is the rollout value
    torch.testing.assert_close(head(td[HIDDEN_KEY]), rollout_value)
    evaluator = OpenVLAEvaluator(tiny_model, processor, critic=head, critic_input=critic_input)
    with torch.no_grad():
        evaluator(td)
    torch.testing.assert_close(td[VALUE_KEY], rollout_value, atol=1e-4, rtol=0)


def test_batch_dims_and_shared_instruction(tiny_model, processor):
    td = make_batch(INSTRUCTIONS[:2])
    td2 = torch.stack([td, td], dim=1)  # [B=2, T=2]
    OpenVLAActor(tiny_model, processor, mode="greedy")(td2)
    assert td2[ACTION_TOKENS_KEY].shape == (2, 2, 7)
    assert td2[ACTION_LOG_PROB_KEY].shape == (2, 2)
    assert torch.equal(td2[ACTION_TOKENS_KEY][:, 0], td2[ACTION_TOKENS_KEY][:, 1])


def test_evaluator_rejects_non_action_tokens(tiny_model, processor):
    td = make_batch(INSTRUCTIONS)
    td[ACTION_TOKENS_KEY] = torch.full((3, 7), 500)
    with pytest.raises(ValueError, match="action tokens must lie in"):
        OpenVLAEvaluator(tiny_model, processor)(td)


def test_reference_without_lora_or_copy_raises(tiny_model, processor):
    evaluator = OpenVLAEvaluator(tiny_model, processor)
    with pytest.raises(RuntimeError, match="no reference policy"), evaluator.reference():
        pass
