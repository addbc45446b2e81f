"""VLAPPOLoss: equivalence with TorchRL's ClipPPOLoss, gradients, keys."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as D
from objectives_mocks import FEAT, FIRST_ACTION_ID, N_BINS, MockEvaluator
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss

from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    ADVANTAGE_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    INSTRUCTION_KEY,
    STATE_KEY,
    VALUE_KEY,
    VALUE_TARGET_KEY,
)
from vla_torchrl.objectives import VLAPPOLoss


class _IndependentCategorical(D.Independent):
    """7 independent categoricals: log_prob and entropy summed over the 7 heads."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(D.Categorical(logits=logits), 1)


class _Logits(nn.Module):
    def __init__(self, ev: MockEvaluator) -> None:
        super().__init__()
        self.ev = ev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ev.logits(x)


def _minibatch(ev: MockEvaluator, n: int = 32) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(FIRST_ACTION_ID, FIRST_ACTION_ID + N_BINS, (n, 7), generator=g)
    td = TensorDict(
        {STATE_KEY: torch.randn(n, FEAT, generator=g), ACTION_TOKENS_KEY: tokens}, batch_size=[n]
    )
    td.set(INSTRUCTION_KEY, ["pick"] * n)
    with torch.no_grad():
        cur = ev(td.copy())
    lp = cur[EVAL_TOKEN_LOG_PROBS_KEY].sum(-1)
    td.set(ACTION_LOG_PROB_KEY, lp + 0.3 * torch.randn(n, generator=g))  # some ratios clip
    td.set(ADVANTAGE_KEY, torch.randn(n, 1, generator=g) * 2 + 0.5)
    td.set(VALUE_KEY, cur[VALUE_KEY] + 0.4 * torch.randn(n, 1, generator=g))  # some clip
    td.set(VALUE_TARGET_KEY, cur[VALUE_KEY] + 2 * torch.randn(n, 1, generator=g))
    td.set("action_index", tokens - FIRST_ACTION_ID)
    return td


def test_equivalent_to_torchrl_clip_ppo_loss(evaluator):
    td = _minibatch(evaluator)
    actor = ProbabilisticActor(
        TensorDictModule(_Logits(evaluator), in_keys=[STATE_KEY], out_keys=["logits"]),
        in_keys=["logits"],
        out_keys=["action_index"],
        distribution_class=_IndependentCategorical,
        return_log_prob=True,
    )
    critic = ValueOperator(evaluator.value_head, in_keys=[STATE_KEY], out_keys=[VALUE_KEY])
    ref_loss = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=0.2,
        entropy_coeff=0.01,
        critic_coeff=1.0,
        loss_critic_type="smooth_l1",  # = Huber with delta 1
        clip_value=0.2,
        normalize_advantage=True,
        functional=False,
    )
    ref_loss.set_keys(sample_log_prob=ACTION_LOG_PROB_KEY, action="action_index")
    ours = VLAPPOLoss(
        evaluator, clip_value=0.2, huber_delta=1.0, entropy_coeff=0.01, normalize_advantage=True
    )
    a = ref_loss(td.clone())
    b = ours(td.clone())
    for key in (
        "loss_objective",
        "loss_critic",
        "loss_entropy",
        "entropy",
        "clip_fraction",
        "kl_approx",
        "value_clip_fraction",
    ):
        torch.testing.assert_close(b[key], a[key].reshape(()), msg=key)
    torch.testing.assert_close(b["explained_variance"], a["explained_variance"].reshape(()))
    assert 0 < b["clip_fraction"] < 1 and 0 < b["value_clip_fraction"] < 1  # branches exercised
    # same gradients too
    params = [evaluator.delta.weight, evaluator.value_head.weight]
    ga = torch.autograd.grad(sum(v for k, v in a.items() if k.startswith("loss_")), params)
    gb = torch.autograd.grad(sum(v for k, v in b.items() if k.startswith("loss_")), params)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradient_step_moves_log_prob_with_advantage_sign(evaluator, sign):
    td = _minibatch(evaluator, n=1)
    td.set(ACTION_LOG_PROB_KEY, evaluator(td.copy())[EVAL_TOKEN_LOG_PROBS_KEY].sum(-1).detach())
    td.set(ADVANTAGE_KEY, torch.full((1, 1), sign))
    loss_fn = VLAPPOLoss(evaluator, critic_coeff=None, normalize_advantage=False)
    before = td[ACTION_LOG_PROB_KEY].item()
    opt = torch.optim.SGD(evaluator.parameters(), lr=0.05)
    loss_fn(td)["loss_objective"].backward()
    opt.step()
    with torch.no_grad():
        after = evaluator(td.copy())[EVAL_TOKEN_LOG_PROBS_KEY].sum().item()
    assert (after - before) * sign > 0


def test_rollout_values_not_overwritten_and_flattening(evaluator, rollout):
    rollout.set(VALUE_KEY, torch.full((4, 6, 1), 7.0))
    rollout.set(ADVANTAGE_KEY, torch.randn(4, 6, 1))
    rollout.set(VALUE_TARGET_KEY, torch.randn(4, 6, 1))
    out = VLAPPOLoss(evaluator)(rollout)
    assert torch.equal(rollout[VALUE_KEY], torch.full((4, 6, 1), 7.0))
    assert "eval" not in rollout
    assert out["loss_objective"].shape == () and torch.isfinite(out["loss_critic"])
    # hand check of the critic term: clip 0.2 around 7.0, Huber 10, targets far below
    v = evaluator.value_head(rollout[STATE_KEY]).reshape(-1)
    tgt = rollout[VALUE_TARGET_KEY].reshape(-1)
    vc = 7.0 + (v - 7.0).clamp(-0.2, 0.2)
    hub = torch.nn.functional.huber_loss
    exp = torch.maximum(
        hub(v, tgt, delta=10.0, reduction="none"), hub(vc, tgt, delta=10.0, reduction="none")
    ).mean()
    torch.testing.assert_close(out["loss_critic"], exp)


