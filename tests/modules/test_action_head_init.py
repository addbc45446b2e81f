"""The smooth action-head init: structure over the bins, near-uniform start, shared gradients."""

from __future__ import annotations

import math

import pytest
import torch

from vla_torchrl.modules.action_head_init import (
    action_head_rows,
    smooth_action_head_,
    smooth_bin_basis,
)
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.factory import build_model
from vla_torchrl.modules.openvla import OpenVLA


def test_basis_columns_by_hand():
    basis = smooth_bin_basis(3, num_frequencies=1)
    t = [-1.0, 0.0, 1.0]
    expected = [[x, x * x - 1 / 3, math.cos(math.pi * x), math.sin(math.pi * x)] for x in t]
    torch.testing.assert_close(basis, torch.tensor(expected), atol=1e-6, rtol=0)


def test_rows_are_smooth_over_the_bins_and_other_rows_untouched():
    torch.manual_seed(0)
    model = OpenVLA(OpenVLAConfig.tiny())
    before = model.language_model.lm_head.weight.detach().clone()
    smooth_action_head_(model)
    after = model.language_model.lm_head.weight.detach()
    lo = model.config.action_token_ids[0]
    assert torch.equal(after[:lo], before[:lo]) and torch.equal(
        after[lo + 256 :], before[lo + 256 :]
    )
    rows = action_head_rows(model)
    neighbours = torch.cosine_similarity(rows[:-1], rows[1:], dim=1)
    random_neighbours = torch.cosine_similarity(
        before[lo : lo + 255], before[lo + 1 : lo + 256], dim=1
    )
    assert neighbours.mean() > 0.9 > random_neighbours.abs().mean()


def test_initial_action_distributions_are_near_uniform():
    torch.manual_seed(1)
    model = OpenVLA(OpenVLAConfig.tiny())
    smooth_action_head_(model, scale=0.1)
    h = torch.randn(64, model.config.llm_hidden_size)  # unit-RMS hidden states
    logits = h @ action_head_rows(model).T
    entropy = -(logits.log_softmax(-1).exp() * logits.log_softmax(-1)).sum(-1)
    assert entropy.min() > 0.98 * math.log(256)


def test_a_gradient_step_on_one_bin_raises_its_neighbours():
    """The point of the init: credit for one sampled bin spreads to nearby bins (not with random rows)."""

    def neighbour_gain(smooth: bool) -> float:
        torch.manual_seed(2)
        model = OpenVLA(OpenVLAConfig.tiny())
        if smooth:
            smooth_action_head_(model)
        h = torch.randn(model.config.llm_hidden_size, requires_grad=True)
        logp = (h @ action_head_rows(model).T).log_softmax(-1)
        (grad,) = torch.autograd.grad(logp[200], h)  # raise bin 200 by moving the hidden state
        with torch.no_grad():
            new = ((h + 4.0 * grad / grad.norm()) @ action_head_rows(model).T).log_softmax(-1)
        return float((new - logp.detach())[190:211].mean() - (new - logp.detach())[:100].mean())

    assert neighbour_gain(smooth=True) > 0.05
    assert neighbour_gain(smooth=True) > 5 * abs(neighbour_gain(smooth=False))


def test_build_model_applies_it_to_random_init_models_only_when_asked():
    torch.manual_seed(3)
    smooth = action_head_rows(build_model("tiny"))
    torch.manual_seed(3)
    plain = action_head_rows(build_model("tiny", action_head_init="random"))
    assert torch.cosine_similarity(smooth[:-1], smooth[1:], dim=1).mean() > 0.9
    assert torch.cosine_similarity(plain[:-1], plain[1:], dim=1).abs().mean() < 0.5
    with pytest.raises(ValueError, match="action_head_init"):
        build_model("tiny", action_head_init="gaussian")


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"scale": 0.0}, "scale"), ({"noise": -1.0}, "noise")]
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        smooth_action_head_(OpenVLA(OpenVLAConfig.tiny()), **kwargs)
