"""Does a rerun reproduce a study? Compare two results trees variant by variant.

A variant is one model × task × configuration (seed aside), as in the report. For each variant
present in both trees the exact accuracy is compared:

- both sides with ≥ 2 seeds: Welch's 95% interval of the difference of means; *consistent* when it
  includes zero;
- a single candidate seed against ≥ 2 reference seeds: the reference's 95% prediction interval for
  one new run, mean ± t(n−1)·s·√(1 + 1/n); *consistent* when the candidate lies inside;
- a single reference seed: no interval — only "identical" (the same seeds, the same accuracies)
  or "untested".

Seeds present on both sides are also checked for identical accuracy: CPU training is deterministic
per seed on one machine and library build, while another CPU changes float rounding and with it the
trajectory, which the intervals are there to absorb. At 95% per variant about one consistent
variant in twenty is flagged by chance, so this is a report, not a pass/fail gate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bench.report import Variant, load_runs, stat_cell
from bench.results import ResultsError
from bench.stats import difference_interval, mean_interval, t_quantile_975


@dataclass(frozen=True)
class Comparison:
    task: str
    label: str
    reference: list[float]           # exact accuracy per seed, in [0, 1]
    candidate: list[float]
    same_seed_identical: int         # seeds run on both sides with identical exact accuracy …
    same_seed_total: int             # … out of this many seeds run on both sides
    difference: float                # mean(candidate) − mean(reference)
    half_width: float | None         # of the Welch or prediction interval; None: no interval
    method: str                      # "welch", "prediction" or "none"

    @property
    def verdict(self) -> str:
        if self.half_width is None:
            same = self.same_seed_identical == self.same_seed_total == len(self.reference) == len(self.candidate)
            return "identical" if same else "untested"
        if abs(self.difference) <= self.half_width:
            return "consistent"
        # a zero-width interval: every seed of a side scored the same (often 0%), so any change shows
        return "differs (no spread)" if self.half_width == 0.0 else "differs"


def prediction_half_width(values: list[float]) -> float | None:
    """Half-width of the 95% prediction interval for one new draw (None below two values)."""
    interval = mean_interval(values)
    if interval is None or interval.n < 2:
        return None
    return t_quantile_975(interval.n - 1) * interval.std * math.sqrt(1.0 + 1.0 / interval.n)


def _accuracy_by_seed(variant: Variant) -> dict[int, float]:
    return {run.seed: run.exact_accuracy for run in variant.complete if run.exact_accuracy is not None}


def compare_trees(reference: Path, candidate: Path, tasks: Iterable[str] = (), models: Iterable[str] = (),
                  warnings: list[str] | None = None) -> tuple[list[Comparison], list[str], list[str]]:
    """(comparisons, labels only in the reference, labels only in the candidate). `warnings`, when
    given, receives the lines `bench report` prints for the summaries it skips (corrupt, unfinished…)."""
    for root in (reference, candidate):
        if not Path(root).is_dir():
            raise ResultsError(f"{root}: no such results directory")
    tasks, models = tuple(tasks), tuple(models)
    reference_variants, reference_warnings = load_runs(Path(reference), tasks, models)
    candidate_variants, candidate_warnings = load_runs(Path(candidate), tasks, models)
    if warnings is not None:
        warnings.extend(reference_warnings + candidate_warnings)
    key = lambda v: (v.task, v.model, v.preset, v.key)  # noqa: E731
    candidates = {key(v): v for v in candidate_variants}
    comparisons, only_reference = [], []
    for variant in reference_variants:
        other = candidates.pop(key(variant), None)
        ours, theirs = _accuracy_by_seed(variant), (_accuracy_by_seed(other) if other else {})
        if not ours or not theirs:
            only_reference.append(f"{variant.task}: {variant.label}")
            continue
        shared = sorted(set(ours) & set(theirs))
        reference_values, candidate_values = list(ours.values()), list(theirs.values())
        welch = difference_interval(candidate_values, reference_values)   # no interval below 2 seeds a side
        if welch.half_width is not None:
            half_width, method = welch.half_width, "welch"
        elif len(reference_values) >= 2:
            half_width, method = prediction_half_width(reference_values), "prediction"
        else:
            half_width, method = None, "none"
        comparisons.append(Comparison(variant.task, variant.label, reference_values, candidate_values,
                                      sum(ours[s] == theirs[s] for s in shared), len(shared),
                                      welch.difference, half_width, method))
    only_candidate = [f"{v.task}: {v.label}" for v in candidates.values() if _accuracy_by_seed(v)]
    return comparisons, only_reference, only_candidate


def _percent(values: list[float]) -> str:
    return stat_cell(values, "{:.1f}".format, 100)   # the report's cell: "mean ± half (n=3)" / "(1 seed)"


def render(comparisons: list[Comparison], only_reference: list[str], only_candidate: list[str]) -> list[str]:
    """Plain-text lines: one per variant, then a summary."""
    header = (f"{'task':<15} {'variant':<34} {'reference %':<20} {'candidate %':<20} "
              f"{'difference (points)':<26} {'same seed':<10} verdict")
    lines = [header]
    for c in comparisons:
        interval = "" if c.half_width is None else f" ± {100 * c.half_width:.1f}"
        kind = {"welch": " Welch", "prediction": " pred.", "none": ""}[c.method]
        same = f"{c.same_seed_identical}/{c.same_seed_total}" if c.same_seed_total else "—"
        lines.append(f"{c.task:<15} {c.label:<34} {_percent(c.reference):<20} {_percent(c.candidate):<20} "
                     f"{f'{100 * c.difference:+.1f}{interval}{kind}':<26} {same:<10} {c.verdict}")
    verdicts = [c.verdict for c in comparisons]
    tested = sum(v == "consistent" or v.startswith("differs") for v in verdicts)
    identical = sum(c.same_seed_identical for c in comparisons)
    shared = sum(c.same_seed_total for c in comparisons)
    lines.append(f"{verdicts.count('consistent')} of {tested} variants with an interval are consistent "
                 f"(95%: about 1 in 20 consistent variants is flagged by chance); "
                 f"{identical} of {shared} same-seed runs identical")
    for title, names in (("only in the reference", only_reference), ("only in the candidate", only_candidate)):
        if len(names) > 8:   # e.g. a rerun of some tasks: name the tasks, not every variant
            tasks = sorted({name.split(":", 1)[0] for name in names})
            lines.append(f"{title}: {len(names)} variants (tasks: {', '.join(tasks)})")
        elif names:
            lines.append(f"{title}: {'; '.join(names)}")
    return lines
