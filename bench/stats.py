"""Confidence intervals and tests for the report and `bench compare`.

- `mean_interval`, `difference_interval`: Student-t and Welch intervals (quantiles from scipy.stats,
  Welch's non-integer degrees of freedom included) for quantities without natural bounds (seconds,
  FLOPs). A single sample has no interval (`half_width` None).
- `accuracy_interval`: exact accuracy over seeds, an interval that cannot leave [0, 1]. One seed: the
  Wilson score interval of its correct count on the evaluation split. Several seeds: a Student-t
  interval of the seeds' logits, back-transformed (each seed's accuracy smoothed to (k + ½)/(N + 1)
  so 0% and 100% have a logit). Its standard error is never below the binomial one of the examples
  (then with the normal quantile: that variance is known, not estimated), so identical seeds (all 0%,
  all 100%) still get the width their example count allows.
- `accuracy_difference`: a − b with a p-value. Both sides ≥ 2 seeds: Welch's t-test and interval
  (clipped to [−1, 1]). One seed against ≥ 2: the single seed is one draw from a distribution with
  the other side's seed spread s (equal variances: one seed cannot estimate its own), so a − b has
  standard error s·√(1 + 1/n) and Student's t with n − 1 degrees of freedom; each side's variance is
  floored at its binomial one (then the normal quantile). Pooling the examples there would count
  the one seed's thousand examples as if they were seeds, and call a seed's luck a difference.
  Otherwise (one seed each, or no spread on either side) the pooled correct counts: Fisher's exact
  test and Newcombe's hybrid score interval (from the two Wilson intervals), which count examples,
  not seeds.
- `holm`: Holm's step-down adjustment of a family of p-values.
- `bootstrap_interval`: a seeded percentile bootstrap for statistics that are not means.
"""
from __future__ import annotations

import math
import warnings
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


# ------------------------------------------------------------------------------------ accuracies
@dataclass(frozen=True)
class AccuracyInterval:
    """Mean exact accuracy over seeds with a 95% interval inside [0, 1]; low/high None: no interval
    (one seed whose example count is unknown)."""
    mean: float
    low: float | None
    high: float | None
    n: int
    method: str   # "wilson" (one seed), "logit-t" (seeds) or "none"


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (scipy.stats.binomtest)."""
    interval = scipy_stats.binomtest(int(correct), int(total)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def _per_seed(examples: Sequence[int | None] | int | None, count: int) -> list[int | None]:
    """Examples per seed: a sequence as given, one number (or None) repeated."""
    if examples is None or isinstance(examples, (int, np.integer)):
        return [examples] * count
    return list(examples)


def _counts(examples: Sequence[int | None]) -> np.ndarray | None:
    """Examples per seed as an array, or None when any is unknown."""
    if any(e is None or not int(e) > 0 for e in examples):
        return None
    return np.asarray(examples, dtype=float)


def accuracy_interval(accuracies: Sequence[float | None], examples: Sequence[int | None] | int | None = None,
                      confidence: float = CONFIDENCE) -> AccuracyInterval | None:
    """See the module docstring; `examples` is the evaluation split's size (per seed or one for all)."""
    pairs = [(a, e) for a, e in zip(accuracies, _per_seed(examples, len(accuracies)))
             if a is not None and math.isfinite(a)]
    if not pairs:
        return None
    values = np.asarray([a for a, _ in pairs], dtype=float)
    totals = _counts([e for _, e in pairs])
    mean = float(values.mean())
    if values.size == 1:
        if totals is None:
            return AccuracyInterval(mean, None, None, 1, "none")
        low, high = wilson_interval(round(values[0] * totals[0]), int(totals[0]), confidence)
        return AccuracyInterval(mean, low, high, 1, "wilson")
    if totals is None:   # no counts: the logit of a 0% or 100% seed is undefined; nudge by 1e-3
        totals = np.full(values.shape, 1000.0)
    correct = np.round(values * totals)
    smoothed = (correct + 0.5) / (totals + 1.0)
    logits = np.log(smoothed / (1.0 - smoothed))
    binomial_variance = float(np.mean(1.0 / (correct + 0.5) + 1.0 / (totals - correct + 0.5)))
    spread = float(logits.var(ddof=1))
    standard_error = math.sqrt(max(spread, binomial_variance) / values.size)
    # an estimated spread takes Student's t; the binomial floor is a known variance: the normal quantile
    quantile = float(scipy_stats.t.ppf(0.5 + confidence / 2, values.size - 1) if spread >= binomial_variance
                     else scipy_stats.norm.ppf(0.5 + confidence / 2))
    centre = float(logits.mean())
    low, high = (float(1.0 / (1.0 + math.exp(-(centre + sign * quantile * standard_error)))) for sign in (-1, 1))
    # the logit centre is not the arithmetic mean; the interval is widened to hold the mean shown
    return AccuracyInterval(mean, min(low, mean), max(high, mean), int(values.size), "logit-t")


