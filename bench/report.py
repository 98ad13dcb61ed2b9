"""`bench report`: read every run under results/, write reports/index.md, reports/index.html, figures/.

Runs are grouped into *variants*: same task, model, preset and configuration except the seed. Every
number is the mean over a variant's seeds with a 95% Student-t interval (bench/stats.py); a number
from one seed says "1 seed" instead of an interval. The findings section is generated from the same
numbers and says when an interval of a difference includes zero.

Robustness: a corrupt, partial or still-running summary is skipped with a warning that names the
file; diverged runs are listed (with their step) and counted, never averaged in; a figure that cannot
be drawn from odd data becomes a warning, not a crash.

The markdown and the HTML are rendered from one list of blocks; the HTML embeds every figure as a
base64 PNG so it is one self-contained file. Figures are also written as PNG and SVG to figures/.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
import warnings as python_warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from bench.results import ResultsError, atomic_write_bytes, ensure_writable, iter_summaries
from bench.stats import difference_interval, mean_interval

CI_NOTE = ("± is the half-width of a 95% Student-t confidence interval over seeds (n = seeds); "
           "“1 seed” marks a number from a single run, which has no interval.")


# ------------------------------------------------------------------------------------ loading
def _number(value: Any) -> float | None:
    """A finite float, or None (JSON may hold null, "inf", strings or garbage)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _problem(summary: dict[str, Any]) -> str | None:
    """Why a summary cannot be used, or None."""
    status = summary.get("status")
    if status == "running":
        return "run still running or interrupted"
    if status not in ("complete", "diverged"):
        return f"unknown status {status!r}"
    if not isinstance(summary.get("config"), dict) or not summary.get("task") or not summary.get("model"):
        return "partial summary (missing task/model/config)"
    if status == "complete":
        missing = [k for k in ("metrics", "train", "inference") if not isinstance(summary.get(k), dict)]
        if missing or _number(summary.get("exact_accuracy")) is None:
            return f"partial summary (missing {', '.join(missing) or 'exact_accuracy'})"
    return None


def _list_of_dicts(value: Any) -> list[dict[str, Any]] | None:
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else None


def sanitize(summary: dict[str, Any]) -> list[str]:
    """Drop malformed optional sections in place (so figures and findings can trust their shape);
    return what was dropped."""
    dropped: list[str] = []
    train = summary.get("train")
    if isinstance(train, dict):
        curve = _list_of_dicts(train.get("curve"))
        if curve is None and "curve" in train:
            dropped.append("train.curve")
        train["curve"] = curve or []
    curves = summary.get("curves")
    if curves is not None:
        clean = {axis: _list_of_dicts(points) for axis, points in curves.items()} if isinstance(curves, dict) else {}
        dropped += [f"curves.{axis}" for axis, points in clean.items() if points is None]
        summary["curves"] = {axis: points for axis, points in clean.items() if points is not None}
    diagnostics = summary.get("diagnostics")
    if diagnostics is None:
        return dropped
    if not isinstance(diagnostics, dict):
        summary["diagnostics"] = {}
        return dropped + ["diagnostics"]
    for section, required in (("test_time_compute", "points"), ("fixed_point", "residuals")):
        entries = diagnostics.get(section) or {}
        kept = {}
        for knob, entry in (entries.items() if isinstance(entries, dict) else []):
            inner = entry.get(required) if isinstance(entry, dict) else None
            if section == "test_time_compute" and _list_of_dicts(inner) is not None:
                kept[knob] = {**entry, "points": _list_of_dicts(inner)}
            elif section == "fixed_point" and isinstance(inner, dict):
                kept[knob] = {**entry, "residuals": {k: v for k, v in inner.items() if isinstance(v, list)}}
            else:
                dropped.append(f"diagnostics.{section}.{knob}")
        diagnostics[section] = kept
    act = diagnostics.get("act")
    if act is not None and not (isinstance(act, dict) and all(isinstance(act.get(p), dict)
                                                             for p in ("learned", "fixed", "oracle"))):
        dropped.append("diagnostics.act")
        del diagnostics["act"]
    return dropped


def variant_key(summary: dict[str, Any]) -> str:
    config = json.loads(json.dumps(summary["config"], default=str))
    config.get("train", {}).pop("seed", None)
    config.pop("device", None)
    return json.dumps(config, sort_keys=True)


@dataclass
class Variant:
    task: str
    model: str
    preset: str
    key: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "complete"]

    @property
    def diverged(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "diverged"]

    def values(self, getter: Callable[[dict[str, Any]], Any]) -> list[float]:
        out = []
        for run in self.complete:
            try:
                value = _number(getter(run))
            except (KeyError, TypeError, IndexError, AttributeError):
                value = None
            if value is not None:
                out.append(value)
        return out


def check_filters(results: Path, tasks: Iterable[str] = (), models: Iterable[str] = ()) -> None:
    """ResultsError when --results is not a directory, or a --task/--model filter names nothing in it
    (a report of nothing would look like a report of no runs)."""
    results = Path(results)
    if not results.exists():
        raise ResultsError(f"{results}: no such results directory")
    if not results.is_dir():
        raise ResultsError(f"{results}: not a directory (give the folder that holds the runs)")
    found: dict[str, set[str]] = {"task": set(), "model": set()}
    for _, summary, _ in iter_summaries(results):
        if summary:
            for kind in found:
                found[kind].add(str(summary.get(kind)))
    for kind, names in (("task", tasks), ("model", models)):
        unknown = sorted(set(names) - found[kind])
        if unknown:
            there = ", ".join(sorted(found[kind])) or "none"
            raise ResultsError(f"--{kind} {', '.join(unknown)}: no runs of that {kind} under {results} "
                               f"({kind}s there: {there})")


