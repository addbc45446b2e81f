"""The report statistics against independent references: the formulas written out here, a binomial
sum, a plain-loop bootstrap, and scipy where it is installed."""

from __future__ import annotations

import math
import random

import pytest

from vla_torchrl.utils.stats import (
    mcnemar_exact,
    mean_std,
    paired_bootstrap,
    t_interval,
    t_quantile,
    wilson_interval,
)

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def _wilson_by_hand(k, n, z=Z95):
    p = k / n
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return center - half, center + half


@pytest.mark.parametrize(("k", "n"), [(9, 12), (11, 12), (1, 4), (30, 48), (3, 1000)])
def test_wilson_interval_against_the_formula(k, n):
    assert wilson_interval(k, n) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)


def test_wilson_interval_hand_values_and_edges():
    # 9 of 12: p = .75, z^2/n = .3201; center = (.75 + .16005) / 1.3201 = .68938;
    # half = 1.95996 / 1.3201 * sqrt(.015625 + .0066690) = .22169 -> [.4677, .9111]
    low, high = wilson_interval(9, 12)
    assert (round(low, 4), round(high, 4)) == (0.4677, 0.9111)
    # 0 of n and n of n: exact ends, the other end 1 / (1 + n / z^2) away
    assert wilson_interval(0, 12) == (0.0, pytest.approx(Z95**2 / (12 + Z95**2)))
    assert wilson_interval(12, 12) == (pytest.approx(12 / (12 + Z95**2)), 1.0)
    # 90%: z = 1.644854
    assert wilson_interval(9, 12, level=0.9) == pytest.approx(
        _wilson_by_hand(9, 12, 1.6448536269514722)
    )
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_wilson_interval_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((0, 5), (3, 7), (40, 64), (64, 64)):
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


# Student t 0.975 quantiles from printed tables (e.g. NIST/SEMATECH e-Handbook, Table 1.3.6.7.2)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042, 100: 1.984}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_against_printed_tables(df):
    assert t_quantile(0.975, df) == pytest.approx(T975[df], abs=5e-4)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 8, 41):
        for q in (0.9, 0.975, 0.995):
            assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9)


def test_t_interval_by_hand():
    # seed means .25 .5 .75: mean .5, sample sd .25, t_2 = 4.302653 -> .5 +- .621034
    low, high = t_interval([0.25, 0.5, 0.75])
    half = 4.302652729911275 * 0.25 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-9)
    assert t_interval([0.5]) is None  # one seed: no spread to estimate


def _mcnemar_by_binomial_sum(b, c):
    n = b + c
    k = min(b, c)
    tail = sum(
        math.factorial(n) / (math.factorial(i) * math.factorial(n - i)) for i in range(k + 1)
    )
    return min(1.0, 2 * tail * 0.5**n)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 6), (2, 9), (5, 5), (3, 4), (1, 20), (17, 30)])
def test_mcnemar_exact_against_a_binomial_sum(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(_mcnemar_by_binomial_sum(b, c), rel=1e-12)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)  # two-sided


def test_mcnemar_exact_hand_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == 2 / 64  # 0.03125
    assert mcnemar_exact(0, 9) == 2 / 512
    assert mcnemar_exact(2, 9) == 2 * (1 + 11 + 55) / 2**11


def test_mcnemar_exact_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for b, c in ((2, 9), (12, 3), (40, 55)):
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c).pvalue, rel=1e-9)


def _bootstrap_by_loop(a, b, resamples, seed):
    rng = random.Random(seed)
    n = len(a)
    means = []
    for _ in range(resamples):
        total = 0
        for _ in range(n):
            i = rng.randrange(n)
            total += b[i] - a[i]
        means.append(total / n)
    means.sort()
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def test_paired_bootstrap_against_a_plain_loop():
    # 40 pairs: 6 only-first, 14 only-second, the rest tied -> difference +0.2
    a = [1] * 6 + [0] * 14 + [1] * 10 + [0] * 10
    b = [0] * 6 + [1] * 14 + [1] * 10 + [0] * 10
    diff, low, high = paired_bootstrap(a, b, resamples=20_000, seed=1)
    assert diff == pytest.approx(0.2)
    ref_low, ref_high = _bootstrap_by_loop(a, b, 20_000, seed=7)
    # two independent bootstraps of the same data agree to Monte-Carlo error (~0.01)
    assert low == pytest.approx(ref_low, abs=0.026) and high == pytest.approx(ref_high, abs=0.026)
    # and with the normal approximation: 0.2 +- 1.96 sd(d) / sqrt(40)
    sd = math.sqrt((20 / 40) - 0.2**2)
    assert low == pytest.approx(0.2 - Z95 * sd / math.sqrt(40), abs=0.03)
    # same seed, same interval; all differences equal, a point
    assert paired_bootstrap(a, b, resamples=20_000, seed=1) == (diff, low, high)
    assert paired_bootstrap([0, 0, 0], [1, 1, 1]) == (1.0, 1.0, 1.0)


def test_mean_std_by_hand():
    stat = mean_std([1.0, 2.0, 3.0, float("nan"), None])
    assert (stat.mean, stat.n) == (2.0, 3)
    assert stat.std == pytest.approx(math.sqrt(2 / 3))
    assert mean_std([1.0, 2.0, 3.0], ddof=1).std == pytest.approx(1.0)
    assert mean_std([4.0], ddof=1).std == 0.0
    assert math.isnan(mean_std([]).mean)