@dataclass(frozen=True)
class DifferenceTest:
    """a − b in accuracy (fractions) with a 95% interval in [−1, 1] and a two-sided p-value; p None:
    no test possible (e.g. single seeds with unknown example counts)."""
    difference: float
    low: float | None
    high: float | None
    p: float | None
    method: str   # "welch", "one-seed-t", "fisher" or "none"
    n_a: int
    n_b: int


def accuracy_difference(a: Sequence[float], b: Sequence[float], examples_a: Sequence[int | None] | None = None,
                        examples_b: Sequence[int | None] | None = None) -> DifferenceTest | None:
    """See the module docstring."""
    first, second = _clean(a), _clean(b)
    if first.size == 0 or second.size == 0:
        return None
    if first.size != len(a) or second.size != len(b):
        raise ValueError("accuracy_difference needs finite accuracies (one per seed)")
    difference = float(first.mean() - second.mean())
    spread = first.size > 1 and second.size > 1 and (first.std() > 0 or second.std() > 0)
    if spread:
        welch = difference_interval(first, second)
        with warnings.catch_warnings():   # nearly identical samples: scipy warns, the p-value is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(scipy_stats.ttest_ind(first, second, equal_var=False).pvalue)
        low, high = max(-1.0, difference - welch.half_width), min(1.0, difference + welch.half_width)
        return DifferenceTest(difference, low, high, p, "welch", int(first.size), int(second.size))
    totals_a, totals_b = _counts(_per_seed(examples_a, first.size)), _counts(_per_seed(examples_b, second.size))
    if min(first.size, second.size) == 1 and max(first.size, second.size) > 1:
        test = _one_seed_test(first, second, totals_a, totals_b)
        if test is not None:
            return test
    if totals_a is None or totals_b is None:
        return DifferenceTest(difference, None, None, None, "none", int(first.size), int(second.size))
    k_a, n_a = int(np.round(first * totals_a).sum()), int(totals_a.sum())
    k_b, n_b = int(np.round(second * totals_b).sum()), int(totals_b.sum())
    p = float(scipy_stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)
    (low_a, high_a), (low_b, high_b) = wilson_interval(k_a, n_a), wilson_interval(k_b, n_b)
    pooled = k_a / n_a - k_b / n_b
    low = pooled - math.sqrt((k_a / n_a - low_a) ** 2 + (high_b - k_b / n_b) ** 2)
    high = pooled + math.sqrt((high_a - k_a / n_a) ** 2 + (k_b / n_b - low_b) ** 2)
    return DifferenceTest(difference, low, high, p, "fisher", int(first.size), int(second.size))


