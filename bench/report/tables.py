"""The report's tables: accuracy pivot (the first thing a reader sees), costs, test-time compute per
split, ACT policies, and the per-run list."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import pandas as pd

from bench.report.contrasts import main_variants
from bench.report.findings import fmt_accuracy, variant_plateaus
from bench.report.load import Variant, by_task
from bench.stats import accuracy_interval, mean_interval


def stat_cell(values: list[float], fmt: Callable[[float], str] = "{:.3g}".format, scale: float = 1.0,
              unit: str = "", deterministic: bool = False) -> str:
    """'mean ± half (n=3)' (Student-t) or 'mean (1 seed)'; quantities fixed by the configuration
    (parameters, counted FLOPs) show the plain value when every seed agrees."""
    interval = mean_interval([v * scale for v in values])
    if interval is None:
        return "—"
    if deterministic and interval.half_width in (None, 0.0):
        return f"{fmt(interval.mean)}{unit}"
    if interval.n == 1:
        return f"{fmt(interval.mean)}{unit} (1 seed)"
    return f"{fmt(interval.mean)} ± {fmt(interval.half_width)}{unit} (n={interval.n})"


def accuracy_pivot(variants: list[Variant], rows: str = "all") -> pd.DataFrame:
    """Rows: variant labels; columns: tasks; cells: exact accuracy (%) [95% interval]; the best mean
    of each task's main variants in bold, as the ranking counts (**…**; none where every variant
    scores 0); '—' where a variant was not run on a task. rows: "all", "main" (the variants the
    ranking counts: the first screen stays short as ablations accumulate) or "ablations" (the rest)."""
    tasks = by_task(variants)
    main = {id(v) for group in tasks.values() for v in main_variants(group)}
    keep = {"all": lambda v: True, "main": lambda v: id(v) in main, "ablations": lambda v: id(v) not in main}[rows]
    labels = sorted({v.label for v in variants if keep(v)})
    cells: dict[str, dict[str, str]] = {label: {} for label in labels}
    for task, group in tasks.items():
        scored = [(v, v.accuracy()) for v in group if v.accuracy() is not None]
        best = max((a.mean for v, a in scored if id(v) in main), default=None)
        for variant, interval in scored:
            if not keep(variant):
                continue
            text = fmt_accuracy(interval)
            cells[variant.label][task] = f"**{text}**" if id(variant) in main and interval.mean == best and best > 0 else text
    columns = [t for t in tasks if any(t in cells[label] for label in labels)] if rows != "all" else list(tasks)
    return pd.DataFrame([{"model": label, **{t: cells[label].get(t, "—") for t in columns}} for label in labels])


def cost_table(variants: list[Variant]) -> pd.DataFrame:
    rows = []
    for variant in variants:
        rows.append({
            "task": variant.task,
            "model": variant.label,
            "seeds": f"{len(variant.complete)}" + (f" (+{len(variant.diverged)} diverged)" if variant.diverged else ""),
            "params": stat_cell(variant.values(lambda r: r.params), lambda v: f"{v:,.0f}", deterministic=True),
            "training FLOPs": stat_cell(variant.values(lambda r: r.flops_total), deterministic=True),
            "inference FLOPs/example": stat_cell(variant.values(lambda r: r.inference_flops), deterministic=True),
            "training wall-clock (s)": stat_cell(variant.values(lambda r: r.train_seconds), "{:.1f}".format),
            "finished learning": finished_cell(variant),
            "eval throughput (examples/s)": stat_cell(variant.values(lambda r: r.throughput), "{:.0f}".format),
            "training MFU (%)": stat_cell(variant.values(lambda r: r.mfu_train), "{:.1f}".format, 100),
            "peak memory (MB)": stat_cell(variant.values(lambda r: r.peak_memory), "{:.0f}".format, 1e-6),
            "device": ", ".join(sorted({r.device for r in variant.complete})) or "—",
            "hosts": len(hosts(variant)) or "—",
        })
    return pd.DataFrame(rows)


def finished_cell(variant: Variant) -> str:
    """'2 of 3 seeds (loss −1.2%…−6.0% over the last 20%)': how many seeds' training loss was flat at the end."""
    plateaus = variant_plateaus(variant)
    if not plateaus:
        return "—"
    drops = sorted(p["relative_drop"] for p in plateaus)
    spread = f"{-drops[-1]:+.1%}" if len(drops) == 1 else f"{-drops[-1]:+.1%} to {-drops[0]:+.1%}"
    rising = sum(p["trend"] == "rising" for p in plateaus)
    return (f"{sum(p['finished'] for p in plateaus)} of {len(plateaus)} (loss {spread} over the last 20%"
            + (f"; rising in {rising}" if rising else "") + ")")


def runs_table(variants: list[Variant]) -> pd.DataFrame:
    rows = []
    for variant in variants:
        for run in variant.runs:
            status = run.status + (f" at step {run.diverged_step:g}" if run.diverged_step is not None else "")
            rows.append({"task": variant.task, "model": variant.label, "seed": run.seed, "status": status,
                         "exact accuracy (%)": "—" if run.exact_accuracy is None else f"{100 * run.exact_accuracy:.1f}",
                         "examples": run.examples or "—", "run id": run.run_id})
    return pd.DataFrame(rows)


