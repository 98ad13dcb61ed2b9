"""Sentences and tables generated from the numbers: the headline per question, one finding per
contrast, and the per-pair appendix.

Percentages are of exact accuracy; intervals are 95% (bench/stats.py says which construction);
"differs" means Holm-adjusted p < 0.05 over the report's whole family of pairwise tests
(bench/report/contrasts.py).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.report.contrasts import CONTRASTS, Pair, main_variants
from bench.report.load import Variant, by_task, presets
from bench.report.schema import Run
from bench.stats import AccuracyInterval, DifferenceTest, accuracy_difference, learning_plateau

NOTHING_LEARNED = 0.05     # best mean exact accuracy below this: the task did not learn in budget
CONVERGED = 0.05           # final relative residual below this: the state reached a fixed point
SOLVED = 0.5               # seed-mean exact accuracy at or above this: a split counts as solved


def fmt_accuracy(interval: AccuracyInterval | None, seeds: bool = True) -> str:
    """'71.3 [63.8, 77.8]' (percent), with '(1 seed)' for single runs."""
    if interval is None:
        return "—"
    text = f"{100 * interval.mean:.1f}"
    if interval.low is not None:
        text += f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"
    return text + (" (1 seed)" if seeds and interval.n == 1 else "")


def fmt_difference(test: DifferenceTest) -> str:
    text = f"{100 * test.difference:+.1f}"
    return text + (f" [{100 * test.low:+.1f}, {100 * test.high:+.1f}]" if test.low is not None else "") + " points"


def _p(value: float | None) -> str:
    return "—" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


# ------------------------------------------------------------------------------------ contrasts
def contrast_findings(pairs: list[Pair]) -> list[str]:
    """One sentence per declared contrast that matched any pair."""
    family = sum(p.adjusted_p is not None for p in pairs)
    lines = []
    for contrast in CONTRASTS:
        mine = [p for p in pairs if p.contrast is contrast]
        if not mine:
            continue
        tasks = sorted({p.task for p in mine})
        winners = [p for p in mine if p.significant]
        untested = sum(p.test.p is None for p in mine)
        median = float(np.median([100 * p.test.difference for p in mine]))
        shown = "; ".join(f"{p.treatment} vs {p.control} on {p.task} {fmt_difference(p.test)}" for p in winners[:4])
        verdict = (f"{len(winners)} differ after Holm's correction over the report's {family} tests ({shown}"
                   + (f"; {len(winners) - 4} more in the appendix" if len(winners) > 4 else "") + ")"
                   if winners else f"none differs after Holm's correction over the report's {family} tests")
        lines.append(f"**{contrast.name}**: {len(mine)} pair(s) on {len(tasks)} task(s) "
                     f"({', '.join(tasks)}); median difference {median:+.1f} points; {verdict}"
                     + (f"; {untested} without a test (one seed without example counts, or no spread over seeds)"
                        if untested else "") + ".")
    return lines


def pairs_table(pairs: list[Pair]) -> pd.DataFrame | None:
    if not pairs:
        return None
    return pd.DataFrame([{"contrast": p.contrast.name, "task": p.task, "treatment": p.treatment, "control": p.control,
                          "matched": p.matched, "difference (points) [95%]": fmt_difference(p.test), "test": p.test.method,
                          "n": f"{p.test.n_a} vs {p.test.n_b}", "p": _p(p.test.p), "Holm p": _p(p.adjusted_p),
                          "differs": "yes" if p.significant else "no"} for p in pairs])


# ------------------------------------------------------------------------------------ test time
@dataclass(frozen=True)
class TestTimeGain:
    variant: Variant
    knob: str
    split: str              # the evaluation split the curve was measured on
    trained: float
    setting: float          # the compared setting: the largest, or the largest of the runs' best ones
    test: DifferenceTest    # acc(setting) − acc(trained) over seeds


def _best_setting(points: dict[float, float]) -> float:
    """The setting with the highest accuracy; a tie goes to the fewest iterations."""
    return min(points, key=lambda x: (-points[x], x))


def test_time_gains(variants: list[Variant], pick: str = "largest") -> list[TestTimeGain]:
    """Per variant, knob and split (every split where per-split curves were recorded, else the first):
    accuracy at a test-time setting minus at the trained one, with bench/stats' accuracy_difference
    over seeds on the diagnostics subset (independent-sample intervals for paired data: conservative).

    pick="largest": the largest setting measured. pick="best": each run's best setting on that split,
    chosen on the examples it is scored on, so its gain is an upper bound (no held-out choice)."""
    out = []
    for variant in variants:
        per_curve: dict[tuple[str, str], list[tuple[float, float, float, float, int | None]]] = defaultdict(list)
        for run in variant.complete:
            curves = {(split, knob): curve for split, knobs in run.test_time_by_split.items()
                      for knob, curve in knobs.items()} or \
                     {(run.first_split or "test", knob): curve for knob, curve in run.test_time.items()}
            for (split, knob), curve in curves.items():
                points = {p.x: p.exact_accuracy for p in curve.points if p.exact_accuracy is not None}
                if curve.trained in points and max(points) > curve.trained:
                    setting = max(points) if pick == "largest" else _best_setting(points)
                    examples = min(filter(None, (run.diagnostics_examples, run.split_examples.get(split))), default=None)
                    per_curve[(split, knob)].append((curve.trained, setting, points[setting], points[curve.trained],
                                                     examples))
        for (split, knob), entries in per_curve.items():
            test = accuracy_difference([e[2] for e in entries], [e[3] for e in entries],
                                       [e[4] for e in entries], [e[4] for e in entries])
            out.append(TestTimeGain(variant, knob, split, entries[0][0], max(e[1] for e in entries), test))
    return out


def _split_accuracy(run: Run, split: str, trained: float | None, best: bool) -> float | None:
    """A run's exact accuracy on one split: `trained` (at the trained setting), or with best=True its
    best over every test-time setting it measured on that split (`trained` when none was measured)."""
    if not best:
        return trained
    values = [p.exact_accuracy for curve in run.test_time_by_split.get(split, {}).values()
              for p in curve.points if p.exact_accuracy is not None]
    return max(values + ([trained] if trained is not None else []), default=None)


def longest_solved(variants: list[Variant], threshold: float = SOLVED) -> str:
    """'prefix_sums: dtnet to length 32 (100.0%) at the trained setting, to length 64 (77.1%) at its
    best test-time setting': per task and extrapolation axis, the longest split on which some main
    variant's seed-mean exact accuracy reaches the threshold."""
    parts = []
    for task, group in by_task(variants).items():
        for axis in sorted({a for v in group for r in v.complete for a in r.curves}):
            found = {}
            for best in (False, True):
                top: tuple[float, float, str] | None = None      # (x, mean, label)
                for variant in main_variants(group):
                    per_x: dict[float, list[float | None]] = defaultdict(list)
                    for run in variant.complete:
                        for p in run.curves.get(axis, ()):
                            per_x[p.x].append(_split_accuracy(run, p.split or "", p.exact_accuracy, best))
                    for x, values in per_x.items():
                        if len(values) == len(variant.complete) and None not in values:
                            mean = float(np.mean(values))
                            if mean >= threshold and (top is None or (x, mean) > top[:2]):
                                top = (x, mean, variant.label)
                found[best] = top
            trained, best = found[False], found[True]
            text = (f"{task}: {trained[2]} to {axis} {trained[0]:g} ({100 * trained[1]:.1f}%) at the trained setting"
                    if trained else f"{task}: no model at the trained setting")
            if best and (trained is None or best[0] > trained[0]):
                text += f", {best[2]} to {axis} {best[0]:g} ({100 * best[1]:.1f}%) at its best test-time setting"
            parts.append(text)
    return "; ".join(parts)


