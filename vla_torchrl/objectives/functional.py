"""The paper's RL objectives as plain tensor functions (paper Sec. 4.1, Appendix A.1).

Nothing here knows about tensordicts, modules or keys: every function takes tensors and returns
tensors (plus, for losses, a dict of detached diagnostics), so a recipe, a test or another
project can call them directly. The tensordict plumbing lives in :mod:`.advantages` and the
``LossModule`` files.

Conventions:

* time is the **last** dimension of per-step tensors (``[..., T]``);
* the 7 action tokens of one action are the last dimension of token tensors (``[..., 7]``);
* ``mask`` arguments are boolean, ``True`` where an entry counts (valid step / trajectory);
* losses reduce with a mean over the valid entries; a loss over zero entries is ``0``, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchrl.objectives.value.functional import (
    generalized_advantage_estimate as _torchrl_gae,
)

__all__ = [
    "AdvantageStatsFn",
    "action_log_prob",
    "action_token_cross_entropy",
    "batch_advantage_stats",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "explained_variance",
    "frozen_advantage_stats",
    "generalized_advantage_estimate",
    "group_relative_advantage",
    "masked_mean",
    "normalize_advantage",
    "preference_pairs",
    "reference_kl",
    "segment_ids",
    "segment_sum",
    "sft_token_nll",
    "trajectory_preference_loss",
]

#: ``(advantage, mask) -> (mean, std)``: the statistics advantage normalisation divides by.
#: A distributed run replaces :func:`batch_advantage_stats` by one that all-gathers the sums.
AdvantageStatsFn = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]]


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def masked_mean(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is ``True`` (all if ``mask`` is ``None``).

    An empty selection gives ``0`` (with a graph to ``x``), not NaN.

    Examples:
        >>> masked_mean(torch.tensor([1.0, 2.0, 6.0]), torch.tensor([True, False, True]))
        tensor(3.5000)
        >>> masked_mean(torch.tensor([1.0]), torch.tensor([False]))
        tensor(0.)
    """
    if mask is None:
        return x.mean()
    mask = mask.expand_as(x)
    total = torch.where(mask, x, torch.zeros_like(x)).sum()
    return total / mask.sum().clamp_min(1).to(x.dtype)


def action_log_prob(token_log_probs: Tensor) -> Tensor:
    """Log-probability of a whole action from its 7 token log-probs (Eq. 1).

    The paper computes ``pi(a|s)`` "as the product of the probabilities of each action token",
    i.e. the sum of the token log-probs.

    Args:
        token_log_probs: ``[..., 7]`` log-probs of the sampled action tokens.

    Returns:
        ``[...]`` the action log-probability.

    Examples:
        >>> action_log_prob(torch.log(torch.tensor([[0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 0.1]]))).exp()
        tensor([0.0250])
    """
    return token_log_probs.sum(-1)


