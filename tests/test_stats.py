"""Confidence intervals on samples whose answers are known by hand."""
import math

import numpy as np
import pytest

from bench.stats import bootstrap_interval, difference_interval, mean_interval, t_quantile_975


def test_t_quantiles_are_the_published_values():
    # printed t tables (two-sided 95%), independent of the code under test
    for df, published in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423), (120, 1.9799)):
        assert t_quantile_975(df) == pytest.approx(published, abs=5e-5)
    assert 2.7764 > t_quantile_975(4.5) > 2.5706            # Welch's fractional df lie between the rows
    assert t_quantile_975(1e9) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile_975(0.5)


def test_mean_interval_of_one_to_five():
    # mean 3, sample sd sqrt(2.5), se = sqrt(2.5/5) = 0.70711, t(4) = 2.7764 → half-width 1.9632
    interval = mean_interval([1, 2, 3, 4, 5])
    assert interval.mean == pytest.approx(3.0)
    assert interval.std == pytest.approx(math.sqrt(2.5))
    assert interval.half_width == pytest.approx(2.7764 * math.sqrt(0.5), rel=1e-4)   # t(4) from a printed table
    assert (interval.low, interval.high) == pytest.approx((3 - 1.96322, 3 + 1.96322), abs=1e-4)
    assert interval.n == 5


def test_single_seed_has_no_interval_and_non_finite_values_are_dropped():
    interval = mean_interval([0.4, None, float("nan")])
    assert interval.mean == 0.4 and interval.half_width is None and interval.n == 1
    assert interval.overlaps(mean_interval([0.1, 0.2])) is None
    assert mean_interval([]) is None


def test_overlap_of_intervals():
    a, b = mean_interval([1.0, 1.1, 0.9]), mean_interval([1.05, 1.15, 0.95])
    far = mean_interval([5.0, 5.1, 4.9])
    assert a.overlaps(b) is True
    assert a.overlaps(far) is False


def test_welch_difference_by_hand():
    # a: mean 2, var 1; b: mean 5, var 1; n = 3 each → se = sqrt(2/3), df = 4, t = 2.7764
    difference = difference_interval([1, 2, 3], [4, 5, 6])
    assert difference.difference == pytest.approx(-3.0)
    assert difference.df == pytest.approx(4.0)
    assert difference.half_width == pytest.approx(2.7764 * math.sqrt(2 / 3), rel=1e-4)
    assert difference.significant is True
    weak = difference_interval([1, 2, 3], [1.5, 2.5, 3.5])
    assert weak.significant is False
    single = difference_interval([1.0], [2.0, 3.0])
    assert single.half_width is None and single.significant is None


def test_bootstrap_is_seeded_and_brackets_the_statistic():
    values = np.arange(20, dtype=float)
    first = bootstrap_interval(values, seed=3)
    assert first == bootstrap_interval(values, seed=3)
    statistic, low, high = first
    assert statistic == pytest.approx(9.5)
    assert low < statistic < high
    # roughly the t interval for this sample (se = 1.32): half-width near 2.6
    assert 1.8 < (high - low) / 2 < 3.4
    median, low, high = bootstrap_interval(values, statistic=np.median, seed=0)
    assert median == pytest.approx(9.5) and low <= median <= high