def run_plateau(run: Run) -> dict | None:
    """bench.stats.learning_plateau of a run's training curve (computed here, so older summaries count too)."""
    return learning_plateau([{"step": p.step, "lm_loss_window_mean": p.lm_loss_window_mean,
                              "lm_loss": p.lm_loss if p.lm_loss is not None else p.loss} for p in run.train_curve])


def variant_plateaus(variant: Variant) -> list[dict]:
    """run_plateau of each complete run of the variant that records a training curve."""
    return [p for p in (run_plateau(r) for r in variant.complete) if p is not None]


def flat_seeds(variant: Variant) -> tuple[int, int]:
    """(seeds whose training loss ended flat, seeds with a recorded curve)."""
    plateaus = variant_plateaus(variant)
    return sum(p["finished"] for p in plateaus), len(plateaus)


def _flat_on(flat: int, seeds: int) -> str:
    """'loss flat at the end on 2 of 3 seeds' ('1 of 1 seed')."""
    return f"loss flat at the end on {flat} of {seeds} seed{'s' * (seeds != 1)}"


def unfinished(variant: Variant) -> str:
    """'' when every seed's training loss ended flat, else ' (loss flat at the end on 1 of 3 seeds)' (or
    ' (learning not recorded)'): a ranking among models still learning is a ranking at that budget."""
    flat, seeds = flat_seeds(variant)
    if not seeds:
        return " (learning not recorded)"
    return "" if flat == seeds else f" ({_flat_on(flat, seeds)})"


