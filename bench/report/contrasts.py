"""The report's pairwise claims, declared as data, and their tests with Holm's correction.

A `Contrast` says which variant is compared against which:

- kind "config": two variants of the same task, model and preset that differ only in `key`
  (treatment value vs control value; ">1" matches any number above 1). Keys that do not change what
  is trained (diagnostics settings, the sizes parameter matching chose) are not differences. The
  budget keys (`BUDGET_KEYS`) may differ too when the runs spent alike what the pair is matched on:
  an ablation at matched examples or FLOPs against the main run at its steps.
- kind "model": the main variants (see `main_variants`) of model `treatment` vs model `control` on
  each task.
- kind "leader": on each task, the best main variant vs the runner-up (the ranking's claim).
- kind "longer": a model trained for more steps than its main variant (and otherwise alike) vs that
  main variant: has learning finished at the preset's budget, or would the ranking move with more?
- kind "act": within every run with ACT diagnostics, learned halting vs running all segments (paired
  by seed: the same model and examples).

Every matched pair becomes a `Pair` with a DifferenceTest (bench/stats.py) and says what the two
sides spent alike (`matched_budgets`: steps, examples, FLOPs). All pairs with a p-value
form one family: Holm's correction runs over all of them at once, and a pair counts as a difference
only when its adjusted p is below `ALPHA`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from bench.report.load import Variant, by_task, differing_keys, value_of
from bench.stats import DifferenceTest, accuracy_difference, holm, mean_interval

ALPHA = 0.05
BUDGET_KEYS = frozenset({"train.budget", "train.steps", "train.max_examples", "train.max_flops"})
BUDGET_TOLERANCE = 0.02   # seed means of a spent budget within 2%: "matched"
LONGER = "none (the treatment trains longer)"   # what a "longer" pair spent alike, by design


@dataclass(frozen=True)
class Contrast:
    name: str          # as the report prints it, "treatment − control"
    kind: str          # config | model | leader | longer | act
    key: str = ""      # the config key (kind "config")
    treatment: Any = None
    control: Any = None


CONTRASTS: tuple[Contrast, ...] = (
    Contrast("best − runner-up", "leader"),
    Contrast("more steps − the preset's (has learning finished?)", "longer"),
    Contrast("segments S − 1 (outer loop)", "config", "train.segments", ">1", 1),
    Contrast("TRM − HRM (full last-cycle backprop vs one-step gradient)", "model", "model_name", "trm", "hrm"),
    Contrast("last-cycle − one-step gradient (HRM's network)", "config", "model.gradient", "last_cycle", "one_step"),
    Contrast("tied − untied weights (recurrent vs feed-forward stack)", "config", "model.tied", True, False),
    Contrast("looped − transformer (recurrent vs feed-forward model)", "model", "model_name", "looped", "transformer"),
    Contrast("progressive loss α > 0 − α = 0", "config", "train.progressive_alpha", ">0", 0.0),
    Contrast("random − fixed iteration count", "config", "train.iteration_rule", "random", "fixed"),
    Contrast("best of k − fixed iteration count", "config", "train.iteration_rule", "best_of_k", "fixed"),
    Contrast("ACT on − off (training)", "config", "train.act", True, False),
    Contrast("ACT learned halting − all segments", "act"),
)

@dataclass(frozen=True)
class Pair:
    contrast: Contrast
    task: str
    treatment: str      # variant labels
    control: str
    test: DifferenceTest
    adjusted_p: float | None = None
    matched: str = ""   # what both sides spent alike, e.g. "steps" or "examples" (see matched_budgets)

    @property
    def significant(self) -> bool:
        return self.adjusted_p is not None and self.adjusted_p < ALPHA


def _number(variant: Variant, key: str, default: float) -> float:
    """A numeric config value of the variant (`default` where it records none)."""
    value = variant.flat.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _segments(variant: Variant) -> float:
    return _number(variant, "train.segments", 1.0)


def main_variants(group: list[Variant]) -> list[Variant]:
    """A task's main comparison: each model's run at its preset as the suite defines it now. A model
    with no variant there (a study made at an older preset) is represented by its variants at its
    largest segment count (a variant of the same model with fewer segments is the outer-loop
    ablation)."""
    main = []
    for model in dict.fromkeys(v.model for v in group):
        mine = [v for v in group if v.model == model and v.complete]
        at_preset = [v for v in mine if v.off_preset == frozenset()]
        most = max((_segments(v) for v in mine), default=0.0)
        main += at_preset or [v for v in mine if _segments(v) == most]
    return main


def _matches(value: Any, wanted: Any) -> bool:
    """Does a config value match a declared treatment/control (">1": any number above 1)?"""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(wanted, str) and wanted.startswith(">"):
        return numeric and value > float(wanted[1:])
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    if numeric and isinstance(wanted, (int, float)):
        return float(value) == float(wanted)
    return value == wanted


def matched_budgets(a: Variant, b: Variant) -> str:
    """What the two variants' runs spent alike, seed means within BUDGET_TOLERANCE: "steps",
    "examples", "FLOPs" (comma-separated), or "no budget" when they match on none."""
    spent = (("steps", lambda r: r.train_steps), ("examples", lambda r: r.train_examples),
             ("FLOPs", lambda r: r.flops_total))
    alike = []
    for name, getter in spent:
        values_a, values_b = a.values(getter), b.values(getter)
        if values_a and values_b:
            mean_a, mean_b = float(np.mean(values_a)), float(np.mean(values_b))
            if abs(mean_a - mean_b) <= BUDGET_TOLERANCE * max(abs(mean_a), abs(mean_b)):
                alike.append(name)
    return ", ".join(alike) or "no budget"


def _config_pairs(contrast: Contrast, group: list[Variant]) -> list[tuple[str, str, DifferenceTest | None, str]]:
    """Variants of one model that differ in `contrast.key` and otherwise at most in the budget keys,
    those only when the two sides spent some budget alike. Each variant takes part in one pair per
    matched budget, the one with the fewest differences (a rerun of the main run at an examples
    budget would otherwise add the same comparison twice)."""
    candidates = []
    for a in group:
        for b in group:
            if (a.model, a.preset) != (b.model, b.preset) or not (a.complete and b.complete) \
                    or not _matches(value_of(a, contrast.key), contrast.treatment) \
                    or not _matches(value_of(b, contrast.key), contrast.control):
                continue
            differences = differing_keys(a.flat, b.flat)
            if contrast.key not in differences or not differences - {contrast.key} <= BUDGET_KEYS:
                continue
            matched = matched_budgets(a, b)
            if differences != {contrast.key} and matched == "no budget":
                continue   # the budgets differ and nothing was spent alike: confounded
            candidates.append((len(differences), a, b, matched))
    chosen, used = [], set()
    for _, a, b, matched in sorted(candidates, key=lambda c: c[0]):
        if (a.key, matched) in used or (b.key, matched) in used:
            continue
        used |= {(a.key, matched), (b.key, matched)}
        chosen.append((a.label, b.label, _accuracy_test(a, b), matched))
    return chosen


def _accuracy_test(a: Variant, b: Variant) -> DifferenceTest | None:
    runs_a = [r for r in a.complete if r.exact_accuracy is not None]
    runs_b = [r for r in b.complete if r.exact_accuracy is not None]
    return accuracy_difference([r.exact_accuracy for r in runs_a], [r.exact_accuracy for r in runs_b],
                               [r.examples for r in runs_a], [r.examples for r in runs_b])


def _act_test(variant: Variant) -> DifferenceTest | None:
    """Learned − fixed halting per seed: a paired t-test and interval over seeds (one seed, or every seed
    the same difference: no test)."""
    deltas = np.asarray([r.act.accuracy["learned"] - r.act.accuracy["fixed"] for r in variant.complete
                         if r.act and r.act.accuracy["learned"] is not None and r.act.accuracy["fixed"] is not None])
    if deltas.size == 0:
        return None
    interval = mean_interval(deltas)
    if interval.half_width is None or interval.std == 0:   # one seed, or no spread to test against
        return DifferenceTest(interval.mean, None, None, None, "none", interval.n, interval.n)
    p = float(scipy_stats.ttest_1samp(deltas, 0.0).pvalue)
    return DifferenceTest(interval.mean, max(-1.0, interval.low), min(1.0, interval.high), p, "paired-t",
                          interval.n, interval.n)


def _pairs(contrast: Contrast, task: str, group: list[Variant]) -> list[tuple[str, str, DifferenceTest | None, str]]:
    main = main_variants(group)
    if contrast.kind == "leader":
        ranked = sorted((v for v in main if v.accuracy()), key=lambda v: -v.accuracy().mean)
        return [(ranked[0].label, ranked[1].label, _accuracy_test(ranked[0], ranked[1]),
                 matched_budgets(ranked[0], ranked[1]))] if len(ranked) > 1 else []
    if contrast.kind == "longer":
        return [(a.label, b.label, _accuracy_test(a, b), LONGER) for b in main for a in group
                if a.complete and (a.model, a.preset) == (b.model, b.preset)
                and differing_keys(a.flat, b.flat) == {"train.steps"}
                and _number(a, "train.steps", 0.0) > _number(b, "train.steps", 0.0)]
    if contrast.kind == "model":
        return [(a.label, b.label, _accuracy_test(a, b), matched_budgets(a, b)) for a in main
                if a.model == contrast.treatment for b in main if b.model == contrast.control]
    if contrast.kind == "act":
        return [(f"{v.label} · learned", f"{v.label} · all segments", _act_test(v), "the same runs") for v in group
                if any(r.act for r in v.complete)]
    return _config_pairs(contrast, group)


def evaluate(variants: list[Variant], contrasts: tuple[Contrast, ...] = CONTRASTS) -> list[Pair]:
    """Every declared contrast on every task; Holm's correction over all pairs that have a p-value."""
    pairs = [Pair(contrast, task, treatment, control, test, matched=matched)
             for contrast in contrasts for task, group in by_task(variants).items()
             for treatment, control, test, matched in _pairs(contrast, task, group) if test is not None]
    tested = [i for i, pair in enumerate(pairs) if pair.test.p is not None]
    for index, adjusted in zip(tested, holm([pairs[i].test.p for i in tested])):
        pairs[index] = replace(pairs[index], adjusted_p=adjusted)
    return pairs
