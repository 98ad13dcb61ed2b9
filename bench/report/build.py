"""`bench report`: read every run under --results, write index.md, index.html and figures/ to --out.

Order: a short paragraph about the runs, one generated answer per question, the accuracy pivot and
per-task dot plot, one finding per declared contrast with the forest plot, costs, the remaining
figures; appendices hold every pairwise test, the study notes (--notes), the runs and the warnings.

Robustness: unusable summaries are skipped with a warning naming the file; diverged runs are listed,
never averaged in; duplicates of a (config hash, seed) count once; a table, finding or figure that
cannot be made from odd data becomes a warning, not a crash.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from bench.report import figures_accuracy, figures_curves
from bench.report.contrasts import evaluate
from bench.report.findings import contrast_findings, headlines, pairs_table
from bench.report.load import Variant, by_task, is_protocol_check, load_runs
from bench.report.plotting import Drawn, Styles, save
from bench.report.render import note_blocks, render_html, render_markdown
from bench.report.tables import (accuracy_pivot, act_table, cost_table, diverged_lines, runs_table, stop_selector_table,
                                 study_facts,
                                 test_time_by_split_table)
from bench.results import atomic_write_bytes, ensure_writable

PIVOT_NOTE = ("Exact accuracy (%) on each task's first evaluation split, mean over seeds with a 95% interval "
              "that stays inside [0, 100]: for one seed the Wilson score interval of its correct count "
              "(“1 seed”), for several the Student-t interval of the seeds' logits, never narrower than the "
              "examples' binomial error (docs/report.md). Bold: the best mean of each task among the main "
              "variants, as the ranking counts. This table holds those main variants: each model at its "
              "preset (for a study made at an older preset, the variant the ranking counts). The ablations "
              "follow in their own table, named by the keys they change.")
ABLATIONS_NOTE = "Ablations: the same measure for every other variant, named by the keys it changes from its preset:"


PROTOCOL_NOTE = ("{tasks}: at this preset these tasks cannot be learnt (about 10^13 training FLOPs per run "
                 "against the 10^16–10^18 of the published results), so their runs check that the protocol runs "
                 "end to end (data, training, evaluation, scoring) and are left out of the answers and the table "
                 "above. Exact accuracy (%), as above:")


def _about(results: Path, variants: list[Variant], notes: str, filters: str) -> str:
    facts = study_facts(variants)
    runs = sum(len(v.runs) for v in variants)
    first = next((b[1] for b in note_blocks(notes) if b[0] == "p"), "") if notes.strip() else ""
    return (f"**About this study.** {runs} runs in {len(variants)} variants read from `{results}`{filters}: tasks "
            f"{facts['tasks']}; preset {facts['presets']}; {facts['seeds']} seed(s) per variant; machine "
            f"{facts['devices']}{_hosts(facts)} Made with `python -m bench report --results {results}`"
            + (" — the study notes (how the runs were made, timings) are in the appendix." if notes.strip() else ".")
            + (f" {first}" if first else ""))


def _hosts(facts: dict[str, str]) -> str:
    """'; 3 hosts.' and, when a variant's seeds ran on several, what that does to its interval."""
    known = f"; {facts['hosts']} host(s)." if facts["hosts"] != "0" else "."
    if facts["mixed hosts"] == "0":
        return known
    return (known + f" The seeds of {facts['mixed hosts']} variant(s) ran on more than one host (the *hosts* "
            "column under Costs). One host repeats a run exactly at the same config, seed and threads; hosts with another CPU "
            "model, kernel or SIMD level need not, so those intervals hold host-to-host variation as well as the "
            "seeds'.")


def _attempt(warnings: list[str], what: str, make: Callable, *args):
    """make(*args), or None with a warning (odd data must not stop the report)."""
    try:
        return make(*args)
    except Exception as error:  # noqa: BLE001 — see docstring
        warnings.append(f"{what} could not be made: {type(error).__name__}: {error}")
        return None