def _by_accuracy(variants: list[Variant]) -> list[str]:
    """The models of these variants, best seed-mean exact accuracy first."""
    scored = sorted({v.label: v for v in variants}.values(), key=lambda v: -v.accuracy().mean)
    return [v.model for v in scored]


def _with_plateaus(variant: Variant) -> str:
    """'57.6 [14.5, 91.6], loss flat at the end on 2 of 2 seeds': a flat tail under a decaying rate is
    not proof that learning finished, so the count stands beside what more steps bought."""
    flat, seeds = flat_seeds(variant)
    return fmt_accuracy(variant.accuracy(), seeds=False) + (
        f", {_flat_on(flat, seeds)}" if seeds else "")


def longer_training(variants: list[Variant], pairs: list[Pair]) -> list[str]:
    """Question 1's check on its own budget, one sentence per task with "longer" pairs: each model
    trained for more steps against itself at the preset, and whether the order of those models stays
    the same."""
    out = []
    for task, group in by_task(variants).items():
        mine = [p for p in pairs if p.contrast.kind == "longer" and p.task == task]
        if not mine:
            continue
        label = {v.label: v for v in group}
        gains = "; ".join(f"{p.treatment}: {_with_plateaus(label[p.treatment])}, {fmt_difference(p.test)} "
                          f"against the preset's ({_with_plateaus(label[p.control])})" for p in mine)
        verdicts = []
        for steps in sorted({label[p.treatment].flat.get("train.steps") for p in mine}):
            same = [p for p in mine if label[p.treatment].flat.get("train.steps") == steps]
            if len(same) < 2:
                continue   # one model at this step count: no order to compare
            before = _by_accuracy([label[p.control] for p in same])
            after = _by_accuracy([label[p.treatment] for p in same])
            verdicts.append(f"at {steps} steps the order of {', '.join(sorted(before))} is the same as at the preset"
                            if before == after else f"the order changes: {' > '.join(before)} at the preset, "
                            f"{' > '.join(after)} at {steps} steps")
        out.append(f"More steps on {task} (the schedule stretched with them; has learning finished?) — "
                   + "; ".join([gains, *verdicts]) + ".")
    return out


def fixed_point_finals(variants: list[Variant]) -> list[tuple[Variant, str, float]]:
    """(variant, state, mean over seeds of its last defined relative residual)."""
    out = []
    for variant in variants:
        finals: dict[str, list[float]] = defaultdict(list)
        for run in variant.complete:
            for knob, entry in run.fixed_point.items():
                for state, trace in entry.residuals.items():
                    defined = [v for v in trace if v is not None]
                    if defined:
                        finals[f"{state} ({knob})"].append(defined[-1])
        out += [(variant, state, float(np.mean(values))) for state, values in sorted(finals.items())]
    return out


def equilibrium_findings(variants: list[Variant]) -> tuple[str, list[str]]:
    """The DEQ's convergence, per variant with diagnostics.equilibrium: the worst run's (and worst
    segment's) share of examples whose residual at the returned state is under the forward tolerance,
    and under the backward tolerance, before and after training ('forward%/backward%'). Returns the
    tolerances ('forward/backward', or 'per variant' when they differ) and one phrase per variant."""
    rows = []
    for variant in variants:
        records = [run.equilibrium for run in variant.complete if run.equilibrium is not None]
        if not records:
            continue
        parts = []
        for stage in ("init", "trained"):
            forward = [r.forward[stage] for r in records if r.forward[stage] is not None]
            backward = [r.backward[stage] for r in records if r.backward[stage] is not None]
            text = f"{stage} {100 * min(forward):.0f}%" if forward else f"{stage} not measured"
            parts.append(text + (f"/{100 * min(backward):.0f}%" if backward else ""))
        backward_tol = records[0].backward_tol
        tolerance = f"{records[0].tol:g}" + (f"/{backward_tol:g}" if backward_tol is not None else "")
        rows.append((f"{variant.label} on {variant.task} ({len(records)} run(s)", tolerance, ", ".join(parts)))
    tolerances = {tolerance for _, tolerance, _ in rows}
    if len(tolerances) == 1:
        return tolerances.pop(), [f"{name}): {parts}" for name, _, parts in rows]
    return "per variant", [f"{name}, tolerance {tolerance}): {parts}" for name, tolerance, parts in rows]