def load_runs(results: Path, tasks: Iterable[str] = (), models: Iterable[str] = ()) -> tuple[list[Variant], list[str]]:
    tasks, models = set(tasks), set(models)
    warnings: list[str] = []
    variants: dict[tuple, Variant] = {}
    for path, summary, problem in iter_summaries(results):
        if summary is None:
            warnings.append(f"skipped {problem}")
            continue
        problem = _problem(summary)
        if problem:
            warnings.append(f"skipped {path}: {problem}")
            continue
        if (tasks and summary["task"] not in tasks) or (models and summary["model"] not in models):
            continue
        dropped = sanitize(summary)
        if dropped:
            warnings.append(f"{path}: ignored malformed {', '.join(dropped)}")
        key = (summary["task"], summary["model"], str(summary.get("preset")), variant_key(summary))
        variants.setdefault(key, Variant(*key)).runs.append(summary)
    _label(list(variants.values()))
    ordered = sorted(variants.values(), key=lambda v: (v.task, v.model, v.preset, v.label))
    return ordered, warnings


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _label(variants: list[Variant]) -> None:
    """Name each variant by its model, plus preset and the config keys that tell siblings apart."""
    siblings: dict[tuple[str, str], list[Variant]] = defaultdict(list)
    for variant in variants:
        siblings[(variant.task, variant.model)].append(variant)
    for group in siblings.values():
        if len(group) == 1:
            group[0].label = group[0].model
            continue
        flats = [_flatten(json.loads(v.key)) for v in group]
        keys = sorted({k for f in flats for k in f if len({json.dumps(g.get(k), default=str) for g in flats}) > 1})
        # sizes that parameter matching chose follow from the real differences: label by those
        resized = {f"model.{k.rsplit('.', 1)[-1]}" for f in flats for k in f if k.startswith("extra.match.changed.")}
        keys = [k for k in keys if k != "preset" and not k.startswith("extra.")]
        keys = [k for k in keys if k not in resized] or keys
        for variant, flat in zip(group, flats):
            shown = [f"{k.split('.', 1)[-1]}={flat.get(k)}" for k in keys[:3]]
            if len({v.preset for v in group}) > 1:
                shown.insert(0, variant.preset)
            variant.label = f"{variant.model} ({', '.join(shown) or variant.key[:8]})"