def report_blocks(results: Path, variants: list[Variant], warnings: list[str], out: Path, notes: str = "",
                  filters: str = "") -> tuple[list[tuple], list[Drawn]]:
    """The report as blocks (bench/report/render.py) and its figures, saved under out/figures."""
    blocks: list[tuple] = [("h1", "recurrent-bench report"), ("p", _about(results, variants, notes, filters))]
    drawn: list[Drawn] = []
    if not variants:
        blocks.append(("p", "No finished runs yet: `python -m bench run --model transformer --task maze`."))
        return blocks, drawn
    styles = Styles(variants)

    def figure(make: Callable, *args) -> list[tuple]:
        result = _attempt(warnings, f"figure {getattr(make, '__name__', '?')}", make, *args)
        if result is None:
            return []
        drawn.append(save(result, out))
        return [("h3", result.title), ("figure", result)]

    def table(make: Callable, introduction: str) -> list[tuple]:
        result = _attempt(warnings, f"table {make.__name__}", make, variants)
        return [] if result is None else [("p", introduction), ("table", result)]

    pairs = _attempt(warnings, "the contrasts", evaluate, variants) or []
    # tasks that cannot be learnt at their preset's scale are protocol checks: not in the headline
    evidence = [v for v in variants if not is_protocol_check(v)]
    checks = [v for v in variants if is_protocol_check(v)]
    answers = _attempt(warnings, "the answers", headlines, evidence, pairs) or []
    blocks += [("h2", "Answers"), ("list", [(f"**{a.question}** {a.lead}", a.details) for a in answers])]
    if evidence:
        blocks += [("h2", "Exact accuracy"), ("p", PIVOT_NOTE), ("table", accuracy_pivot(evidence, rows="main"))]
        ablations = accuracy_pivot(evidence, rows="ablations")
        if len(ablations):
            blocks += [("p", ABLATIONS_NOTE), ("table", ablations)]
        blocks += figure(figures_accuracy.accuracy_by_task, evidence, styles)
    if checks:
        blocks += [("h2", "Protocol checks"),
                   ("p", PROTOCOL_NOTE.format(tasks=", ".join(sorted({v.task for v in checks})))),
                   ("table", accuracy_pivot(checks))]
    lines = _attempt(warnings, "the findings", contrast_findings, pairs) or []
    blocks += [("h2", "Findings"), ("p", "One line per declared contrast (bench/report/contrasts.py); "
                                         "every pair is in appendix A.")]
    blocks += [("list", lines + diverged_lines(variants))] if lines or diverged_lines(variants) else \
        [("p", "No contrast could be formed from these runs.")]
    parts = figures_accuracy.forest_parts(pairs)
    for number, part in enumerate(parts, start=1):
        blocks += figure(figures_accuracy.forest, part, number, len(parts))
    blocks += [("h2", "Costs"), ("p", "FLOPs are counted by the suite's counter over torch's FLOP formulas (2 per "
                                      "multiply-add); training wall-clock is seconds of optimiser steps; MFU is achieved "
                                      "FLOP/s over the device peak; ± is a Student-t interval over seeds."),
               ("table", cost_table(variants))]
    blocks += figure(figures_accuracy.pareto, variants, styles)
    blocks += [("h2", "Curves")]
    blocks += figure(figures_curves.learning_curves, variants, styles, "step")
    blocks += figure(figures_curves.learning_curves, variants, styles, "flops")
    blocks += figure(figures_accuracy.extrapolation, variants, styles)
    for group in by_task(variants).values():
        blocks += figure(figures_curves.test_time, group, styles)
    blocks += table(test_time_by_split_table, "Exact accuracy (%) at each test-time setting (columns) on every "
                                              "evaluation split, mean over seeds (n when more than one):")
    blocks += figure(figures_curves.fixed_point, variants, styles)
    blocks += figure(figures_curves.act_histogram, variants, styles)
    blocks += table(act_table, "Exact accuracy (%) with learned halting, with all segments (fixed) and with oracle "
                               "halting (each example stopped at its first right answer):")
    blocks += table(stop_selector_table, "Best of k with a stop selector (`train.iteration_rule=best_of_k`, "
                                         "`train.stop_selector_steps`): exact accuracy (%) running every iteration, "
                                         "stopping where the selector (a head trained on the frozen network) says, and "
                                         "at the oracle stop (each example's first right iteration, an upper bound), "
                                         "with the iterations the selector chose and in how many seeds the "
                                         "selector's own training loss ended flat:")
    table = pairs_table(pairs)
    blocks += [("h2", "Appendix A: every pairwise test")]
    blocks += [("table", table)] if table is not None else [("p", "No pairs.")]
    if notes.strip():
        blocks += [("h2", "Appendix B: study notes"), *note_blocks(notes)]
    blocks += [("h2", "Appendix C: runs"), ("table", runs_table(variants))]
    return blocks, drawn


def write_report(results: Path, out: Path, tasks: Iterable[str] = (), models: Iterable[str] = (),
                 notes: str = "") -> tuple[Path, list[str]]:
    """Write out/index.md, out/index.html and out/figures/*.png; return (index.md path, warnings)."""
    out = ensure_writable(Path(out))   # ResultsError (one line from the CLI) when it is not
    variants, warnings = load_runs(Path(results), tasks, models)
    filters = (f" (filters: tasks {sorted(tasks) or 'all'}, models {sorted(models) or 'all'})" if tasks or models else "")
    blocks, _ = report_blocks(Path(results), variants, warnings, out, notes, filters)
    if warnings:
        blocks += [("h2", "Skipped files and warnings"), ("list", list(warnings))]
    path = out / "index.md"
    atomic_write_bytes(path, (render_markdown(blocks) + "\n").encode())
    atomic_write_bytes(out / "index.html", render_html(blocks).encode())
    return path, warnings