def _one_seed_test(first: np.ndarray, second: np.ndarray, totals_a: np.ndarray | None,
                   totals_b: np.ndarray | None) -> DifferenceTest | None:
    """One seed against several (see the module docstring); None when the seeds agree exactly and the
    example counts are unknown (nothing to estimate a variance from)."""
    seeds = first if first.size > 1 else second
    spread = float(seeds.var(ddof=1))

    def variance(values: np.ndarray, totals: np.ndarray | None) -> tuple[float, bool]:
        """One seed's variance on this side, and whether it is the estimated spread (not the floor)."""
        binomial = 0.0 if totals is None else float(np.mean(values * (1.0 - values) / totals))
        return max(spread, binomial), spread >= binomial

    (var_a, estimated_a), (var_b, estimated_b) = variance(first, totals_a), variance(second, totals_b)
    standard_error = math.sqrt(var_a / first.size + var_b / second.size)
    if standard_error == 0.0:
        return None
    difference = float(first.mean() - second.mean())
    # an estimated spread takes Student's t on the several seeds' n − 1 degrees of freedom; floors
    # alone are known variances: the normal distribution
    distribution = (scipy_stats.t(seeds.size - 1) if estimated_a or estimated_b else scipy_stats.norm())
    half = float(distribution.ppf(0.5 + CONFIDENCE / 2)) * standard_error
    p = float(2.0 * distribution.sf(abs(difference) / standard_error))
    return DifferenceTest(difference, max(-1.0, difference - half), min(1.0, difference + half), p,
                          "one-seed-t", int(first.size), int(second.size))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): the i-th smallest of m is multiplied
    by m − i + 1, made non-decreasing, capped at 1."""
    order = np.argsort(np.asarray(p_values, dtype=float), kind="stable")
    adjusted = np.empty(len(order))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted.tolist()


# A run has finished learning when its training loss no longer falls over the last 20% of its steps
# (the recipe issue's criterion): a linear fit across that tail may fall by at most 5% of the tail's
# mean loss, or by at most 0.005 nats per token (a loss near zero has large relative but no real
# changes left).
PLATEAU_FRACTION = 0.2
PLATEAU_TOLERANCE = 0.05
PLATEAU_ABSOLUTE_TOLERANCE = 0.005


def _tail_loss(point: dict) -> float | None:
    """The loss a curve point contributes: the mean over its logging window where the trainer logged
    one (`lm_loss_window_mean`), else that step's batch; the language-model loss before the total."""
    for key in ("lm_loss_window_mean", "loss_window_mean", "lm_loss", "loss"):
        if point.get(key) is not None:
            return point[key]
    return None


def learning_plateau(curve: Sequence[dict], fraction: float = PLATEAU_FRACTION) -> dict | None:
    """How much the training loss still fell across the last `fraction` of the logged steps.

    A least-squares line through the logged language-model loss of the points in the tail (each
    point's window mean where logged, else its batch's loss: `_tail_loss`) — a line, not
    first-vs-last point, because logged losses are noisy. `absolute_drop`: the line's fall across the tail (nats per token, positive: still
    falling); `relative_drop`: that over the tail's mean loss; `trend`: "flat" when either is within
    its tolerance either way, else "falling" (still learning) or "rising" (unstable at the end);
    `finished`: the trend is flat; `drop_standard_error`: the standard error of `absolute_drop` from
    the line's residuals — single-batch losses scatter, so a fall smaller than about twice it is not
    resolved either way. None when the tail has fewer than 3 points or a non-finite loss."""
    points = [(p["step"], _tail_loss(p)) for p in curve]
    points = [(s, y) for s, y in points if y is not None]
    if not points:
        return None
    last = points[-1][0]
    tail = [(s, y) for s, y in points if s > last * (1 - fraction)]
    if len(tail) < 3 or not all(math.isfinite(y) for _, y in tail):
        return None
    steps, losses = np.array(tail, dtype=float).T
    slope, intercept = np.polyfit(steps, losses, 1)
    span = steps[-1] - steps[0]
    absolute = float(-slope * span)
    residuals = losses - (slope * steps + intercept)
    spread = float(((steps - steps.mean()) ** 2).sum())
    standard_error = float(np.sqrt((residuals ** 2).sum() / (len(steps) - 2) / spread) * span) if spread > 0 else 0.0
    mean = float(losses.mean())
    relative = absolute / mean if mean > 0 else 0.0
    flat = abs(relative) <= PLATEAU_TOLERANCE or abs(absolute) <= PLATEAU_ABSOLUTE_TOLERANCE
    trend = "flat" if flat else "falling" if absolute > 0 else "rising"
    return {"relative_drop": relative, "absolute_drop": absolute, "drop_standard_error": standard_error,
            "from_step": int(steps[0]), "trend": trend, "finished": flat}