# ------------------------------------------------------------------------------------ formatting
def _fmt_count(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e4 else f"{value:.0f}"


def stat_cell(values: list[float], fmt: Callable[[float], str] = "{:.3g}".format, scale: float = 1.0,
              unit: str = "", deterministic: bool = False) -> str:
    """'mean ± half (n=3)' or 'mean (1 seed)'; quantities fixed by the configuration (parameters,
    counted FLOPs) show the plain value when every seed agrees."""
    interval = mean_interval([v * scale for v in values])
    if interval is None:
        return "—"
    if deterministic and interval.half_width in (None, 0.0):
        return f"{fmt(interval.mean)}{unit}"
    if interval.n == 1:
        return f"{fmt(interval.mean)}{unit} (1 seed)"
    return f"{fmt(interval.mean)} ± {fmt(interval.half_width)}{unit} (n={interval.n})"


def _device(run: dict[str, Any]) -> str:
    environment = run.get("environment") or {}
    name = str(environment.get("device_name") or "")
    name = re.sub(r"\((R|TM)\)|CPU|Processor|@.*$", "", name).strip()
    return f"{run.get('device', '?')}" + (f": {' '.join(name.split())}" if name else "")


def main_table(variants: list[Variant]) -> pd.DataFrame:
    rows = []
    for variant in variants:
        runs = variant.complete
        rows.append({
            "task": variant.task,
            "model": variant.label,
            "seeds": f"{len(runs)}" + (f" (+{len(variant.diverged)} diverged)" if variant.diverged else ""),
            "exact accuracy (%)": stat_cell(variant.values(lambda r: r["exact_accuracy"]), "{:.1f}".format, 100),
            "params": stat_cell(variant.values(lambda r: r["params"]), lambda v: f"{v:,.0f}", deterministic=True),
            "training FLOPs": stat_cell(variant.values(lambda r: r["train"]["flops_total"]), deterministic=True),
            "inference FLOPs/example": stat_cell(variant.values(lambda r: r["inference"]["flops_per_example"]),
                                                 deterministic=True),
            "training wall-clock (s)": stat_cell(variant.values(lambda r: r["train"]["seconds"]), "{:.1f}".format),
            "eval throughput (examples/s)": stat_cell(variant.values(lambda r: r["inference"]["examples_per_second"]),
                                                      "{:.0f}".format),
            "training MFU (%)": stat_cell(variant.values(lambda r: r["mfu"]["train"]), "{:.1f}".format, 100),
            "device": ", ".join(sorted({_device(r) for r in runs})) or "—",
        })
    return pd.DataFrame(rows)


def runs_table(variants: list[Variant]) -> pd.DataFrame:
    rows = []
    for variant in variants:
        for run in variant.runs:
            accuracy = _number(run.get("exact_accuracy"))
            rows.append({"task": variant.task, "model": variant.label, "seed": run.get("seed"),
                         "status": run["status"] + (f" at step {run.get('diverged_step')}" if run["status"] == "diverged" else ""),
                         "exact accuracy (%)": "—" if accuracy is None else f"{100 * accuracy:.1f}",
                         "run id": run.get("run_id", "?")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ findings
def _compare(name_a: str, a: list[float], name_b: str, b: list[float], where: str) -> str | None:
    """One sentence on mean(a) − mean(b) in percentage points."""
    difference = difference_interval([100 * v for v in a], [100 * v for v in b])
    if difference is None:
        return None
    d = difference.difference
    if difference.half_width == 0.0 and d == 0.0:
        return (f"{name_a} and {name_b} score the same on every seed {where} ({100 * a[0]:.1f}%; n = "
                f"{difference.n_a} vs {difference.n_b}): nothing to rank.")
    if difference.half_width is None:
        return (f"{name_a} vs {name_b} {where}: {d:+.1f} points on single-seed evidence "
                f"(n = {difference.n_a} vs {difference.n_b}; no interval — run more seeds).")
    if difference.significant:
        verb = "beats" if d > 0 else "trails"
        return (f"**{name_a}** {verb} {name_b} {where} by {abs(d):.1f} ± {difference.half_width:.1f} points "
                f"(95% Welch interval of the difference; n = {difference.n_a} vs {difference.n_b} seeds).")
    first, second = mean_interval([100 * v for v in a]), mean_interval([100 * v for v in b])
    overlap = "overlap" if first.overlaps(second) else "do not overlap"
    return (f"{name_a} vs {name_b} {where}: {d:+.1f} ± {difference.half_width:.1f} points — the interval "
            f"includes zero (the two variants' own intervals {overlap}): evidence too weak to rank them.")


def _points_by_seed(variant: Variant, getter: Callable[[dict[str, Any]], Any]) -> list[dict[float, dict[str, Any]]]:
    out = []
    for run in variant.complete:
        try:
            points = getter(run) or []
            out.append({_number(p["x"]): p for p in points if _number(p.get("x")) is not None})
        except (KeyError, TypeError, AttributeError):
            continue
    return out


def findings(variants: list[Variant]) -> list[str]:
    lines: list[str] = []
    by_task: dict[str, list[Variant]] = defaultdict(list)
    for variant in variants:
        by_task[variant.task].append(variant)
    for task, group in by_task.items():
        scored = [(mean_interval(v.values(lambda r: r["exact_accuracy"])), v) for v in group]
        scored = [(m, v) for m, v in scored if m is not None]
        if not scored:
            continue
        scored.sort(key=lambda item: -item[0].mean)
        best_interval, best = scored[0]
        if len(scored) == 1:
            lines.append(f"{task}: only {best.label} has finished runs ({100 * best_interval.mean:.1f}% exact, "
                         f"{best_interval.n} seed(s)); nothing to compare.")
        for _, other in scored[1:]:
            sentence = _compare(best.label, best.values(lambda r: r["exact_accuracy"]), other.label,
                                other.values(lambda r: r["exact_accuracy"]), f"on {task} (exact accuracy)")
            if sentence:
                lines.append(sentence)
        lines += _extrapolation_findings(task, group)
        for variant in group:
            lines += _test_time_findings(variant) + _act_findings(variant) + _fixed_point_findings(variant)
            if variant.diverged:
                lines.append(f"{variant.label} on {task}: {len(variant.diverged)} of {len(variant.runs)} seeds "
                             f"diverged (steps {', '.join(str(r.get('diverged_step')) for r in variant.diverged)}).")
    return lines


def _extrapolation_findings(task: str, group: list[Variant]) -> list[str]:
    lines = []
    axes = sorted({axis for v in group for r in v.complete for axis in (r.get("curves") or {})})
    for axis in axes:
        per_variant = {}
        for variant in group:
            seeds = _points_by_seed(variant, lambda r: r["curves"][axis])
            if seeds:
                largest = max(x for points in seeds for x in points)
                per_variant[variant.label] = (largest, [_number(p[largest].get("exact_accuracy")) for p in seeds
                                                        if largest in p])
        if len(per_variant) < 2:
            continue
        largest = max(x for x, _ in per_variant.values())
        ranked = sorted(((label, [v for v in values if v is not None]) for label, (x, values) in per_variant.items()
                         if x == largest), key=lambda item: -sum(item[1]) / max(len(item[1]), 1))
        for label, values in ranked[1:]:
            if not any(ranked[0][1]) and not any(values):
                continue  # both 0% on every seed: nothing to compare
            sentence = _compare(ranked[0][0], ranked[0][1], label, values, f"on {task} at {axis} = {largest:g}")
            if sentence:
                lines.append(sentence)
    return lines


def _test_time_findings(variant: Variant) -> list[str]:
    lines = []
    knobs = sorted({k for r in variant.complete for k in ((r.get("diagnostics") or {}).get("test_time_compute") or {})})
    for knob in knobs:
        gains, trained_values, largest_values = [], set(), set()
        for run in variant.complete:
            curve = run["diagnostics"]["test_time_compute"].get(knob) or {}
            points = {_number(p.get("x")): _number(p.get("exact_accuracy")) for p in curve.get("points", [])}
            trained = _number(curve.get("trained"))
            if trained in points and points:
                largest = max(x for x in points if x is not None)
                if largest > trained and points[largest] is not None and points[trained] is not None:
                    gains.append(100 * (points[largest] - points[trained]))
                    trained_values.add(trained)
                    largest_values.add(largest)
        if not gains:
            continue
        interval = mean_interval(gains)
        spread = "single seed, no interval" if interval.half_width is None else f"± {interval.half_width:.1f}, n = {interval.n} seeds"
        verdict = ""
        if interval.half_width is not None:
            verdict = " — more test-time compute helps" if interval.low > 0 else (
                " — more test-time compute hurts" if interval.high < 0 else " — interval includes zero: no clear effect")
        lines.append(f"{variant.label} on {variant.task}: evaluating with {knob} = {_join(largest_values)} instead of "
                     f"the trained {_join(trained_values)} changes exact accuracy by {interval.mean:+.1f} points "
                     f"({spread}){verdict}.")
    return lines


def test_time_by_split_table(variants: list[Variant]) -> pd.DataFrame | None:
    """Exact accuracy (mean over seeds) at each test-time setting on every evaluation split: the
    DeepThinking table — does running longer help *out of distribution*?"""
    rows = []
    for variant in variants:
        per_split: dict[tuple[str, str], dict[float, list[float]]] = {}
        for run in variant.complete:
            by_split = (run.get("diagnostics") or {}).get("test_time_compute_by_split") or {}
            for split, knobs in by_split.items() if isinstance(by_split, dict) else ():
                for knob, curve in (knobs or {}).items():
                    for point in (curve or {}).get("points") or []:
                        x, accuracy = _number(point.get("x")), _number(point.get("exact_accuracy"))
                        if x is not None and accuracy is not None:
                            per_split.setdefault((split, knob), {}).setdefault(x, []).append(100 * accuracy)
        for (split, knob), points in per_split.items():
            row = {"task": variant.task, "variant": variant.label, "split": split, "knob": knob}
            for x in sorted(points):
                values = points[x]
                row[f"{x:g}"] = f"{np.mean(values):.1f}" + (f" (n={len(values)})" if len(values) > 1 else "")
            rows.append(row)
    return pd.DataFrame(rows).fillna("") if rows else None


def _join(values: set[float]) -> str:
    return "/".join(f"{v:g}" for v in sorted(values))


def _act_findings(variant: Variant) -> list[str]:
    acts = [r["diagnostics"]["act"] for r in variant.complete if isinstance((r.get("diagnostics") or {}).get("act"), dict)]
    if not acts:
        return []
    def values(policy: str, key: str) -> list[float]:
        return [v for v in (_number((a.get(policy) or {}).get(key)) for a in acts) if v is not None]
    oracle_gap = mean_interval([o - l for o, l in zip(values("oracle", "exact_accuracy"), values("learned", "exact_accuracy"))])
    learned_vs_fixed = mean_interval([l - f for l, f in zip(values("learned", "exact_accuracy"), values("fixed", "exact_accuracy"))])
    used = mean_interval(values("learned", "mean_segments"))
    if oracle_gap is None or learned_vs_fixed is None or used is None:
        return []
    def text(interval) -> str:
        return f"{100 * interval.mean:+.1f}" + ("" if interval.half_width is None else f" ± {100 * interval.half_width:.1f}")
    seeds = "1 seed" if used.n == 1 else f"n = {used.n} seeds"
    return [f"{variant.label} on {variant.task} (ACT, {seeds}): learned halting uses {used.mean:.1f} of "
            f"{acts[0].get('segments')} segments and is {text(learned_vs_fixed)} points vs always running all; "
            f"oracle halting would add {text(oracle_gap)} points over learned halting."]


def _fixed_point_findings(variant: Variant) -> list[str]:
    finals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in variant.complete:
        for knob, entry in ((run.get("diagnostics") or {}).get("fixed_point") or {}).items():
            for state, trace in (entry.get("residuals") or {}).items():
                defined = [_number(value) for value in trace if _number(value) is not None]
                if defined:
                    finals[(knob, state)].append(defined[-1])
    lines = []
    for (knob, state), values in sorted(finals.items()):
        interval = mean_interval(values)
        low, high = (interval.mean, interval.mean) if interval.half_width is None else (interval.low, interval.high)
        verdict = ("converged (< 0.05)" if high < 0.05 else "not converged (≥ 0.05)" if low >= 0.05
                   else "the interval straddles 0.05: convergence unclear")
        spread = "1 seed" if interval.half_width is None else f"± {interval.half_width:.3f}, n = {interval.n}"
        lines.append(f"{variant.label} on {variant.task}: final relative residual of {state} ({knob} pass) "
                     f"{interval.mean:.3f} ({spread}) — {verdict}.")
    return lines


# ------------------------------------------------------------------------------------ the five questions
# The study's questions (issue: first comparative study). Each answer is generated from the runs; a
# question the runs cannot answer says so and names what would.
NOTHING_LEARNED = 0.05   # best mean exact accuracy below this: the task did not learn in budget


def _config(variant: Variant) -> dict[str, Any]:
    return json.loads(variant.key)


def _segments(variant: Variant) -> int | None:
    return _number(_config(variant).get("train", {}).get("segments"))


def main_variants(group: list[Variant]) -> list[Variant]:
    """A task's main comparison: each model's variants at its largest segment count. A variant of
    the same model with fewer segments (`train.segments=1` for question 2) is an ablation."""
    most: dict[str, float] = {}
    for variant in group:
        most[variant.model] = max(most.get(variant.model, 0), _segments(variant) or 0)
    return [v for v in group if (_segments(v) or 0) == most[v.model]]


def _exact(variant: Variant) -> list[float]:
    return variant.values(lambda r: r["exact_accuracy"])


def _mean_text(values: list[float]) -> str:
    interval = mean_interval([100 * v for v in values])
    if interval is None:
        return "no runs"
    return f"{interval.mean:.1f}" + (" (1 seed)" if interval.half_width is None else f" ± {interval.half_width:.1f}")


def _learned(group: list[Variant]) -> bool:
    means = [sum(values) / len(values) for values in map(_exact, group) if values]
    return bool(means) and max(means) >= NOTHING_LEARNED


def _ranking(task: str, group: list[Variant]) -> list[str]:
    scored = sorted(((sum(v) / len(v), variant) for variant in group if (v := _exact(variant))), key=lambda t: -t[0])
    if not scored:
        return []
    params = [p for _, v in scored for p in v.values(lambda r: r["params"])]
    spread = (max(params) / min(params) - 1) * 100 if params and min(params) > 0 else float("nan")
    order = " > ".join(f"{v.label} {_mean_text(_exact(v))}" for _, v in scored)
    lines = [f"**{task}** (exact %, parameters within {spread:.1f}% of each other): {order}."]
    if not _learned(group):
        lines.append(f"{task}: no model reaches {100 * NOTHING_LEARNED:.0f}% exact in the cpu budget — the ranking "
                     "above is noise around zero; the paper preset (`--preset paper`, GPU) is what would rank them.")
        return lines
    best = scored[0][1]
    for _, other in scored[1:]:
        sentence = _compare(best.label, _exact(best), other.label, _exact(other), f"on {task}")
        if sentence:
            lines.append(sentence)
    return lines


def question_rank(task: str, group: list[Variant], main: list[Variant]) -> list[str]:
    return _ranking(task, main)


def question_outer_loop(task: str, group: list[Variant], main: list[Variant]) -> list[str]:
    lines: list[str] = []
    pairs = {}
    for model in ("transformer", "hrm"):
        with_loop = [v for v in main if v.model == model and (_segments(v) or 1) > 1]
        without = [v for v in group if v.model == model and _segments(v) == 1]
        if with_loop and without:
            pairs[model] = (with_loop[0], without[0])
    if not pairs:
        if all((_segments(v) or 1) == 1 for v in main):
            lines.append(f"{task}: trained with one segment (no outer loop) for every model — not tested here.")
        return lines
    for model, (with_loop, without) in pairs.items():
        sentence = _compare(f"{model} with {_segments(with_loop):g} segments", _exact(with_loop),
                            f"{model} with 1 segment", _exact(without), f"on {task}")
        if sentence:
            lines.append(sentence)
    transformer = next((v for v in main if v.model == "transformer"), None)
    hrm = next((v for v in main if v.model == "hrm"), None)
    if transformer and hrm and _segments(transformer) == _segments(hrm):
        sentence = _compare(f"hrm ({_segments(hrm):g} segments)", _exact(hrm),
                            f"transformer ({_segments(transformer):g} segments)", _exact(transformer),
                            f"on {task} (outer loop held equal: the hierarchy's share)")
        if sentence:
            lines.append(sentence)
    if not _learned(group):
        lines.append(f"{task}: nothing learns in the cpu budget, so the outer loop's effect cannot be seen here.")
    return lines


def question_gradient(task: str, group: list[Variant], main: list[Variant]) -> list[str]:
    lines: list[str] = []
    trm = next((v for v in main if v.model == "trm"), None)
    hrm = next((v for v in main if v.model == "hrm"), None)
    if not (trm and hrm):
        return lines
    sentence = _compare("trm", _exact(trm), "hrm", _exact(hrm), f"on {task}")
    if sentence:
        lines.append(sentence)
    ratios = []
    for key, name in ((lambda r: r["train"]["flops_total"], "training"),
                      (lambda r: r["inference"]["flops_per_example"], "inference")):
        a, b = trm.values(key), hrm.values(key)
        if a and b and min(b) > 0:
            ratios.append(f"{name} FLOPs ×{(sum(a) / len(a)) / (sum(b) / len(b)):.2f}")
    if ratios:
        lines.append(f"{task}: same optimiser steps × batch and matched parameters; TRM used "
                     f"{', '.join(ratios)} of HRM's — equal compute holds only as closely as these ratios "
                     "(`--match flops` sizes by FLOPs instead).")
    if not _learned([trm, hrm]):
        lines.append(f"{task}: neither learns in the cpu budget — no verdict on the gradient here.")
    return lines


def _reach_findings(task: str, main: list[Variant]) -> list[str]:
    """Per extrapolation axis: how far each variant keeps ≥ 50% exact (seed means), and who scores at
    the largest point. The interval comparisons at that point follow only if someone scores there."""
    lines = []
    axes = sorted({axis for v in main for r in v.complete for axis in (r.get("curves") or {})})
    for axis in axes:
        reach, at_largest, largest = [], [], None
        for variant in main:
            means: dict[float, list[float]] = defaultdict(list)
            for points in _points_by_seed(variant, lambda r: r["curves"][axis]):
                for x, point in points.items():
                    if _number(point.get("exact_accuracy")) is not None:
                        means[x].append(_number(point["exact_accuracy"]))
            if not means:
                continue
            mean = {x: sum(v) / len(v) for x, v in means.items()}
            largest = max(mean) if largest is None else max(largest, max(mean))
            reached = [x for x, value in mean.items() if value >= 0.5]
            reach.append((max(reached) if reached else None, variant.label))
            at_largest.append((mean, variant.label))
        if not at_largest:
            continue
        if len({x for mean, _ in at_largest for x in mean}) <= 3:  # few points (maze grids): show them all
            lines.append(f"{task}, exact accuracy by {axis}: " + "; ".join(
                f"{label} " + ", ".join(f"{x:g}: {100 * v:.1f}%" for x, v in sorted(mean.items()))
                for mean, label in sorted(at_largest, key=lambda item: -max(item[0].values()))) + ".")
            reach = []
        ranked = sorted(reach, key=lambda item: -(item[0] if item[0] is not None else -1))
        if ranked:
            lines.append(f"{task}: the largest {axis} at which each model still scores ≥ 50% exact "
                         "(mean over seeds): "
                         + ", ".join(f"{label} {'—' if x is None else f'{x:g}'}" for x, label in ranked) + ".")
        scored = [(m[largest], label) for m, label in at_largest if m.get(largest)]
        if scored:
            lines.append(f"{task} at {axis} = {largest:g}: " + ", ".join(f"{label} {100 * v:.1f}%" for v, label in
                                                                          sorted(scored, reverse=True)) + ".")
            lines += [line for line in _extrapolation_findings(task, main) if f"{axis} = {largest:g}" in line]
        else:
            lines.append(f"{task} at {axis} = {largest:g}: every model scores 0% exact — no extrapolation that far.")
    return lines


def question_test_time(task: str, group: list[Variant], main: list[Variant]) -> list[str]:
    lines = []
    for variant in main:
        lines += _test_time_findings(variant)
    lines += _reach_findings(task, main)
    if not _learned(main):
        lines.append(f"{task}: nothing learns in the cpu budget, so test-time gains here are noise around zero.")
    return lines


def question_fixed_point(task: str, group: list[Variant], main: list[Variant]) -> list[str]:
    return [line for variant in main if variant.model in ("hrm", "deq") for line in _fixed_point_findings(variant)]


QUESTIONS: tuple[tuple[str, Callable[[str, list[Variant], list[Variant]], list[str]]], ...] = (
    ("1. At matched parameters, how do the models rank on each task?", question_rank),
    ("2. Does outer-loop refinement (deep-supervision segments) lift the plain transformer, compared "
     "with HRM's hierarchy?", question_outer_loop),
    ("3. Does TRM's last-cycle full backprop beat HRM's one-step gradient at equal compute?", question_gradient),
    ("4. Who gains from more test-time iterations, and who extrapolates (length, grid size)?", question_test_time),
    ("5. Do HRM's states approach a fixed point, and does DEQ's?", question_fixed_point),
)


def question_blocks(variants: list[Variant]) -> list[tuple]:
    by_task: dict[str, list[Variant]] = defaultdict(list)
    for variant in variants:
        by_task[variant.task].append(variant)
    blocks: list[tuple] = [("h2", "The five questions")]
    for title, answer in QUESTIONS:
        lines = [line for task, group in by_task.items() for line in answer(task, group, main_variants(group))]
        blocks += [("h3", title), ("list", lines) if lines else ("p", "The runs read here cannot answer this.")]
    return blocks


# ------------------------------------------------------------------------------------ figures
@dataclass
class Figure:
    name: str
    title: str
    caption: str
    png: bytes


def _plotting():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _palette(variants: list[Variant]) -> dict[str, Any]:
    _, sns = _plotting()
    labels = sorted({v.label for v in variants})
    return dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))


def _panels(count: int, columns_max: int = 3, rows_per: int = 1, height: float = 3.6):
    plt, _ = _plotting()
    columns = min(count, columns_max)
    rows = math.ceil(count / columns) * rows_per
    figure, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, height * rows), squeeze=False)
    return figure, axes