def _wilson_by_hand(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula_and_published_values():
    from bench.stats import wilson_interval
    # 0 of 10: upper 0.2775; 5 of 10: 0.2366–0.7634 (Newcombe 1998, Table I)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(133, 256) == pytest.approx(_wilson_by_hand(133, 256), abs=1e-9)


def test_accuracy_interval_never_leaves_zero_to_one():
    from bench.stats import accuracy_interval
    rng = np.random.default_rng(0)
    for _ in range(200):
        seeds = int(rng.integers(1, 6))
        values = np.clip(rng.choice([0.0, 1.0, rng.random()], size=seeds), 0, 1)
        interval = accuracy_interval(list(values), 256)
        assert 0.0 <= interval.low <= interval.mean <= interval.high <= 1.0
    # the t-interval of these seeds runs below 0 (0.5 ± 2.2 in percent); this one cannot
    interval = accuracy_interval([0.0, 0.0, 0.015], 1000)
    assert 0.0 <= interval.low < 0.001 and interval.high < 0.2 and interval.method == "logit-t"
    assert mean_interval([0.0, 0.0, 0.015]).low < 0


def test_accuracy_interval_by_hand():
    from bench.stats import accuracy_interval
    # seeds 0.71, 0.74, 0.69 of 256 examples: logits of (k + ½)/(N + 1); the seeds' logit variance (0.015)
    # is below the binomial one (≈ 0.019), which sets the width with the normal quantile 1.96
    correct = np.round(np.array([0.71, 0.74, 0.69]) * 256)
    logits = np.log((correct + 0.5) / (256 - correct + 0.5))
    binomial = np.mean(1 / (correct + 0.5) + 1 / (256 - correct + 0.5))
    assert logits.var(ddof=1) < binomial
    half = 1.959964 * math.sqrt(binomial / 3)
    expected = 1 / (1 + np.exp(-(logits.mean() - half))), 1 / (1 + np.exp(-(logits.mean() + half)))
    interval = accuracy_interval([0.71, 0.74, 0.69], 256)
    assert (interval.low, interval.high) == pytest.approx(expected, abs=1e-4)
    assert interval.mean == pytest.approx(0.71333, abs=1e-5)
    one = accuracy_interval([0.52], 256)
    assert one.method == "wilson" and (one.low, one.high) == pytest.approx(_wilson_by_hand(133, 256), abs=1e-9)
    assert accuracy_interval([0.52], None).low is None       # no example count: no interval for one seed
    identical = accuracy_interval([1.0, 1.0, 1.0], 1000)     # no spread: the binomial width remains
    assert identical.high == 1.0 and 0.99 < identical.low < 1.0
    # a spread above the binomial floor: Student's t(2) = 4.3027 on the seeds' logits
    correct = np.round(np.array([0.2, 0.5, 0.8]) * 1000)
    logits = np.log((correct + 0.5) / (1000 - correct + 0.5))
    half = 4.3027 * logits.std(ddof=1) / math.sqrt(3)
    wide = accuracy_interval([0.2, 0.5, 0.8], 1000)
    assert (wide.low, wide.high) == pytest.approx((1 / (1 + np.exp(-(logits.mean() - half))),
                                                   1 / (1 + np.exp(-(logits.mean() + half)))), abs=1e-4)


def test_accuracy_difference_uses_welch_with_spread_and_fisher_without():
    from scipy import stats as scipy_stats

    from bench.stats import accuracy_difference
    welch = accuracy_difference([0.71, 0.74, 0.69], [0.31, 0.35, 0.28], 256, 256)
    assert welch.method == "welch" and welch.difference == pytest.approx(0.4)
    assert welch.p == pytest.approx(scipy_stats.ttest_ind([0.71, 0.74, 0.69], [0.31, 0.35, 0.28],
                                                          equal_var=False).pvalue)
    fisher = accuracy_difference([0.5], [0.3], 100, 100)
    assert fisher.method == "fisher"
    assert fisher.p == pytest.approx(scipy_stats.fisher_exact([[50, 50], [30, 70]]).pvalue)
    assert -1.0 <= fisher.low < 0.2 < fisher.high <= 1.0
    assert accuracy_difference([0.5], [0.3], None, None).p is None
    both_flat = accuracy_difference([0.0, 0.0], [0.01, 0.01], 1000, 1000)
    assert both_flat.method == "fisher"


def test_one_seed_against_several_counts_the_seeds_spread_not_the_examples():
    """The case that misled the report: one 4800-step seed at 54.1% against three seeds spread over
    15 points. Pooled examples call it a difference; the seeds' spread does not."""
    from scipy import stats as scipy_stats

    from bench.stats import accuracy_difference
    one, several = [0.541], [0.438, 0.335, 0.488]
    test = accuracy_difference(one, several, 1000, [1000] * 3)
    assert test.method == "one-seed-t" and test.difference == pytest.approx(0.541 - np.mean(several))
    s = np.std(several, ddof=1)
    t = test.difference / (s * np.sqrt(1 + 1 / 3))
    assert test.p == pytest.approx(2 * scipy_stats.t(2).sf(t))
    half = scipy_stats.t(2).ppf(0.975) * s * np.sqrt(1 + 1 / 3)
    assert (test.low, test.high) == pytest.approx((test.difference - half, min(1.0, test.difference + half)))
    assert test.p > 0.05
    # pooled examples would have claimed it (what the report did before)
    correct = [[541, 459], [round(1000 * sum(several)), 3000 - round(1000 * sum(several))]]
    assert scipy_stats.fisher_exact(correct).pvalue < 0.001
    # the sides swap symmetrically
    swapped = accuracy_difference(several, one, [1000] * 3, 1000)
    assert swapped.difference == pytest.approx(-test.difference) and swapped.p == pytest.approx(test.p)
    # seeds that agree exactly: each side's binomial variance is the floor, with the normal quantile
    floor = accuracy_difference([0.5], [0.3, 0.3], 100, 100)
    standard_error = np.sqrt(0.25 / 100 + 0.21 / 100 / 2)
    assert floor.method == "one-seed-t"
    assert floor.p == pytest.approx(2 * scipy_stats.norm.sf(0.2 / standard_error))
    assert floor.high - floor.difference == pytest.approx(1.959964 * standard_error, rel=1e-5)
    # no counts and no spread: nothing to estimate a variance from
    assert accuracy_difference([0.5], [0.3, 0.3], None, None).p is None


def test_holm_by_hand():
    from bench.stats import holm
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_learning_plateau_reads_the_tail_of_the_training_curve():
    from bench.stats import learning_plateau

    rng = np.random.default_rng(0)
    steps = np.arange(10, 1010, 10)
    falling = [{"step": int(s), "lm_loss": 2.0 - 0.001 * s} for s in steps]   # 2.0 → 1.0: still falling
    plateau = learning_plateau(falling)
    assert plateau["from_step"] == 810 and not plateau["finished"] and plateau["trend"] == "falling"
    assert plateau["absolute_drop"] == pytest.approx(0.001 * 190, rel=1e-6)   # the line across 810..1000
    assert plateau["drop_standard_error"] == pytest.approx(0.0, abs=1e-9)      # an exact line: no scatter
    flat = [{"step": int(s), "lm_loss": 0.5 + 0.02 * rng.standard_normal()} for s in steps]
    assert learning_plateau(flat)["finished"]
    # the standard error is that of a fitted line's fall: over many noisy tails, the falls scatter by it
    tails = [learning_plateau([{"step": int(s), "lm_loss": 0.5 + 0.02 * rng.standard_normal()} for s in steps])
             for _ in range(400)]
    scatter = float(np.std([t["absolute_drop"] for t in tails]))
    assert np.mean([t["drop_standard_error"] for t in tails]) == pytest.approx(scatter, rel=0.15)
    # near zero: a large relative fall of a loss that has nothing left to lose
    tiny = [{"step": int(s), "lm_loss": 1e-3 * math.exp(-s / 300)} for s in steps]
    result = learning_plateau(tiny)
    assert result["relative_drop"] > 0.3 and result["finished"]
    rising = [{"step": p["step"], "lm_loss": 3.0 - p["lm_loss"]} for p in falling]
    assert learning_plateau(rising)["trend"] == "rising" and not learning_plateau(rising)["finished"]
    assert learning_plateau(falling[:5]) is None                             # one point in the tail
    assert learning_plateau([{"step": 1, "loss": 1.0}, {"step": 2, "loss": float("nan")},
                             {"step": 3, "loss": 1.0}]) is None