# ------------------------------------------------------------------------------------ headlines
QUESTIONS = (
    "At matched parameters, how do the models rank on each task?",
    "Does outer-loop refinement (deep-supervision segments) help?",
    "Does TRM's last-cycle full backprop beat HRM's one-step gradient?",
    "Who gains from more test-time iterations, and who extrapolates?",
    "Do the recurrent states approach a fixed point?",
)
# questions 2 and 3 are answered by declared contrasts (bench/report/contrasts.py), by name: the outer
# loop by the segment count; TRM vs HRM by the two models and by the two gradients on HRM's network;
# question 4 also by the rules that train the iteration count (after its test-time curves)
ANSWERED_BY = {1: ("segments S − 1 (outer loop)",),
               2: ("TRM − HRM (full last-cycle backprop vs one-step gradient)",
                   "last-cycle − one-step gradient (HRM's network)"),
               3: ("progressive loss α > 0 − α = 0", "random − fixed iteration count",
                   "best of k − fixed iteration count")}


def selector_findings(variants: list[Variant]) -> list[str]:
    """Per variant trained with a stop selector: seed-mean exact accuracy on its first split at the
    selector's stop, after all iterations and at the oracle stop, and how many selectors ended flat."""
    out = []
    for variant in variants:
        runs = [r for r in variant.complete if r.first_split in r.stop_selector]
        if not runs:
            continue
        mean = lambda name: 100 * float(np.mean([r.stop_selector[r.first_split][name] for r in runs]))  # noqa: E731
        flat = [r.stop_selector_flat for r in runs if r.stop_selector_flat is not None]
        trained = (f"{sum(flat)} of {len(flat)} selector(s) trained to a flat loss" if flat
                   else "selector training not recorded")
        out.append(f"{variant.label} on {variant.task}: selector's stop {mean('selector_exact_accuracy'):.1f}%, "
                   f"all iterations {mean('all_iterations_exact_accuracy'):.1f}%, oracle stop "
                   f"{mean('oracle_exact_accuracy'):.1f}% ({len(runs)} seed(s), {trained})")
    return out


def _contrast_headline(pairs: list[Pair], name: str) -> str:
    """One sentence on a contrast, per budget its pairs are matched on: which pairs differ after
    Holm, and the median and range of all its differences."""
    mine = [p for p in pairs if p.contrast.name == name]
    if not mine:
        return f"{name}: no pair of these runs forms this contrast."
    parts = []
    for matched in sorted({p.matched for p in mine}, key=lambda m: [p.matched for p in mine].index(m)):
        group = [p for p in mine if p.matched == matched]
        winners = [p for p in group if p.significant]
        differences = [100 * p.test.difference for p in group]
        spread = (f"median {np.median(differences):+.1f} points, from {min(differences):+.1f} to "
                  f"{max(differences):+.1f}, over {len(group)} pair(s)")
        if winners:
            shown = ", ".join(f"{p.treatment} vs {p.control} on {p.task} {fmt_difference(p.test)}" for p in winners[:3])
            verdict = f"{len(winners)} pair(s) differ after Holm's correction ({shown}); {spread}"
        else:
            verdict = f"no pair differs after Holm's correction ({spread})"
        parts.append(f"at matched {matched}: {verdict}" if matched != "no budget" else
                     f"at the same configured budget (nothing spent alike): {verdict}")
    return f"{name} — " + "; ".join(parts) + "."


class Answer(NamedTuple):
    """One question's generated answer: a lead sentence and the details under it (sub-bullets)."""
    question: str
    lead: str
    details: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join((self.lead, *self.details))