def _stacked_panels(variants: list[Variant], collect: Callable[[list[Variant]], list]):
    """For tasks where `collect` finds data: (tasks, figure, axes, colours) with two rows of panels per
    task column (e.g. accuracy vs iterations above accuracy vs FLOPs); None when there is no data."""
    tasks = _per_task(variants, collect)
    if not tasks:
        return None
    plt, _ = _plotting()
    figure, axes = plt.subplots(2, len(tasks), figsize=(6.0 * len(tasks), 8.0), squeeze=False)
    return tasks, figure, axes, _palette(variants)


def _save(figure, out: Path, name: str) -> bytes:
    import io
    plt, _ = _plotting()
    with python_warnings.catch_warnings():   # tight_layout may give up on odd data; the figure is still drawn
        python_warnings.simplefilter("ignore", UserWarning)
        figure.tight_layout()
    directory = out / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    svg = io.BytesIO()
    # no date and fixed element ids: regenerating a report from the same runs gives the same files
    with plt.rc_context({"svg.hashsalt": "recurrent-bench"}):
        figure.savefig(svg, format="svg", metadata={"Date": None})
    plt.close(figure)
    atomic_write_bytes(directory / f"{name}.png", buffer.getvalue())
    atomic_write_bytes(directory / f"{name}.svg", svg.getvalue())
    return buffer.getvalue()