def test_time_by_split_table(variants: list[Variant]) -> pd.DataFrame | None:
    """Exact accuracy (mean over seeds) at each test-time setting on every evaluation split: the
    DeepThinking table — does running longer help *out of distribution*?"""
    rows = []
    for variant in variants:
        per_split: dict[tuple[str, str], dict[float, list[float]]] = {}
        for run in variant.complete:
            for split, knobs in run.test_time_by_split.items():
                for knob, curve in knobs.items():
                    for point in curve.points:
                        if point.exact_accuracy is not None:
                            per_split.setdefault((split, knob), {}).setdefault(point.x, []).append(
                                100 * point.exact_accuracy)
        for (split, knob), points in per_split.items():
            row = {"task": variant.task, "variant": variant.label, "split": split, "knob": knob}
            for x in sorted(points):
                values = points[x]
                row[f"{x:g}"] = f"{np.mean(values):.1f}" + (f" (n={len(values)})" if len(values) > 1 else "")
            rows.append(row)
    return pd.DataFrame(rows).fillna("") if rows else None


def act_table(variants: list[Variant]) -> pd.DataFrame | None:
    """Exact accuracy (%) with learned halting, all segments and oracle halting, and segments used."""
    rows = []
    for variant in variants:
        acts = [r.act for r in variant.complete if r.act]
        if not acts:
            continue
        row: dict[str, str] = {"task": variant.task, "model": variant.label, "seeds": str(len(acts)),
                               "segments": f"{acts[0].segments}"}
        for policy in ("learned", "fixed", "oracle"):
            row[f"{policy} (%)"] = stat_cell([a.accuracy[policy] for a in acts if a.accuracy[policy] is not None],
                                             "{:.1f}".format, 100)
        row["segments used (learned)"] = stat_cell([a.mean_segments["learned"] for a in acts
                                                    if a.mean_segments["learned"] is not None], "{:.2f}".format)
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def stop_selector_table(variants: list[Variant]) -> pd.DataFrame | None:
    """Per variant trained with a stop selector and per evaluation split: exact accuracy (%) running
    every iteration, stopping where the selector says and at the oracle stop (each example's first
    right iteration), each with the report's interval inside [0, 100]; the iterations the selector
    chose (± Student-t over seeds); and in how many seeds its training loss ended flat (a head still
    learning says little about the rule)."""
    rows = []
    for variant in variants:
        runs = [r for r in variant.complete if r.stop_selector]
        for split in dict.fromkeys(s for r in runs for s in r.stop_selector):
            entries = [r.stop_selector[split] for r in runs if split in r.stop_selector]
            examples = [int(e["examples"]) for e in entries]
            accuracy = lambda name: fmt_accuracy(accuracy_interval([e[name] for e in entries], examples))  # noqa: E731
            rows.append({"task": variant.task, "model": variant.label, "split": split, "seeds": str(len(entries)),
                         "all iterations (%)": accuracy("all_iterations_exact_accuracy"),
                         "selector's stop (%)": accuracy("selector_exact_accuracy"),
                         "oracle stop (%)": accuracy("oracle_exact_accuracy"),
                         "iterations chosen": stat_cell([e["mean_selected_iterations"] for e in entries], "{:.2f}".format),
                         "selector trained flat": _flat_count([r.stop_selector_flat for r in runs])})
    return pd.DataFrame(rows) if rows else None


def _flat_count(flags: list[bool | None]) -> str:
    recorded = [f for f in flags if f is not None]
    if not recorded:
        return "not recorded"
    return f"{sum(recorded)} of {len(recorded)}" + (f" ({len(flags) - len(recorded)} not recorded)"
                                                    if len(recorded) < len(flags) else "")


def diverged_lines(variants: list[Variant]) -> list[str]:
    return [f"{v.label} on {v.task}: {len(v.diverged)} of {len(v.runs)} seeds diverged (steps "
            f"{', '.join(f'{r.diverged_step:g}' for r in v.diverged if r.diverged_step is not None)})."
            for v in variants if v.diverged]


def hosts(variant: Variant) -> set[str]:
    """The machines that trained its finished seeds (unknown ones left out)."""
    return {host for run in variant.complete for host in run.hosts}


def study_facts(variants: list[Variant]) -> dict[str, str]:
    """Machine, seeds and presets of the runs, for the short paragraph at the top."""
    devices: dict[str, int] = defaultdict(int)
    for variant in variants:
        for run in variant.complete:
            devices[run.device] += 1
    seeds = sorted({len(v.complete) for v in variants if v.complete})
    return {"devices": ", ".join(f"{d} ({n} runs)" for d, n in sorted(devices.items())) or "—",
            "seeds": "–".join(str(s) for s in (seeds[0], seeds[-1]) if seeds) if len(seeds) > 1 else
            (str(seeds[0]) if seeds else "0"),
            "presets": ", ".join(sorted({v.preset for v in variants})) or "—",
            "tasks": ", ".join(by_task(variants)) or "—",
            "hosts": str(len(set().union(*(hosts(v) for v in variants)))),
            "mixed hosts": str(sum(len(hosts(v)) > 1 for v in variants))}
