"""The minibatch update: accumulation follows the mean gradient; non-finite steps are skipped."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from vla_torchrl.training.update import run_update


def _quadratic(w):
    return lambda td: TensorDict({"loss_q": ((td["x"] * w).sum(-1) ** 2).mean()}, [])


def test_accumulated_step_equals_one_step_on_the_whole_batch():
    x = torch.randn(12, 3)
    w1 = torch.nn.Parameter(torch.ones(3))
    run_update(
        TensorDict({"x": x}, [12]),
        _quadratic(w1),
        torch.optim.SGD([w1], lr=0.1),
        [w1],
        minibatch_size=4,
        grad_accum_steps=3,
        shuffle=False,
    )
    # independent reference: one SGD step on the mean loss of all 12 rows
    w2 = torch.ones(3, requires_grad=True)
    ((x * w2).sum(-1) ** 2).mean().backward()
    expected = torch.ones(3) - 0.1 * w2.grad
    torch.testing.assert_close(w1.detach(), expected)


def test_step_count_and_gradient_clipping():
    w = torch.nn.Parameter(torch.zeros(1))
    loss_fn = lambda td: TensorDict({"loss_l": (1000.0 * (w - td["x"])).abs().mean()}, [])  # noqa: E731
    stats = run_update(
        TensorDict({"x": torch.full((10, 1), 2.0)}, [10]),
        loss_fn,
        torch.optim.SGD([w], lr=1.0),
        [w],
        minibatch_size=2,
        grad_accum_steps=2,
        max_grad_norm=0.5,
    )
    assert stats["steps"] == 3  # 5 minibatches -> groups of 2, 2, 1
    assert abs(w.item() - 1.5) < 1e-5  # three steps of the clipped gradient norm 0.5
    assert stats["grad_norm"] > 0.5  # the reported norm is the one before clipping


def test_non_finite_loss_skips_the_step_and_counts_it():
    w = torch.nn.Parameter(torch.zeros(1))
    calls = {"n": 0}

    def loss_fn(td):
        calls["n"] += 1
        value = ((w - td["x"]) ** 2).mean()
        return TensorDict({"loss_l": value * float("nan") if calls["n"] == 1 else value}, [])

    stats = run_update(
        TensorDict({"x": torch.ones(4, 1)}, [4]),
        loss_fn,
        torch.optim.SGD([w], lr=0.5),
        [w],
        minibatch_size=2,
        grad_accum_steps=1,
        shuffle=False,
    )
    assert stats["skipped"] == 1 and stats["steps"] == 1
    assert abs(w.item() - 1.0) < 1e-6  # only the finite step moved w (lr 0.5 * grad -2)


def test_skipped_nan_gradient_step_leaves_grad_norm_finite():
    """A NaN gradient (finite loss) is skipped; grad_norm averages the taken steps only, never
    NaN (it was logged as null; issue 17 item 9)."""
    import math

    w = torch.nn.Parameter(torch.zeros(1))
    calls = {"n": 0}

    def loss_fn(td):
        calls["n"] += 1
        value = ((w - td["x"]) ** 2).mean()
        if calls["n"] == 1:  # a finite loss whose gradient is NaN
            value.register_hook(lambda g: g * float("nan"))
        return TensorDict({"loss_l": value}, [])

    stats = run_update(
        TensorDict({"x": torch.ones(4, 1)}, [4]),
        loss_fn,
        torch.optim.SGD([w], lr=0.5),
        [w],
        minibatch_size=2,
        grad_accum_steps=1,
        shuffle=False,
    )
    assert stats["skipped"] == 1 and stats["steps"] == 1
    assert math.isfinite(stats["grad_norm"]) and abs(stats["grad_norm"] - 2.0) < 1e-6