def _log_axis(axis) -> None:
    """Log x axis labelled at 1-2-5 steps in engineering notation (200k, 1M), no crowded minor labels."""
    from matplotlib import ticker
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    axis.xaxis.set_minor_formatter(ticker.NullFormatter())


def _percent_axis(axis, bottom: float = -2.0) -> None:
    """Exact accuracy in percent: from `bottom` (a little below 0 so points at 0 stay visible) to at
    least 5 and at most 102."""
    axis.set_ylabel("exact accuracy (%)")
    axis.set_ylim(bottom, min(max(axis.get_ylim()[1], 5.0), 102.0))


def _hide_unused(axes, used: int) -> None:
    for index, axis in enumerate(axes.flat):
        if index >= used:
            axis.set_visible(False)


def _by_task(variants: list[Variant]) -> dict[str, list[Variant]]:
    grouped: dict[str, list[Variant]] = defaultdict(list)
    for variant in variants:
        grouped[variant.task].append(variant)
    return dict(sorted(grouped.items()))


def _per_task(variants: list[Variant], collect: Callable[[list[Variant]], list]) -> dict[str, list]:
    """task → what `collect` finds in that task's variants, for tasks where it finds something."""
    found = {task: collect(group) for task, group in _by_task(variants).items()}
    return {task: items for task, items in found.items() if items}


