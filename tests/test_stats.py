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
