"""Small statistics for reports: mean +- std, 95% intervals, a paired test; plain Python + numpy.

* :func:`mean_std`: mean and standard deviation of seed values (the one helper every report uses).
* :func:`wilson_interval`: the Wilson score interval of a rate ``k / n`` over ``n`` independent
  episodes (Wilson 1927). Unlike ``p +- 1.96 sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not
  collapse to a point at 0/n or n/n, where small evaluations often land.
* :func:`t_interval`: the Student-t interval of a mean over ``k`` units (seeds), ``mean +-
  t_{k-1} s / sqrt(k)`` with the sample std ``s``: with 3 seeds ``t_2 = 4.30``, where
  ``1.96`` would claim a 95% interval that covers the truth far less often.
* :func:`mcnemar_exact`: the exact (binomial) McNemar test of two policies run on the same
  episodes: two-sided p-value from the discordant pairs only.
* :func:`paired_bootstrap`: a percentile bootstrap interval of the difference of two paired rates
  (pairs resampled together, a fixed seed: the same table twice).

No scipy: the t quantile comes from the closed form of the t distribution for integer degrees of
freedom (Abramowitz & Stegun 26.7.3-4) and bisection.

Examples:
    >>> low, high = wilson_interval(0, 10)
    >>> low, round(high, 4)
    (0.0, 0.2775)
    >>> round(t_quantile(0.975, 2), 3)
    4.303
    >>> mcnemar_exact(0, 5)  # 5 discordant pairs, all one way: p = 2 / 2^5
    0.0625
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "SeedStat",
    "mcnemar_exact",
    "mean_std",
    "paired_bootstrap",
    "t_interval",
    "t_quantile",
    "wilson_interval",
]


@dataclass(frozen=True)
class SeedStat:
    """Mean and std over seeds (``n`` values; NaN mean when none)."""

    mean: float
    std: float
    n: int

    def format(self, digits: int = 3) -> str:
        """``mean +- std`` (``-`` when no run logged it).

        Examples:
            >>> SeedStat(0.25, 0.05, 2).format()
            '0.250 +- 0.050'
        """
        if self.n == 0:
            return "-"
        return f"{self.mean:.{digits}f} +- {self.std:.{digits}f}"


def mean_std(values: Sequence[float | None], *, ddof: int = 0) -> SeedStat:
    """Mean and standard deviation of ``values`` (``ddof=0``: population std); NaN / None dropped.

    A single value has std 0 (whatever ``ddof``); no value gives NaN mean and std.

    Examples:
        >>> stat = mean_std([0.2, 0.4, float("nan")])
        >>> round(stat.mean, 3), round(stat.std, 3), stat.n
        (0.3, 0.1, 2)
        >>> mean_std([1.0, 2.0, 3.0], ddof=1).std
        1.0
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return SeedStat(math.nan, math.nan, 0)
    mean = sum(vals) / len(vals)
    if len(vals) - ddof <= 0:
        return SeedStat(mean, 0.0, len(vals))
    return SeedStat(
        mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - ddof)), len(vals)
    )


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1), e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the rate ``k / n``: ``(center +- half)`` with
    ``center = (p + z^2/2n) / (1 + z^2/n)``, ``half = z / (1 + z^2/n) sqrt(p(1-p)/n + z^2/4n^2)``.

    Args:
        k: successes (episodes where the metric holds).
        n: episodes (``n >= 1``).
        level: coverage (0.95: ``z = 1.95996``).

    Examples:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = _z(level)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # the exact ends at 0/n and n/n (rounding would leave 1e-17 outside [0, 1])
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def _t_two_sided_mass(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:  # 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        total, term = 0.0, 1.0
        if df > 1:
            total = term
            for j in range(1, (df - 3) // 2 + 1):
                term *= (2 * j) / (2 * j + 1) * c2
                total += term
            total *= s * math.cos(theta)
        return 2 / math.pi * (theta + total)
    total, term = 1.0, 1.0  # sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for j in range(1, (df - 2) // 2 + 1):
        term *= (2 * j - 1) / (2 * j) * c2
        total += term
    return s * total


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile (``q > 0.5``) of Student's t with ``df`` degrees of freedom.

    Examples:
        >>> round(t_quantile(0.975, 1), 3), round(t_quantile(0.975, 30), 3)
        (12.706, 2.042)
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df={df} must be a positive integer")
    if not 0.5 < q < 1:
        raise ValueError(f"q={q} must be in (0.5, 1)")
    mass = 2 * q - 1
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, int(df)) < mass:
        high *= 2
    for _ in range(200):  # bisection down to float precision
        mid = (low + high) / 2
        if _t_two_sided_mass(mid, int(df)) < mass:
            low = mid
        else:
            high = mid
        if high - low < 1e-13 * max(1.0, high):
            break
    return (low + high) / 2


def t_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float] | None:
    """``mean +- t_{k-1} s / sqrt(k)`` over ``k`` values (sample std ``s``); None when ``k < 2``.

    Examples:
        >>> [round(x, 3) for x in t_interval([0.25, 0.5, 0.75])]  # 0.5 +- 4.303 * 0.25 / sqrt(3)
        [-0.121, 1.121]
    """
    k = len(values)
    if k < 2:
        return None
    stat = mean_std(values, ddof=1)
    half = t_quantile(0.5 + level / 2, k - 1) * stat.std / math.sqrt(k)
    return stat.mean - half, stat.mean + half


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 * P(X <= min(b, c)))``, ``X ~ Bin(b + c, 1/2)``.

    Args:
        b: pairs where only the first policy succeeded.
        c: pairs where only the second one did.

    Returns:
        The p-value; 1.0 without discordant pairs (nothing tells the two apart).

    Examples:
        >>> round(mcnemar_exact(2, 9), 4)  # 2 * (1 + 11 + 55) / 2^11
        0.0654
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(
    first: Sequence[float],
    second: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean difference ``second - first`` over pairs and its percentile bootstrap interval.

    Each resample draws ``len(first)`` pair indices with replacement (the two values of a pair
    stay together); the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
    the resampled mean differences.

    Returns:
        ``(difference, low, high)``.

    Examples:
        >>> paired_bootstrap([1, 1, 0, 0], [1, 1, 0, 0])  # identical outcomes: no spread
        (0.0, 0.0, 0.0)
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired_bootstrap needs two equal, non-empty 1-d samples: {a.shape}, {b.shape}"
        )
    d = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // d.size)  # bounded memory for large evaluations
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(low), float(high)