def _mean_curve(per_seed: list[dict[float, float]], log: bool = False) -> tuple[list[float], list[float], list[float]]:
    """x, mean, half-width (0 where one seed) over seeds at every x any seed has. With `log`, for
    positive quantities drawn on a log axis: mean and half-width of log10 of the values (geometric
    mean; the band is multiplicative and never crosses zero)."""
    xs = sorted({x for points in per_seed for x in points})
    means, halves = [], []
    for x in xs:
        values = [points.get(x) for points in per_seed]
        if log:
            values = [math.log10(v) for v in values if v is not None and v > 0]
        interval = mean_interval(values)
        means.append(interval.mean if interval else float("nan"))
        halves.append((interval.half_width or 0.0) if interval else 0.0)
    return xs, means, halves


def _line(axis, xs, means, halves, color, label, log: bool = False, **style) -> None:
    """A mean line with its 95% band; with `log`, means/halves are in log10 units (see _mean_curve)."""
    lower = [m - h for m, h in zip(means, halves)]
    upper = [m + h for m, h in zip(means, halves)]
    if log:
        means, lower, upper = ([10 ** v for v in values] for values in (means, lower, upper))
    axis.plot(xs, means, color=color, label=label, **style)
    if any(halves):
        axis.fill_between(xs, lower, upper, color=color, alpha=0.18, linewidth=0)


def figure_accuracy_vs(variants: list[Variant], out: Path, what: str) -> Figure | None:
    getter = {"params": lambda r: r["params"], "flops": lambda r: r["inference"]["flops_per_example"]}[what]
    xlabel = {"params": "parameters (count, log scale)",
              "flops": "inference FLOPs per example (log scale)"}[what]
    tasks = {t: [v for v in vs if v.complete] for t, vs in _by_task(variants).items()}
    tasks = {t: vs for t, vs in tasks.items() if vs}
    if not tasks:
        return None
    colors = _palette(variants)
    figure, axes = _panels(len(tasks))
    for axis, (task, group) in zip(axes.flat, tasks.items()):
        for variant in group:
            x = mean_interval(variant.values(getter))
            y = mean_interval(variant.values(lambda r: r["exact_accuracy"]))
            if x is None or y is None:
                continue
            axis.errorbar([x.mean], [100 * y.mean], yerr=[[100 * (y.half_width or 0)]], fmt="o", capsize=4,
                          color=colors[variant.label], label=f"{variant.label} (n={y.n})")
        _log_axis(axis)
        axis.set_xlabel(xlabel)
        _percent_axis(axis)
        axis.set_title(task)
        axis.legend(fontsize=7)
    _hide_unused(axes, len(tasks))
    title = {"params": "Exact accuracy vs parameters", "flops": "Exact accuracy vs inference FLOPs"}[what]
    return Figure(f"accuracy_vs_{what}", title,
                  "One point per variant: mean over seeds, bars = 95% t-interval (none for one seed).",
                  _save(figure, out, f"accuracy_vs_{what}"))


def figure_test_time(variants: list[Variant], out: Path) -> Figure | None:
    def collect(group: list[Variant]) -> list:
        curves = []
        for variant in group:
            knobs = sorted({k for r in variant.complete
                            for k in ((r.get("diagnostics") or {}).get("test_time_compute") or {})})
            for knob in knobs:
                seeds = _points_by_seed(variant, lambda r: r["diagnostics"]["test_time_compute"][knob]["points"])
                trained = {_number((r["diagnostics"]["test_time_compute"].get(knob) or {}).get("trained"))
                           for r in variant.complete if knob in (r.get("diagnostics") or {}).get("test_time_compute", {})}
                if seeds:
                    curves.append((variant, knob, seeds, trained))
        return curves
    drawing = _stacked_panels(variants, collect)
    if drawing is None:
        return None
    tasks, figure, axes, colors = drawing
    for column, (task, curves) in enumerate(tasks.items()):
        by_iterations, by_flops = axes[0, column], axes[1, column]
        for index, (variant, knob, seeds, trained) in enumerate(curves):
            style = {"marker": "o", "linestyle": ["-", "--", ":", "-."][index % 4]}
            accuracy = [{x: _number(p.get("exact_accuracy")) for x, p in s.items()} for s in seeds]
            xs, means, halves = _mean_curve(accuracy)
            label = f"{variant.label} · {knob}"
            _line(by_iterations, xs, [100 * m for m in means], [100 * h for h in halves], colors[variant.label],
                  label, **style)
            for value in trained:
                if value in xs:
                    by_iterations.plot([value], [100 * means[xs.index(value)]], marker="*", markersize=15,
                                       color=colors[variant.label], linestyle="none")
            flops = [mean_interval([_number(s[x].get("flops_per_example")) for s in seeds if x in s]) for x in xs]
            keep = [i for i, f in enumerate(flops) if f is not None]
            _line(by_flops, [flops[i].mean for i in keep], [100 * means[i] for i in keep],
                  [100 * halves[i] for i in keep], colors[variant.label], label, **style)
        by_iterations.set_xscale("log", base=2)
        by_iterations.set_xlabel("test-time iterations (log₂ scale)")
        _percent_axis(by_iterations)
        by_iterations.set_title(f"{task}: accuracy vs test-time iterations (★ = trained)", fontsize=10)
        by_iterations.legend(fontsize=7)
        _log_axis(by_flops)
        by_flops.set_xlabel("inference FLOPs per example (log scale)")
        _percent_axis(by_flops)
        by_flops.set_title(f"{task}: accuracy vs inference FLOPs", fontsize=10)
    return Figure("test_time_compute", "Test-time compute",
                  "Exact accuracy on the diagnostics subset when evaluating with more (or fewer) iterations than "
                  "trained: outer segments (knob `segments`) or the model's own loops / solver iterations (knob "
                  "`model.<key>`); top against iterations, bottom against inference FLOPs per example; "
                  "★ = the trained setting; bands = 95% t-interval over seeds.", _save(figure, out, "test_time_compute"))