# ------------------------------------------------------------------------------------------------
# PPO: Eq. (1), value loss, advantage normalisation
# ------------------------------------------------------------------------------------------------
def clipped_surrogate_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantage: Tensor,
    *,
    clip_epsilon: float = 0.2,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate, negated to be minimised (Eq. 1).

    ``ratio = pi_theta(a|s) / pi_old(a|s) = exp(log_prob - old_log_prob)`` where both log-probs
    are sums over the 7 action tokens (see :func:`action_log_prob`), so the ratio is the ratio
    of the products of token probabilities, as in the paper.

    Args:
        log_prob: ``[...]`` action log-prob under the current policy (carries the gradient).
        old_log_prob: ``[...]`` action log-prob under the behaviour policy (no gradient).
        advantage: ``[...]`` advantage estimate (no gradient).
        clip_epsilon: the clip range ``epsilon`` (paper: 0.2).
        mask: optional ``[...]`` bool, entries that count.

    Returns:
        ``(loss, diagnostics)``: the scalar ``-E[min(r A, clip(r, 1-eps, 1+eps) A)]`` and a dict
        of detached scalars ``clip_fraction`` (share of entries whose ratio lies outside the clip
        range), ``kl_approx`` (``E[old_log_prob - log_prob]``, the estimator TorchRL logs) and
        ``ratio_mean``.

    Examples:
        >>> loss, info = clipped_surrogate_loss(
        ...     torch.log(torch.tensor([1.5, 1.1])), torch.zeros(2), torch.tensor([1.0, 1.0])
        ... )
        >>> loss  # -(min(1.5, 1.2) * 1 + 1.1 * 1) / 2
        tensor(-1.1500)
        >>> info["clip_fraction"]
        tensor(0.5000)
    """
    if clip_epsilon <= 0:
        raise ValueError(f"clip_epsilon={clip_epsilon} must be > 0 (the paper uses 0.2).")
    if not (log_prob.shape == old_log_prob.shape == advantage.shape):
        raise ValueError(
            f"log_prob {tuple(log_prob.shape)}, old_log_prob {tuple(old_log_prob.shape)} and "
            f"advantage {tuple(advantage.shape)} must have the same shape; squeeze trailing "
            "singleton dims (e.g. advantage [..., 1]) first."
        )
    log_ratio = log_prob - old_log_prob.detach()
    ratio = log_ratio.exp()
    advantage = advantage.detach()
    # Eq. (1): min(r A, clip(r, 1 - eps, 1 + eps) A)
    surrogate = torch.minimum(
        ratio * advantage, ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon) * advantage
    )
    loss = -masked_mean(surrogate, mask)
    with torch.no_grad():
        clipped = ((ratio < 1 - clip_epsilon) | (ratio > 1 + clip_epsilon)).to(ratio.dtype)
        info = {
            "clip_fraction": masked_mean(clipped, mask),
            "kl_approx": masked_mean(-log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, info


def clipped_value_loss(
    value: Tensor,
    old_value: Tensor,
    value_target: Tensor,
    *,
    clip_value: float | None = 0.2,
    huber_delta: float | None = 10.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss with a Huber distance (FACTS.md: value clip 0.2, Huber delta 10).

    ``L = E[max(d(V, V_targ), d(V_old + clip(V - V_old, -c, c), V_targ))]`` with ``d`` the Huber
    loss of width ``huber_delta`` (``0.5 x^2`` for ``|x| <= delta``, ``delta (|x| - delta / 2)``
    beyond), or the squared error ``x^2`` when ``huber_delta`` is ``None``. This is the
    element-wise maximum TorchRL's ``ClipPPOLoss`` takes; ``clip_value=None`` disables clipping.

    Args:
        value: ``[...]`` current value prediction (carries the gradient).
        old_value: ``[...]`` value predicted at collection time.
        value_target: ``[...]`` regression target (e.g. GAE's ``A + V``).
        clip_value: half-width of the trust region around ``old_value``, or ``None``.
        huber_delta: Huber width, or ``None`` for the squared error.
        mask: optional ``[...]`` bool, entries that count.

    Returns:
        ``(loss, {"value_clip_fraction": ...})``.

    Examples:
        >>> loss, info = clipped_value_loss(
        ...     torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]), clip_value=0.2)
        >>> loss  # unclipped error 0, clipped prediction 0.2 -> 0.5 * 0.8 ** 2
        tensor(0.3200)
    """

    def distance(pred: Tensor) -> Tensor:
        if huber_delta is None:
            return (pred - value_target) ** 2
        return F.huber_loss(pred, value_target, reduction="none", delta=huber_delta)

    value_target = value_target.detach()
    old_value = old_value.detach()
    loss = distance(value)
    info: dict[str, Tensor] = {}
    if clip_value is not None:
        delta_v = value - old_value
        clipped_delta = delta_v.clamp(-clip_value, clip_value)
        loss = torch.maximum(loss, distance(old_value + clipped_delta))
        with torch.no_grad():
            info["value_clip_fraction"] = masked_mean(
                (clipped_delta != delta_v).to(value.dtype), mask
            )
    return masked_mean(loss, mask), info


