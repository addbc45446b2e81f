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


def _two_minibatch_update(loss_fn, w):
    """Two SGD steps (lr 0.5) of ``loss_fn`` on x = 1, minibatches of 2, in order."""
    return run_update(
        TensorDict({"x": torch.ones(4, 1)}, [4]),
        loss_fn,
        torch.optim.SGD([w], lr=0.5),
        [w],
        minibatch_size=2,
        grad_accum_steps=1,
        shuffle=False,
    )


def test_non_finite_loss_skips_the_step_and_counts_it():
    w = torch.nn.Parameter(torch.zeros(1))
    calls = {"n": 0}

    def loss_fn(td):
        calls["n"] += 1
        value = ((w - td["x"]) ** 2).mean()
        return TensorDict({"loss_l": value * float("nan") if calls["n"] == 1 else value}, [])

    stats = _two_minibatch_update(loss_fn, w)
    assert stats["skipped"] == 1 and stats["steps"] == 1
    assert abs(w.item() - 1.0) < 1e-6  # only the finite step moved w (lr 0.5 * grad -2)


class _Recorder(torch.nn.Module):
    """Wants the advantage statistics (defines set_advantage_stats); records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.stats_fn = None
        self.seen = []

    def set_advantage_stats(self, stats_fn) -> None:
        self.stats_fn = stats_fn

    def forward(self, td):
        self.seen.append(self.stats_fn(td["advantage"], None))
        return TensorDict({"loss_w": ((self.w - td["advantage"]) ** 2).mean()}, [])


class _Composed(torch.nn.Module):
    """A custom loss that holds the one that wants statistics and declares nothing itself."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Recorder()

    def forward(self, td):
        return self.inner(td)


def test_rl_update_offers_rollout_wide_advantage_stats_to_a_composed_loss():
    from vla_torchrl.config.load import compose_config
    from vla_torchrl.training.update import rl_update
    from vla_torchrl.utils.distributed import DistInfo

    cfg = compose_config(
        # verify_steps off: this test counts the loss's forward calls, one per minibatch
        ["optim.minibatch_size=2", "optim.grad_accum_steps=1", "optim.verify_steps=false"],
        config_name="train_cpu",
    )
    adv = torch.randn(2, 4, 1) * 3 + 1
    rollout = TensorDict(
        {
            "advantage": adv.clone(),
            "next": {"reward": torch.rand(2, 4, 1), "done": torch.zeros(2, 4, 1, dtype=bool)},
        },
        [2, 4],
    )
    loss = _Composed()
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    stats = rl_update(
        cfg, rollout, loss, None, torch.optim.SGD(loss.parameters(), lr=0.1), [loss.inner.w], info
    )
    assert stats["steps"] == 4 and len(loss.inner.seen) == 4
    # every minibatch of 2 saw the statistics of all 8 advantages, not its own
    for mean, std in loss.inner.seen:
        torch.testing.assert_close(mean, adv.mean())
        torch.testing.assert_close(std, adv.std())


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

    stats = _two_minibatch_update(loss_fn, w)
    assert stats["skipped"] == 1 and stats["steps"] == 1
    assert math.isfinite(stats["grad_norm"]) and abs(stats["grad_norm"] - 2.0) < 1e-6


def test_a_step_that_makes_the_loss_non_finite_is_undone_exactly():
    """Divergence with finite gradients (issue 17): Adam at lr 1e30 moves w to ~1e30, where the
    quadratic loss overflows float32. ``verify_steps`` undoes that step: w and the optimizer
    state are bit-identical to before it, and it counts as skipped; a healthy step before it
    is kept. Without ``verify_steps`` the same step leaves w diverged (the check can fail)."""
    x = torch.randn(8, 3)
    batch = TensorDict({"x": x}, [8])

    def setup():
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.ones(3))
        return w, torch.optim.Adam([w], lr=0.01)

    for verify in (True, False):
        w, opt = setup()
        first = run_update(
            batch, _quadratic(w), opt, [w], minibatch_size=8, grad_accum_steps=1,
            verify_steps=verify,
        )  # fmt: skip
        assert first["steps"] == 1 and first["skipped"] == 0
        w_before = w.detach().clone()
        state_before = {k: v.clone() for k, v in opt.state[w].items()}
        opt.param_groups[0]["lr"] = 1e30
        second = run_update(
            batch, _quadratic(w), opt, [w], minibatch_size=8, grad_accum_steps=1,
            verify_steps=verify,
        )  # fmt: skip
        if verify:
            assert (second["steps"], second["skipped"], second["undone"]) == (0, 1, 1)
            assert torch.equal(w.detach(), w_before)
            for k, v in state_before.items():
                assert torch.equal(opt.state[w][k], v), k
            assert opt.param_groups[0]["lr"] == 1e30  # the schedule's value stays the caller's
        else:
            assert second["steps"] == 1
            assert not torch.isfinite(((x * w.detach()).sum(-1) ** 2).mean())