def figure_fixed_point(variants: list[Variant], out: Path) -> Figure | None:
    def collect(group: list[Variant]) -> list:
        lines = []
        for variant in group:
            traces: dict[tuple[str, str], list[dict[float, float]]] = defaultdict(list)
            for run in variant.complete:
                for knob, entry in ((run.get("diagnostics") or {}).get("fixed_point") or {}).items():
                    for state, trace in (entry.get("residuals") or {}).items():
                        traces[(knob, state)].append({float(i + 1): _number(v) for i, v in enumerate(trace)})
            lines += [(variant, knob, state, per_seed) for (knob, state), per_seed in sorted(traces.items())]
        return lines
    panels = [(task, variant, [line for line in lines if line[0] is variant])
              for task, lines in _per_task(variants, collect).items()
              for variant in {id(line[0]): line[0] for line in lines}.values()]
    if not panels:
        return None
    figure, axes = _panels(len(panels), height=4.2)
    state_colors = _plotting()[1].color_palette("tab10")
    for axis, (task, variant, lines) in zip(axes.flat, panels):
        shown: list[float] = []
        for index, (_, knob, state, per_seed) in enumerate(lines):
            xs, means, halves = _mean_curve(per_seed, log=True)
            shown += [m for m in means if math.isfinite(m)]
            _line(axis, xs, means, halves, state_colors[index % len(state_colors)], f"{state} ({knob} pass)", log=True,
                  linestyle="--" if state.startswith("carry.") else "-")
        axis.axhline(0.05, color="grey", linewidth=1, linestyle=":")
        axis.text(1, 0.05, " 0.05", color="grey", fontsize=7, va="bottom")
        axis.set_yscale("log")
        if shown:   # frame the means (bands from two seeds can span many decades; they run off the frame)
            axis.set_ylim(10 ** (min(min(shown), math.log10(0.05)) - 1), 10 ** (max(shown) + 1))
        axis.set_xlabel("iteration k (call order; carry.*: segment k → k+1)")
        axis.set_ylabel(r"relative residual $\|z_{k+1}-z_k\|\,/\,\|z_k\|$")
        axis.set_title(f"{task} · {variant.label} (n={len(variant.complete)})", fontsize=10)
        axis.legend(fontsize=7)
    _hide_unused(axes, len(panels))
    return Figure("fixed_point", "Fixed-point residuals",
                  "Relative change of every recurrent state per iteration, averaged over the diagnostics subset, "
                  "in the pass at the largest test-time setting (model states solid, the carry between segments "
                  "dashed); geometric mean over seeds with a 95% t-band of log10; gaps = undefined (zero previous "
                  "state); dotted line = 0.05 (a common convergence bar).",
                  _save(figure, out, "fixed_point"))


def figure_extrapolation(variants: list[Variant], out: Path) -> Figure | None:
    panels = []
    for task, group in _by_task(variants).items():
        axes_names = sorted({a for v in group for r in v.complete for a in (r.get("curves") or {})})
        for name in axes_names:
            lines = [(v, _points_by_seed(v, lambda r: r["curves"][name])) for v in group]
            lines = [(v, seeds) for v, seeds in lines if seeds]
            if lines:
                panels.append((task, name, lines))
    if not panels:
        return None
    colors = _palette(variants)
    figure, axes = _panels(len(panels))
    for axis, (task, name, lines) in zip(axes.flat, panels):
        for variant, seeds in lines:
            xs, means, halves = _mean_curve([{x: _number(p.get("exact_accuracy")) for x, p in s.items()} for s in seeds])
            _line(axis, xs, [100 * m for m in means], [100 * h for h in halves], colors[variant.label],
                  variant.label, marker="o")
        axis.set_xlabel(f"{name} (task's extrapolation axis)")
        _percent_axis(axis)
        axis.set_title(f"{task}: exact accuracy vs {name}")
        axis.legend(fontsize=7)
    _hide_unused(axes, len(panels))
    return Figure("extrapolation", "Extrapolation",
                  "Exact accuracy on evaluation splits beyond the training distribution; bands = 95% t-interval.",
                  _save(figure, out, "extrapolation"))


def figure_training(variants: list[Variant], out: Path) -> Figure | None:
    def collect(group: list[Variant]) -> list:
        lines = []
        for variant in group:
            per_seed = []
            for run in variant.runs:
                curve = (run.get("train") or {}).get("curve") or []
                points = {_number(p.get("step")): _number(p.get("loss")) for p in curve if isinstance(p, dict)}
                points = {x: y for x, y in points.items() if x is not None and y is not None and y > 0}
                if points:
                    per_seed.append((run["status"], points))
            if per_seed:
                lines.append((variant, per_seed))
        return lines
    tasks = _per_task(variants, collect)
    if not tasks:
        return None
    colors = _palette(variants)
    figure, axes = _panels(len(tasks))
    for axis, (task, lines) in zip(axes.flat, tasks.items()):
        for variant, per_seed in lines:
            complete = [points for status, points in per_seed if status == "complete"]
            if complete:
                xs, means, halves = _mean_curve(complete, log=True)
                _line(axis, xs, means, halves, colors[variant.label], f"{variant.label} (n={len(complete)})", log=True)
            for status, points in per_seed:
                if status == "diverged":
                    steps = sorted(points)
                    axis.plot(steps, [points[s] for s in steps], color=colors[variant.label], linestyle="--",
                              alpha=0.7, label=f"{variant.label} (diverged seed)")
                    axis.plot([steps[-1]], [points[steps[-1]]], marker="x", color=colors[variant.label])
        axis.set_yscale("log")
        axis.set_xlabel("optimiser step")
        axis.set_ylabel("training loss (log scale)")
        axis.set_title(task)
        axis.legend(fontsize=7)
    _hide_unused(axes, len(tasks))
    return Figure("training", "Training curves",
                  "Training loss (LM loss + halting losses) per optimiser step; geometric mean over seeds with a 95% "
                  "t-band of log10; "
                  "diverged seeds dashed, × where they stopped.", _save(figure, out, "training"))


def figure_act(variants: list[Variant], out: Path) -> Figure | None:
    def collect(group: list[Variant]) -> list:
        entries = [(v, [r["diagnostics"]["act"] for r in v.complete
                        if isinstance((r.get("diagnostics") or {}).get("act"), dict)]) for v in group]
        entries = [(v, acts) for v, acts in entries if acts]
        return entries
    drawing = _stacked_panels(variants, collect)
    if drawing is None:
        return None
    tasks, figure, axes, colors = drawing
    policies = ("learned", "fixed", "oracle")
    for column, (task, entries) in enumerate(tasks.items()):
        bars, histogram = axes[0, column], axes[1, column]
        width = 0.8 / len(policies)
        for row, (variant, acts) in enumerate(entries):
            for offset, policy in enumerate(policies):
                interval = mean_interval([_number((a.get(policy) or {}).get("exact_accuracy")) for a in acts])
                if interval is None:
                    continue
                bars.bar(row + (offset - 1) * width, 100 * interval.mean, width,
                         yerr=100 * (interval.half_width or 0), capsize=3, color=colors[variant.label],
                         alpha=[1.0, 0.55, 0.3][offset], label=policy if row == 0 else None, edgecolor="black")
            counts: dict[int, float] = defaultdict(float)
            for act in acts:
                total = sum((act.get("segments_histogram") or {}).values()) or 1
                for segments, count in (act.get("segments_histogram") or {}).items():
                    counts[int(segments)] += count / total / len(acts)
            xs = sorted(counts)
            histogram.plot(xs, [100 * counts[x] for x in xs], marker="o", color=colors[variant.label],
                           label=f"{variant.label} (n={len(acts)})")
        bars.set_xlim(-0.6, len(entries) - 0.4)
        histogram.set_ylim(bottom=0)
        bars.set_xticks(range(len(entries)), [v.label for v, _ in entries], rotation=15, fontsize=8)
        _percent_axis(bars, bottom=0.0)
        bars.set_title(f"{task}: halting policy (learned / fixed max / oracle)", fontsize=10)
        bars.legend(fontsize=7)
        from matplotlib import ticker
        histogram.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        histogram.set_xlabel("segments used with learned halting")
        histogram.set_ylabel("examples (%)")
        histogram.set_title(f"{task}: distribution of segments used", fontsize=10)
        histogram.legend(fontsize=7)
    return Figure("act", "ACT behaviour",
                  "Top: exact accuracy with learned halting, with all segments (fixed), and with oracle halting "
                  "(each example stopped at its first right answer). Bottom: segments used with learned halting.",
                  _save(figure, out, "act"))


