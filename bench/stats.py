"""Confidence intervals for the report: mean ± 95% CI over seeds, and differences between models.

The intervals are Student-t intervals. scipy is not a dependency, so the two-sided 95% quantiles
t(0.975, df) come from the standard table below; between table rows (and for the non-integer
degrees of freedom of Welch's test) we interpolate linearly in 1/df, which is how printed tables are
meant to be read and is accurate to < 0.1% here. A seeded percentile bootstrap is offered for
statistics that are not means (numpy only).

A single seed has no interval: `MeanInterval.half_width` is None and the report labels the number
"1 seed" instead of inventing a spread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

CONFIDENCE = 0.95

# t(0.975, df): the two-sided 95% quantile of Student's t (any statistics textbook table).
_T975 = {
    1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
    10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098,
    18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739, 23: 2.0687, 24: 2.0639, 25: 2.0595,
    26: 2.0555, 27: 2.0518, 28: 2.0484, 29: 2.0452, 30: 2.0423, 40: 2.0211, 50: 2.0086, 60: 2.0003,
    80: 1.9901, 100: 1.9840, 120: 1.9799,
}
_Z975 = 1.9600  # df → ∞


def t_quantile_975(df: float) -> float:
    """Two-sided 95% Student-t quantile for df ≥ 1 (interpolated in 1/df between table rows)."""
    if not df >= 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df in _T975:
        return _T975[df]
    rows = sorted(_T975)
    if df > rows[-1]:
        lower_df, lower_t, upper_inverse, upper_t = rows[-1], _T975[rows[-1]], 0.0, _Z975
    else:
        below = max(r for r in rows if r < df)
        above = min(r for r in rows if r > df)
        lower_df, lower_t, upper_inverse, upper_t = below, _T975[below], 1.0 / above, _T975[above]
    fraction = (1.0 / lower_df - 1.0 / df) / (1.0 / lower_df - upper_inverse)
    return lower_t + fraction * (upper_t - lower_t)


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