def headlines(variants: list[Variant], pairs: list[Pair]) -> list[Answer]:
    """One generated Answer for each of QUESTIONS."""
    preset = presets(variants)
    leaders, idle = [], []
    for task, group in by_task(variants).items():
        scored = sorted(((v.accuracy(), v) for v in main_variants(group) if v.accuracy()), key=lambda t: -t[0].mean)
        if not scored:
            continue
        if scored[0][0].mean < NOTHING_LEARNED:
            idle.append(task)
            continue
        lead = next((p for p in pairs if p.contrast.kind == "leader" and p.task == task), None)
        separated = "" if lead is None else (f", ahead of {lead.control}" if lead.significant
                                             else f", not separated from {lead.control}")
        leaders.append(f"{task}: {scored[0][1].label} {fmt_accuracy(scored[0][0])}{unfinished(scored[0][1])}"
                       f"{separated}")
    rank = "; ".join(leaders) if leaders else "no task has a model above 5% exact"
    if idle:
        rank += f"; {', '.join(idle)}: no model reaches {100 * NOTHING_LEARNED:.0f}% exact in the {preset} preset"
    longer = longer_training(variants, pairs)
    answers = [Answer(QUESTIONS[0], f"Best per task — {rank}.", tuple(longer))]
    for index in (1, 2):
        first, *rest = [_contrast_headline(pairs, name) for name in ANSWERED_BY[index]]
        answers.append(Answer(QUESTIONS[index], first, tuple(rest)))
    gains, best_gains = test_time_gains(variants), test_time_gains(variants, pick="best")
    helps = [g for g in gains if g.test.low is not None and g.test.low > 0]
    hurts = [g for g in gains if g.test.high is not None and g.test.high < 0]
    best_helps = [g for g in best_gains if g.test.low is not None and g.test.low > 0]
    extrapolation, solved = _extrapolation_leaders(variants), longest_solved(variants)

    def shown(chosen: list[TestTimeGain]) -> str:
        return ", ".join(f"{g.variant.label} on {g.split} ({g.knob} {g.setting:g} vs {g.trained:g}: "
                         f"{fmt_difference(g.test)})" for g in sorted(chosen, key=lambda g: -g.test.difference)[:3])

    test_time = (f"Evaluating with the largest test-time setting instead of the trained one raises exact accuracy "
                 f"(95% interval above 0) on {len(helps)} of {len(gains)} variant × knob × split curves"
                 + (f" ({shown(helps)})" if helps else "") + f" and lowers it on {len(hurts)}; each run's best "
                 f"setting (chosen on the examples it is scored on: an upper bound) raises it on {len(best_helps)}"
                 + (f" ({shown(best_helps)})" if best_helps else "")
                 if gains else "No test-time curves were recorded")
    # how the iteration count was trained, and the stop selector: details under the test-time answer
    trained_rules = [_contrast_headline(pairs, name) for name in ANSWERED_BY[3]
                     if any(p.contrast.name == name for p in pairs)]
    selectors = selector_findings(variants)
    extrapolates = ((f"Longest split solved (seed mean ≥ {100 * SOLVED:.0f}% exact) — {solved}." if solved else ""),
                    (f"At the largest test size the best is {extrapolation}." if extrapolation else ""))
    answers.append(Answer(
        QUESTIONS[3], test_time + ".",
        tuple(line for line in extrapolates if line) + tuple(trained_rules)
        + ((f"Best of k with a stop selector (first split, seed means) — {'; '.join(selectors)}.",) if selectors else ())))
    finals = fixed_point_finals(variants)
    if finals:
        per_model: dict[str, list[bool]] = defaultdict(list)
        for variant, _, value in finals:
            per_model[variant.model].append(value < CONVERGED)
        fixed_points = (f"Final relative residual below {CONVERGED} (a fixed point) for "
                        f"{sum(sum(v) for v in per_model.values())} of {len(finals)} traced states: "
                        + ", ".join(f"{m} {sum(v)}/{len(v)}" for m, v in sorted(per_model.items())) + ".")
    else:
        fixed_points = "No fixed-point traces were recorded."
    tolerance, equilibria = equilibrium_findings(variants)
    answers.append(Answer(QUESTIONS[4], fixed_points, (
        f"Equilibrium solves — the worst run's share of examples under the forward/backward tolerance "
        f"({tolerance}) at the returned state: " + "; ".join(equilibria) + ".",) if equilibria else ()))
    return answers


def _extrapolation_leaders(variants: list[Variant]) -> str:
    """'addition (length 12): looped 4.3%, …' over tasks that have an extrapolation axis."""
    parts = []
    for task, group in by_task(variants).items():
        for axis in sorted({a for v in group for r in v.complete for a in r.curves}):
            best: tuple[float, float, str] | None = None
            largest = max(p.x for v in group for r in v.complete for p in r.curves.get(axis, ()))
            for variant in main_variants(group):
                values = [p.exact_accuracy for r in variant.complete for p in r.curves.get(axis, ())
                          if p.x == largest and p.exact_accuracy is not None]
                if values and (best is None or np.mean(values) > best[0]):
                    best = (float(np.mean(values)), largest, variant.label)
            if best and best[0] > 0:
                parts.append(f"{task} ({axis} {best[1]:g}): {best[2]} {100 * best[0]:.1f}%")
            elif best:
                parts.append(f"{task} ({axis} {best[1]:g}): every model 0%")
    return "; ".join(parts)