FIGURES: tuple[Callable[[list[Variant], Path], Figure | None], ...] = (
    lambda v, o: figure_accuracy_vs(v, o, "params"),
    lambda v, o: figure_accuracy_vs(v, o, "flops"),
    figure_test_time,
    figure_fixed_point,
    figure_extrapolation,
    figure_training,
    figure_act,
)


# ------------------------------------------------------------------------------------ rendering
def _markdown_inline(text: str) -> str:
    """The only inline markdown the report uses (**bold**, `code`) → HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for kind, *content in blocks:
        if kind == "h1":
            lines += [f"# {content[0]}", ""]
        elif kind == "h2":
            lines += [f"## {content[0]}", ""]
        elif kind == "h3":
            lines += [f"### {content[0]}", ""]
        elif kind == "p":
            lines += [content[0], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in content[0]] + [""]
        elif kind == "table":
            lines += [content[0].to_markdown(index=False, disable_numparse=True), ""]
        elif kind == "figure":
            figure: Figure = content[0]
            lines += [f"![{figure.title}](figures/{figure.name}.png)", "", f"*{figure.caption}* "
                      f"([SVG](figures/{figure.name}.svg))", ""]
    return "\n".join(lines)


def render_html(blocks: list[tuple]) -> str:
    body: list[str] = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(content[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_markdown_inline(content[0])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_markdown_inline(i)}</li>" for i in content[0]) + "</ul>")
        elif kind == "table":
            body.append(content[0].to_html(index=False, border=0, classes="table", escape=True))
        elif kind == "figure":
            figure = content[0]
            data = base64.b64encode(figure.png).decode()
            body.append(f'<figure><img alt="{html.escape(figure.title)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_markdown_inline(figure.caption)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{padding:4px 8px;"
             "border-bottom:1px solid #ddd;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
             "figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}code{background:#f3f3f3;padding:0 3px}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>recurrent-bench report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def note_blocks(text: str) -> list[tuple]:
    """Study notes (markdown): blank-line separated paragraphs, '### ' headings and '- ' lists."""
    blocks: list[tuple] = []
    for chunk in (c.strip() for c in re.split(r"\n\s*\n", text)):
        if not chunk:
            continue
        if chunk.startswith("### "):
            blocks.append(("h3", chunk[4:].strip()))
        elif chunk.startswith("- "):
            blocks.append(("list", [" ".join(item.split()) for item in re.split(r"\n- |^- ", chunk) if item.strip()]))
        else:
            blocks.append(("p", " ".join(chunk.split())))
    return blocks


def write_report(results: Path, out: Path, tasks: Iterable[str] = (), models: Iterable[str] = (),
                 notes: str = "") -> tuple[Path, list[str]]:
    """Write out/index.md, out/index.html and out/figures/*; return (index.md path, warnings)."""
    out = ensure_writable(Path(out))   # ResultsError (one line from the CLI) when it is not
    variants, warnings = load_runs(Path(results), tasks, models)
    runs = sum(len(v.runs) for v in variants)
    blocks: list[tuple] = [("h1", "recurrent-bench report"),
                           ("p", f"{runs} runs in {len(variants)} variants read from `{results}`"
                                 + (f" (filters: tasks {sorted(tasks) or 'all'}, models {sorted(models) or 'all'})"
                                    if tasks or models else "") + ".")]
    if notes.strip():
        blocks += [("h2", "About this study"), *note_blocks(notes)]
    if not variants:
        blocks.append(("p", "No finished runs yet: `python -m bench run --model transformer --task maze`."))
    else:
        blocks += [("h2", "Main results"), ("p", CI_NOTE),
                   ("p", "Exact accuracy is on each task's first evaluation split; FLOPs are counted by "
                         "the suite's counter over torch's FLOP formulas (2 per multiply-add); training wall-clock is seconds of optimiser steps; "
                         "eval throughput is examples per second; MFU is achieved FLOP/s over the device peak "
                         "(CPU: a large fp32 matmul measured in the same process; CUDA: the bf16 datasheet peak)."),
                   ("table", main_table(variants))]
        by_split = test_time_by_split_table(variants)
        if by_split is not None:
            blocks += [("h2", "Test-time compute on every split"),
                       ("p", "Exact accuracy (%) when the trained model runs with the setting in each column (its "
                             "inner iterations or outer segments), on the first `train.diagnostics_examples` examples "
                             "of every evaluation split; mean over seeds (n when more than one)."),
                       ("table", by_split)]
        try:
            blocks += question_blocks(variants)
        except Exception as error:  # noqa: BLE001 — odd data must not stop the report
            warnings.append(f"the five questions could not be answered: {type(error).__name__}: {error}")
        for draw in FIGURES:
            try:
                figure = draw(variants, out)
            except Exception as error:  # noqa: BLE001 — odd data must not stop the report
                warnings.append(f"a figure could not be drawn: {type(error).__name__}: {error}")
                continue
            if figure is not None:
                blocks += [("h2", figure.title), ("figure", figure)]
        try:
            lines = findings(variants)
        except Exception as error:  # noqa: BLE001 — odd data must not stop the report
            warnings.append(f"findings could not be generated: {type(error).__name__}: {error}")
            lines = []
        blocks += [("h2", "Findings"),
                   ("p", "Generated from the numbers above. Differences are in percentage points of exact accuracy "
                         "with a 95% Welch interval; an interval that includes zero is reported as too weak to rank.")]
        blocks.append(("list", lines) if lines else ("p", "No comparisons possible yet."))
        blocks += [("h2", "Runs"), ("table", runs_table(variants))]
    if warnings:
        blocks += [("h2", "Skipped files and warnings"), ("list", warnings)]
    path = out / "index.md"
    atomic_write_bytes(path, (render_markdown(blocks) + "\n").encode())
    atomic_write_bytes(out / "index.html", render_html(blocks).encode())
    return path, warnings
