"""Confidence intervals for the report: mean ± 95% CI over seeds, and differences between models.

The intervals are Student-t intervals, with quantiles from scipy.stats (Welch's non-integer degrees
of freedom included). A seeded percentile bootstrap is offered for statistics that are not means.

A single seed has no interval: `MeanInterval.half_width` is None and the report labels the number
"1 seed" instead of inventing a spread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


def t_quantile_975(df: float) -> float:
    """Two-sided 95% Student-t quantile t(0.975, df) for df ≥ 1."""
    if not df >= 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(scipy_stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class MeanInterval:
    mean: float
    half_width: float | None   # None: one sample, no interval
    n: int
    std: float | None = None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def overlaps(self, other: "MeanInterval") -> bool | None:
        """Do the two intervals overlap? None when either has no interval."""
        if self.half_width is None or other.half_width is None:
            return None
        return self.low <= other.high and other.low <= self.high


def _clean(values: Iterable[float | None]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def mean_interval(values: Iterable[float | None]) -> MeanInterval | None:
    """Mean and 95% t-interval half-width of the finite values; None when there are none."""
    array = _clean(values)
    if array.size == 0:
        return None
    mean = float(array.mean())
    if array.size == 1:
        return MeanInterval(mean, None, 1)
    std = float(array.std(ddof=1))
    half = t_quantile_975(array.size - 1) * std / math.sqrt(array.size)
    return MeanInterval(mean, half, int(array.size), std)


@dataclass(frozen=True)
class Difference:
    """mean(a) − mean(b) with Welch's 95% interval (unequal variances)."""
    difference: float
    half_width: float | None
    n_a: int
    n_b: int
    df: float | None = None

    @property
    def significant(self) -> bool | None:
        """Does the interval exclude zero? None when there is no interval."""
        if self.half_width is None:
            return None
        return abs(self.difference) > self.half_width


def difference_interval(a: Iterable[float | None], b: Iterable[float | None]) -> Difference | None:
    """Welch interval for the difference of means; no interval unless both sides have ≥ 2 samples."""
    first, second = _clean(a), _clean(b)
    if first.size == 0 or second.size == 0:
        return None
    difference = float(first.mean() - second.mean())
    if first.size < 2 or second.size < 2:
        return Difference(difference, None, int(first.size), int(second.size))
    var_a, var_b = first.var(ddof=1) / first.size, second.var(ddof=1) / second.size
    standard_error = math.sqrt(var_a + var_b)
    if standard_error == 0.0:
        return Difference(difference, 0.0, int(first.size), int(second.size), math.inf)
    # Welch–Satterthwaite degrees of freedom
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (first.size - 1) + var_b ** 2 / (second.size - 1))
    df = max(df, 1.0)
    return Difference(difference, t_quantile_975(df) * standard_error, int(first.size), int(second.size), df)


def bootstrap_interval(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean,
                       confidence: float = CONFIDENCE, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """(statistic, low, high): seeded percentile bootstrap of any statistic of the values."""
    array = _clean(values)
    if array.size == 0:
        raise ValueError("bootstrap_interval needs at least one finite value")
    generator = np.random.default_rng(seed)
    samples = array[generator.integers(0, array.size, size=(resamples, array.size))]
    estimates = np.apply_along_axis(statistic, 1, samples)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(statistic(array)), float(low), float(high)