def test_set_keys_and_advantage_stats_fn(evaluator):
    td = _minibatch(evaluator)
    base = VLAPPOLoss(evaluator, critic_coeff=None, normalize_advantage=False)
    td_scaled = td.clone()
    td_scaled.set(ADVANTAGE_KEY, (td[ADVANTAGE_KEY] - 1.0) / 2.0)
    expected = base(td_scaled)["loss_objective"]
    # a "global" statistics function (as a distributed all-gather would supply)
    custom = VLAPPOLoss(
        evaluator,
        critic_coeff=None,
        advantage_stats_fn=lambda a, m: (torch.tensor(1.0), torch.tensor(2.0)),
    )
    custom.set_keys(advantage="adv", action_log_prob="old_lp")
    renamed = td.rename_key_(ADVANTAGE_KEY, "adv").rename_key_(ACTION_LOG_PROB_KEY, "old_lp")
    torch.testing.assert_close(custom(renamed)["loss_objective"], expected)
    with pytest.raises(KeyError):
        VLAPPOLoss(evaluator, critic_coeff=None)(renamed)
    with pytest.raises(ValueError):
        custom.set_keys(not_a_key="x")
    with pytest.raises(ValueError, match="clip_epsilon"):
        VLAPPOLoss(evaluator, clip_epsilon=0.0)


def test_kl_coeff_adds_grpos_k3_kl_to_the_reference(evaluator):
    """kl_coeff: the hand-computed k3 estimator (as GRPO's), the same value as VLAGRPOLoss."""
    from vla_torchrl.keys import REF_ACTION_LOG_PROB_KEY
    from vla_torchrl.objectives import VLAGRPOLoss

    td = _minibatch(evaluator)
    out = VLAPPOLoss(evaluator, kl_coeff=0.5)(td.clone())
    with torch.no_grad():
        ids = (td[ACTION_TOKENS_KEY] - FIRST_ACTION_ID).unsqueeze(-1)
        cur = evaluator.logits(td[STATE_KEY]).log_softmax(-1).gather(-1, ids).squeeze(-1).sum(-1)
        base = evaluator.base(td[STATE_KEY]).unflatten(-1, (7, N_BINS)).log_softmax(-1)
        ref = base.gather(-1, ids).squeeze(-1).sum(-1)
    r = ref - cur
    expected = (r.exp() - r - 1).mean()
    torch.testing.assert_close(out["kl_ref"], expected)
    torch.testing.assert_close(out["loss_kl"].detach(), 0.5 * expected)
    assert {"loss_kl", "kl_ref"} <= set(VLAPPOLoss(evaluator, kl_coeff=0.5).out_keys)
    assert "loss_kl" not in VLAPPOLoss(evaluator)(td.clone())
    grpo = VLAGRPOLoss(evaluator, kl_coeff=0.5)(td.clone())
    torch.testing.assert_close(grpo["loss_kl"], out["loss_kl"])
    # stored reference log-probs replace the reference pass
    calls = evaluator.ref_calls
    td.set(REF_ACTION_LOG_PROB_KEY, ref)
    torch.testing.assert_close(VLAPPOLoss(evaluator, kl_coeff=0.5)(td)["kl_ref"], expected)
    assert evaluator.ref_calls == calls
    # the KL gradient reaches the trained weights (the reference side is constant)
    (g,) = torch.autograd.grad(out["loss_kl"], [evaluator.delta.weight])
    assert g.abs().sum() > 0
    with pytest.raises(ValueError, match="kl_coeff"):
        VLAPPOLoss(evaluator, kl_coeff=-0.1)


def test_output_carries_the_evaluated_token_log_probs_with_their_graph(evaluator):
    """A composed loss builds on the returned log-probs: one evaluator pass, same gradients."""
    td = _minibatch(evaluator)
    evaluator.calls = 0
    out = VLAPPOLoss(evaluator, critic_coeff=None)(td.clone())
    assert evaluator.calls == 1
    token_lp = out[EVAL_TOKEN_LOG_PROBS_KEY]
    with torch.no_grad():
        direct = evaluator(td.copy())[EVAL_TOKEN_LOG_PROBS_KEY]
    torch.testing.assert_close(token_lp.detach(), direct)
    assert token_lp.shape == (td.shape[0], 7) and token_lp.requires_grad
    # an extra term on them (e.g. a penalty on the mean log-prob) has the gradient of the same
    # term computed from a fresh forward
    (g_reused,) = torch.autograd.grad(token_lp.mean(), [evaluator.delta.weight])
    fresh = evaluator(td.copy())[EVAL_TOKEN_LOG_PROBS_KEY]
    (g_fresh,) = torch.autograd.grad(fresh.mean(), [evaluator.delta.weight])
    torch.testing.assert_close(g_reused, g_fresh)
    # not a loss_* entry: the training total is unchanged by it
    from vla_torchrl.training.update import total_loss

    terms = [out[k] for k in out.keys() if k.startswith("loss_")]  # noqa: SIM118
    torch.testing.assert_close(total_loss(out), sum(terms))