def explained_variance(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``1 - Var[target - prediction] / Var[target]`` (population variances), detached.

    ``1`` is a perfect critic, ``0`` one no better than the mean; a constant target gives
    ``1 - resid / eps`` like TorchRL's (a large negative number unless the residual is 0 too).

    Examples:
        >>> explained_variance(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
        tensor(1.)
        >>> explained_variance(torch.full((3,), 2.0), torch.tensor([1.0, 2.0, 3.0])).round()
        tensor(0.)
    """
    with torch.no_grad():
        if mask is not None:
            mask = mask.expand_as(target)
            prediction, target = prediction[mask], target[mask]
        if target.numel() == 0:
            return torch.zeros((), dtype=target.dtype, device=target.device)
        eps = torch.finfo(target.dtype).eps
        resid = (target - prediction).var(correction=0)
        total = target.var(correction=0)
        return 1.0 - resid / (total + eps)


def batch_advantage_stats(advantage: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) std of the advantages of this batch, for :func:`normalize_advantage`.

    This is the single-process default ("advantages normalised over the batch", FACTS.md). A
    data-parallel run passes its own function with the same signature that all-reduces
    ``count``, ``sum`` and ``sum of squares`` across ranks instead.

    Examples:
        >>> batch_advantage_stats(torch.tensor([1.0, 3.0]))
        (tensor(2.), tensor(1.4142))
    """
    with torch.no_grad():
        x = advantage if mask is None else advantage[mask.expand_as(advantage)]
        if x.numel() < 2:
            zero = torch.zeros((), dtype=advantage.dtype, device=advantage.device)
            return (x.mean() if x.numel() else zero), torch.ones_like(zero)
        return x.mean(), x.std()


def frozen_advantage_stats(
    advantage: Tensor,
    mask: Tensor | None = None,
    *,
    stats_fn: AdvantageStatsFn | None = None,
) -> AdvantageStatsFn:
    """Statistics computed once (e.g. over the whole rollout) and returned for every minibatch.

    "Advantages normalised over the batch" (FACTS.md) with minibatches of 8: compute the
    statistics of the full rollout once (optionally across ranks with
    ``stats_fn=global_batch.all_reduce_advantage_stats``) and hand the result to the loss as its
    ``advantage_stats_fn``.

    Examples:
        >>> fn = frozen_advantage_stats(torch.tensor([1.0, 3.0]))
        >>> fn(torch.tensor([100.0]), None)
        (tensor(2.), tensor(1.4142))
    """
    mean, std = (stats_fn or batch_advantage_stats)(advantage.detach(), mask)

    def stats(_advantage: Tensor, _mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return mean, std

    return stats


def normalize_advantage(
    advantage: Tensor,
    mask: Tensor | None = None,
    *,
    stats_fn: AdvantageStatsFn | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """``(A - mean) / max(std, eps)`` with statistics from ``stats_fn`` (default: this batch).

    Args:
        advantage: ``[...]`` advantages.
        mask: optional bool ``[...]``; masked-out entries do not enter the statistics.
        stats_fn: ``(advantage, mask) -> (mean, std)``; default :func:`batch_advantage_stats`.
        eps: lower bound on the std (TorchRL's ``normalize_advantage`` uses float32 resolution,
            1e-6).

    Examples:
        >>> normalize_advantage(torch.tensor([1.0, 3.0]))
        tensor([-0.7071,  0.7071])
    """
    mean, std = (stats_fn or batch_advantage_stats)(advantage.detach(), mask)
    return (advantage - mean) / std.clamp_min(eps)


# ------------------------------------------------------------------------------------------------
# GAE: Eq. (2)
# ------------------------------------------------------------------------------------------------
def generalized_advantage_estimate(
    reward: Tensor,
    value: Tensor,
    next_value: Tensor,
    *,
    done: Tensor,
    terminated: Tensor,
    gamma: float = 0.99,
    lmbda: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over ``[..., T]`` (Eq. 2).

    ``delta_t = r_t + gamma (1 - terminated_t) V'_t - V_t`` with ``V'_t`` = ``next_value[..., t]``,
    the value of the observation reached by step ``t``, and
    ``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}``. So:

    * **terminated** (success): no bootstrap, ``V'_t`` is ignored (NaN allowed there);
    * **truncated** (step limit, ``done`` but not ``terminated``): bootstrap from ``V'_t``,
      the value of the final observation, and cut the recursion;
    * **partial reset** inside a rollout: ``done_t`` cuts the recursion, so a new episode
      starting at ``t + 1`` never leaks into ``A_t``;
    * the rollout's last step (not done) bootstraps from ``V'_{T-1}``.

    With ``done = terminated = False`` everywhere but the end this is exactly Eq. (2).
    PPO-ORZ is ``gamma = lmbda = 1``. The recursion is TorchRL's
    ``generalized_advantage_estimate`` (same semantics, checked in the tests against a plain
    loop), called with time moved to the layout it expects.

    Args:
        reward: ``[..., T]`` rewards ``r_t``.
        value: ``[..., T]`` ``V(s_t)``.
        next_value: ``[..., T]`` ``V(s_{t+1})`` (the final observation at done steps).
        done: ``[..., T]`` bool, episode ended at step ``t`` (terminated or truncated).
        terminated: ``[..., T]`` bool, ended in an absorbing state (no bootstrap).
        gamma: discount.
        lmbda: GAE ``lambda``.

    Returns:
        ``(advantage, value_target)``, both ``[..., T]``, ``value_target = advantage + value``.

    Examples:
        >>> r = torch.tensor([0.0, 1.0]); v = torch.tensor([0.5, 0.5]); nv = torch.tensor([0.5, 9.0])
        >>> adv, _ = generalized_advantage_estimate(
        ...     r, v, nv, done=torch.tensor([False, True]), terminated=torch.tensor([False, True]),
        ...     gamma=1.0, lmbda=1.0)
        >>> adv  # the terminal next value 9.0 is ignored: A_0 = 0 + 1 - 0.5
        tensor([0.5000, 0.5000])
    """
    for name, t in {"gamma": gamma, "lmbda": lmbda}.items():
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name}={t} must lie in [0, 1].")
    shape = reward.shape
    for name, t in {"value": value, "next_value": next_value, "done": done,
                    "terminated": terminated}.items():  # fmt: skip
        if t.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but reward has {tuple(shape)}; all GAE "
                "inputs are [..., T] (squeeze a trailing feature dim first)."
            )
    terminated = terminated.bool()
    done = done.bool() | terminated
    # a terminated step never bootstraps: zero its next value so that NaN/garbage cannot leak
    next_value = torch.where(terminated, torch.zeros_like(next_value), next_value)
    adv, target = _torchrl_gae(
        gamma,
        lmbda,
        value.unsqueeze(-1),
        next_value.unsqueeze(-1),
        reward.unsqueeze(-1),
        done.unsqueeze(-1),
        terminated.unsqueeze(-1),
        time_dim=-2,
    )
    return adv.squeeze(-1), target.squeeze(-1)


# ------------------------------------------------------------------------------------------------
# trajectory segmentation (shared by GRPO and TPO)
# ------------------------------------------------------------------------------------------------
def segment_ids(done: Tensor) -> Tensor:
    """Id of the trajectory each step belongs to, for ``[N, T]`` rollouts with resets.

    A new trajectory starts at ``t + 1`` whenever ``done[n, t]``; each row starts a new one.
    Ids are ``0 .. K-1``, consecutive, row-major.

    Examples:
        >>> segment_ids(torch.tensor([[False, True, False], [False, False, False]]))
        tensor([[0, 0, 1],
                [2, 2, 2]])
    """
    if done.ndim != 2:
        raise ValueError(f"done must be [N, T], got shape {tuple(done.shape)}.")
    n, t = done.shape
    starts = torch.zeros_like(done, dtype=torch.long)
    starts[:, 0] = 1
    starts[:, 1:] = done[:, :-1].long()
    return starts.reshape(-1).cumsum(0).reshape(n, t) - 1


def segment_sum(x: Tensor, ids: Tensor, num_segments: int | None = None) -> Tensor:
    """Sum of ``x`` over the entries sharing an id (``x`` and ``ids`` of the same shape).

    Examples:
        >>> segment_sum(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 1, 0]))
        tensor([5., 2.])
    """
    ids = ids.reshape(-1)
    k = int(ids.max()) + 1 if num_segments is None else num_segments
    out = torch.zeros(k, dtype=x.dtype, device=x.device)
    return out.index_add(0, ids, x.reshape(-1))


# ------------------------------------------------------------------------------------------------
# GRPO: Eq. (3)-(6)
# ------------------------------------------------------------------------------------------------
def group_relative_advantage(
    reward: Tensor,
    *,
    group: Tensor | None = None,
    done: Tensor | None = None,
    mask: Tensor | None = None,
    mode: Literal["process", "whole"] = "process",
    eps: float = 1e-6,
) -> Tensor:
    """Group-relative advantages of GRPO, process-supervision (Eq. 3-4) or whole-reward (Eq. 5-6).

    Rewards ``[N, T]`` (rows = envs, time last). Within each group:

    * ``mode="process"`` (Eq. 3-4): the set ``R`` holds only the **valid, non-zero** rewards of
      all trajectories of the group; each is normalised ``(r - mean(R)) / std(R)``; zero
      rewards are not part of ``R`` and contribute nothing.
    * ``mode="whole"`` (Eq. 5-6): ``R_w`` holds **all** valid rewards, zeros included.

    The advantage at step ``t`` is the sum of the normalised rewards of the same trajectory at
    steps ``>= t`` (a reverse cumulative sum that ``done`` cuts, so a row may hold several
    trajectories).

    Groups: ``group`` is an int tensor ``[N]`` or ``[N, T]`` of group ids (GRPO(s): the episode
    id of the shared initial state); ``None`` puts every step in one group (plain GRPO: all
    parallel envs of one task episode).

    Edge cases (defined, never NaN):

    * all rewards of ``R`` equal, or a single one (std 0 or undefined): every normalised reward
      is 0, so the group's advantages are 0;
    * no valid reward in a group (e.g. process mode, all failures): advantages 0;
    * different trajectory lengths: ``mask`` (``[N, T]`` bool) marks the real steps; masked
      steps are excluded from ``R`` and get advantage 0.

    ``std`` is the unbiased sample std (``torch.std``), as in GRPO implementations.

    Args:
        reward: ``[N, T]`` per-step rewards.
        group: optional group ids ``[N]`` or ``[N, T]``.
        done: optional ``[N, T]`` bool, trajectory ends after step ``t``.
        mask: optional ``[N, T]`` bool, valid steps.
        mode: ``"process"`` (Eq. 3-4) or ``"whole"`` (Eq. 5-6).
        eps: a group std at or below this counts as 0 (see edge cases).

    Returns:
        ``[N, T]`` advantages.

    Examples:
        >>> r = torch.tensor([[0.0, 0.1, 1.0], [0.0, 0.1, 0.0]])
        >>> group_relative_advantage(r, mode="process")  # R = {0.1, 1.0, 0.1}: mean 0.4, std 0.52
        tensor([[ 0.5774,  0.5774,  1.1547],
                [-0.5774, -0.5774,  0.0000]])
    """
    if mode not in ("process", "whole"):
        raise ValueError(f"mode={mode!r} must be 'process' (Eq. 3-4) or 'whole' (Eq. 5-6).")
    if reward.ndim != 2:
        raise ValueError(f"reward must be [N, T], got shape {tuple(reward.shape)}.")
    n, t = reward.shape
    valid = torch.ones_like(reward, dtype=torch.bool) if mask is None else mask.bool()
    if mode == "process":
        valid = valid & (reward != 0)  # Eq. (4): index(j) = the steps with a non-zero reward
    if group is None:
        gid = torch.zeros(n, t, dtype=torch.long, device=reward.device)
    else:
        gid = group.reshape(n, -1).expand(n, t) if group.ndim == 1 else group
        if gid.shape != (n, t):
            raise ValueError(
                f"group has shape {tuple(group.shape)}; expected [N] or [N, T] = {(n, t)}."
            )
        _, gid = torch.unique(gid.reshape(-1), return_inverse=True)
        gid = gid.reshape(n, t)
    k = int(gid.max()) + 1
    w = valid.to(reward.dtype)
    count = segment_sum(w, gid, k)
    total = segment_sum(reward * w, gid, k)
    mean = total / count.clamp_min(1)
    sq = segment_sum(((reward - mean[gid]) ** 2) * w, gid, k)
    std = (sq / (count - 1).clamp_min(1)).sqrt()
    degenerate = (count < 2) | (std <= eps)
    # Eq. (3)/(5): (r - mean(R)) / std(R) on the valid entries, 0 elsewhere
    normed = (reward - mean[gid]) / torch.where(degenerate, torch.ones_like(std), std)[gid]
    normed = torch.where(valid & ~degenerate[gid], normed, torch.zeros_like(normed))
    # sum over the future valid steps of the same trajectory: reverse cumsum cut at done
    cont = torch.ones_like(reward) if done is None else (~done.bool()).to(reward.dtype)
    adv = torch.zeros_like(reward)
    running = torch.zeros(n, dtype=reward.dtype, device=reward.device)
    for step in reversed(range(t)):
        running = normed[:, step] + cont[:, step] * running
        adv[:, step] = running
    if mask is not None:
        adv = torch.where(mask.bool(), adv, torch.zeros_like(adv))
    return adv


# ------------------------------------------------------------------------------------------------
# TPO / DPO: Eq. (7)
# ------------------------------------------------------------------------------------------------
def preference_pairs(returns: Tensor, group: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Preference pairs ``(w, l)`` inferred from sparse returns (Sec. 4.1, Appendix A.1).

    Pairing strategy: **every** ordered pair of trajectories of the same group with
    ``returns[w] > returns[l]`` (strictly: ties carry no preference). ``group=None`` puts all
    trajectories in one group. With the paper's sparse stage rewards (0, 0.1, 0.2, 1.2) many
    trajectories tie, which is why the set may be small or empty.

    Args:
        returns: ``[K]`` trajectory returns.
        group: optional ``[K]`` group ids (e.g. the episode id of the initial state).

    Returns:
        ``(w_index, l_index)``, two ``[P]`` long tensors (``P`` may be 0).

    Examples:
        >>> preference_pairs(torch.tensor([1.0, 0.0, 0.1]))
        (tensor([0, 0, 2]), tensor([1, 2, 1]))
    """
    better = returns[:, None] > returns[None, :]
    if group is not None:
        better = better & (group[:, None] == group[None, :])
    w_index, l_index = better.nonzero(as_tuple=True)
    return w_index, l_index


def trajectory_preference_loss(
    log_prob: Tensor,
    ref_log_prob: Tensor,
    w_index: Tensor,
    l_index: Tensor,
    *,
    beta: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Trajectory-wise preference loss TPO/DPO (Eq. 7).

    ``L = -E_(w,l)[log sigmoid(beta ((log pi(z_w) - log ref(z_w)) - (log pi(z_l) - log ref(z_l))))]``
    with ``log pi(z)`` the sum over all steps and all 7 tokens of the trajectory's action
    log-probs (compute it with :func:`segment_sum`).

    An empty pair set gives a loss of exactly 0 that still back-propagates (zero gradients) and
    ``has_pairs = 0`` in the diagnostics, never NaN.

    Args:
        log_prob: ``[K]`` trajectory log-probs under the current policy.
        ref_log_prob: ``[K]`` trajectory log-probs under the frozen reference policy.
        w_index, l_index: ``[P]`` indices of preferred / rejected trajectories.
        beta: inverse temperature ``beta`` of Eq. (7).

    Returns:
        ``(loss, diagnostics)`` with ``num_pairs``, ``has_pairs``, ``reward_accuracy`` (share
        of pairs whose implicit reward margin is positive) and ``reward_margin``.

    Examples:
        >>> lp = torch.tensor([0.0, 0.0]); ref = torch.tensor([0.0, 0.0])
        >>> loss, info = trajectory_preference_loss(lp, ref, torch.tensor([0]), torch.tensor([1]))
        >>> loss  # -log sigmoid(0) = log 2
        tensor(0.6931)
        >>> trajectory_preference_loss(lp, ref, torch.tensor([], dtype=torch.long),
        ...                            torch.tensor([], dtype=torch.long))[0]
        tensor(0.)
    """
    if beta <= 0:
        raise ValueError(f"beta={beta} must be > 0 (it scales the implicit reward of Eq. 7).")
    ratio = log_prob - ref_log_prob.detach()  # log pi(z) / pi_ref(z)
    margin = beta * (ratio[w_index] - ratio[l_index])
    num = torch.tensor(float(w_index.numel()), device=log_prob.device)
    if w_index.numel() == 0:
        zero = log_prob.sum() * 0.0
        info = {"num_pairs": num, "has_pairs": num.clamp_max(1), "reward_accuracy": zero.detach(),
                "reward_margin": zero.detach()}  # fmt: skip
        return zero, info
    loss = -F.logsigmoid(margin).mean()  # Eq. (7)
    with torch.no_grad():
        info = {
            "num_pairs": num,
            "has_pairs": num.clamp_max(1),
            "reward_accuracy": (margin > 0).to(margin.dtype).mean(),
            "reward_margin": margin.mean(),
        }
    return loss, info


# ------------------------------------------------------------------------------------------------
# KL to the reference policy (GRPO's penalty; also offered by PPO)
# ------------------------------------------------------------------------------------------------
def reference_kl(log_prob: Tensor, ref_log_prob: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(pi || pi_ref) estimated on sampled actions: ``mean(exp(r) - r - 1)``, ``r = ref - logp``.

    The "k3" estimator (Schulman, *Approximating KL Divergence*, 2020), the one GRPO's KL term
    uses (Shao et al. 2024, DeepSeekMath, Eq. 4): unbiased for actions sampled from the policy and
    always ``>= 0``. Here ``log_prob`` and ``ref_log_prob`` are the summed 7-token action
    log-probs (Eq. 1) of the current and the frozen reference policy; the reference is detached.

    Examples:
        >>> reference_kl(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -2.0]))
        tensor(0.)
        >>> round(float(reference_kl(torch.tensor([0.0]), torch.tensor([-1.0]))), 4)  # e^-1 + 1 - 1
        0.3679
    """
    log_r = ref_log_prob.detach() - log_prob
    return masked_mean(log_r.exp() - log_r - 1, mask)


# ------------------------------------------------------------------------------------------------
# SFT
# ------------------------------------------------------------------------------------------------
def sft_token_nll(token_log_probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """SFT cross-entropy from the log-probs of the demonstration's action tokens.

    ``L = -mean over steps and the 7 tokens of log pi(u_t^k | ...)``: the loss is computed
    solely on the action tokens (paper Sec. 3). With the evaluator contract the log-probs are
    normalised over the **256 action ids** (see :func:`action_token_cross_entropy` for the
    full-vocabulary variant of the original OpenVLA fine-tuning).

    Args:
        token_log_probs: ``[..., 7]`` log-probs of the demonstrated tokens.
        mask: optional bool ``[...]`` (per step) or ``[..., 7]`` (per token).

    Examples:
        >>> sft_token_nll(torch.log(torch.full((2, 7), 0.5)))
        tensor(0.6931)
    """
    if mask is not None and mask.ndim == token_log_probs.ndim - 1:
        mask = mask.unsqueeze(-1)
    return -masked_mean(token_log_probs, mask)


def action_token_cross_entropy(
    logits: Tensor,
    target_ids: Tensor,
    *,
    vocabulary: Literal["action", "full"] = "action",
    first_action_id: int = 31744,
    num_bins: int = 256,
) -> Tensor:
    """Cross-entropy on action tokens from raw LM logits, over the action ids or the full vocab.

    ``vocabulary="action"`` normalises the softmax over the ``num_bins`` action ids
    ``[first_action_id, first_action_id + num_bins)`` only (as RL fine-tuning samples and scores
    actions, FACTS.md); ``"full"`` over the whole vocabulary (OpenVLA's original SFT objective).
    The restricted loss is never larger than the full one.

    Args:
        logits: ``[..., 7, V]`` logits at the positions that predict the 7 action tokens.
        target_ids: ``[..., 7]`` token ids in ``[first_action_id, first_action_id + num_bins)``.

    Examples:
        >>> logits = torch.zeros(1, 7, 32064)
        >>> ids = torch.full((1, 7), 31744)
        >>> action_token_cross_entropy(logits, ids)  # uniform over 256 ids: log 256
        tensor(5.5452)
        >>> action_token_cross_entropy(logits, ids, vocabulary="full")  # log 32064
        tensor(10.3755)
    """
    if vocabulary not in ("action", "full"):
        raise ValueError(f"vocabulary={vocabulary!r} must be 'action' or 'full'.")
    rel = target_ids - first_action_id
    if bool(((rel < 0) | (rel >= num_bins)).any()):
        raise ValueError(
            f"target ids must lie in [{first_action_id}, {first_action_id + num_bins}); got "
            f"range [{int(target_ids.min())}, {int(target_ids.max())}]. Pass action token ids."
        )
    if vocabulary == "action":
        logits = logits[..., first_action_id : first_action_id + num_bins]
        target = rel
    else:
        target = target_ids
    logp = logits.float().log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return -logp.mean()
