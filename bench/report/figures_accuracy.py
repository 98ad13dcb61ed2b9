"""Figures of final accuracy: per-task dot plot, accuracy vs training FLOPs (Pareto), the forest plot
of the contrasts, extrapolation. Each returns a `Drawn` (bench/report/plotting.py) whose `data`
holds what was plotted, or None when there is nothing to draw."""
from __future__ import annotations

import textwrap
from collections import defaultdict

from bench.report.contrasts import CONTRASTS, Pair
from bench.report.load import Variant, by_task
from bench.report.plotting import Drawn, Styles, grid, legend_outside, log_axis, percent_axis, pyplot
from bench.stats import accuracy_interval

INTERVALS = ("95% intervals inside [0, 100]: Wilson score interval of one seed's correct count, "
             "Student-t interval of the seeds' logits for several seeds (bench/stats.py)")


def _errors(interval) -> tuple[float, float]:
    if interval.low is None:
        return 0.0, 0.0
    return 100 * (interval.mean - interval.low), 100 * (interval.high - interval.mean)


def accuracy_by_task(variants: list[Variant], styles: Styles) -> Drawn | None:
    """Per task: every variant's exact accuracy with its interval, sorted (best on top)."""
    tasks = {task: sorted(((v, v.accuracy()) for v in group if v.accuracy()), key=lambda t: t[1].mean)
             for task, group in by_task(variants).items()}
    tasks = {t: rows for t, rows in tasks.items() if rows}
    if not tasks:
        return None
    tallest = max(len(rows) for rows in tasks.values())
    figure, axes = grid(len(tasks), 3, 0.38 * tallest + 1.2)
    data = {}
    for axis, (task, rows) in zip(axes, tasks.items()):
        for y, (variant, interval) in enumerate(rows):
            low, high = _errors(interval)
            style = styles.line(variant)
            axis.errorbar([100 * interval.mean], [y], xerr=[[low], [high]], capsize=3, linestyle="none",
                          color=style["color"], marker=style["marker"], markerfacecolor=style["markerfacecolor"],
                          markeredgecolor=style["color"], markersize=7)
        # wrapped: one long label (a DEQ ablation's three keys) would otherwise squeeze every panel
        axis.set_yticks(range(len(rows)), ["\n".join(textwrap.wrap(v.label, 30)) for v, _ in rows], fontsize=8)
        percent_axis(axis, "x")
        axis.set_title(task)
        data[task] = [(v.label, 100 * a.mean) for v, a in rows]
    return Drawn("accuracy_by_task", "Exact accuracy per task",
                 f"Exact accuracy on each task's first evaluation split, every variant, best on top; {INTERVALS}.",
                 figure, data=data)


def pareto(variants: list[Variant], styles: Styles) -> Drawn | None:
    """Per task: exact accuracy vs training FLOPs; the grey steps join the variants no cheaper one beats."""
    tasks = {}
    for task, group in by_task(variants).items():
        points = [(v, v.values(lambda r: r.flops_total), v.accuracy()) for v in group]
        points = [(v, sum(f) / len(f), a) for v, f, a in points if f and a]
        if points:
            tasks[task] = sorted(points, key=lambda p: p[1])
    if not tasks:
        return None
    figure, axes = grid(len(tasks), 2, 3.6)
    data = {}
    for axis, (task, points) in zip(axes, tasks.items()):
        frontier, best = [], -1.0
        for variant, flops, interval in points:
            low, high = _errors(interval)
            axis.errorbar([flops], [100 * interval.mean], yerr=[[low], [high]], capsize=3, label=variant.label,
                          **{**styles.line(variant), "linestyle": "none"}, markersize=7)
            if interval.mean > best:
                frontier.append((flops, 100 * interval.mean))
                best = interval.mean
        axis.step([f for f, _ in frontier], [a for _, a in frontier], where="post", color="grey", linewidth=1,
                  zorder=0)
        log_axis(axis)
        axis.set_xlabel("training FLOPs (log scale)")
        percent_axis(axis)
        axis.set_title(task)
        legend_outside(axis)
        data[task] = {"points": [(v.label, f, 100 * a.mean) for v, f, a in points], "frontier": frontier}
    return Drawn("pareto", "Exact accuracy vs training FLOPs",
                 "One point per variant (mean over seeds; training FLOPs are counted, so fixed by the "
                 f"configuration); grey steps: the Pareto frontier (no cheaper variant scores higher); {INTERVALS}.",
                 figure, data=data)


FOREST_LABEL_WIDTH = 70   # characters per line of a row's label
FOREST_ROW_GAP = 0.6       # space between rows, in label lines
FOREST_INCHES_PER_LINE = 0.13   # 7-point labels need ≈ 0.12 in a line
FOREST_MAX_INCHES = 24.0   # a taller forest is split into parts (forest_parts), not squeezed


def _forest_rows(pairs: list[Pair]) -> list[tuple[str, Pair | None]]:
    """(wrapped label, pair) in contrast order; a contrast's own row (pair None) heads its pairs."""
    rows: list[tuple[str, Pair | None]] = []
    for contrast in CONTRASTS:
        mine = [p for p in pairs if p.contrast is contrast]
        if mine:
            rows.append((contrast.name, None))
            rows += [(f"{p.task} · {p.treatment} vs {p.control} · matched {p.matched}", p) for p in mine]
    # long variant labels wrap, so the labels leave the plot most of the width and stay inside the figure
    return [("\n".join(textwrap.wrap(label, FOREST_LABEL_WIDTH)), pair) for label, pair in rows]


def _forest_spans(rows: list[tuple[str, Pair | None]]) -> list[float]:
    """Each row's height in label lines: as tall as its label plus a gap, so wrapped labels do not overlap."""
    return [label.count("\n") + 1 + FOREST_ROW_GAP for label, _ in rows]


def _forest_inches(pairs: list[Pair]) -> float:
    return FOREST_INCHES_PER_LINE * sum(_forest_spans(_forest_rows(pairs))) + 1.2


def forest_parts(pairs: list[Pair]) -> list[list[Pair]]:
    """The pairs in contrast order, cut into as few forests as keep each within FOREST_MAX_INCHES (one
    for most reports); a contrast cut in two heads both parts."""
    parts: list[list[Pair]] = []
    for pair in (p for contrast in CONTRASTS for p in pairs if p.contrast is contrast):
        if parts and _forest_inches(parts[-1] + [pair]) <= FOREST_MAX_INCHES:
            parts[-1].append(pair)
        else:
            parts.append([pair])
    return parts


def forest(pairs: list[Pair], part: int = 1, parts: int = 1) -> Drawn | None:
    """Every contrast pair's difference with its 95% interval; filled = differs after Holm. `part` of
    `parts`: one of forest_parts' cuts of a report's pairs."""
    if not pairs:
        return None
    plt = pyplot()
    rows = _forest_rows(pairs)
    spans = _forest_spans(rows)
    total = float(sum(spans))
    ys = [total - sum(spans[:index]) - span / 2 for index, span in enumerate(spans)]
    height = min(FOREST_MAX_INCHES, _forest_inches(pairs))   # only a single pair's label could pass it
    figure, axis = plt.subplots(figsize=(14.0, height), layout="constrained")
    plotted = []
    for y, (label, pair) in zip(ys, rows):
        if pair is None:
            continue
        centre = 100 * pair.test.difference
        colour = "black" if pair.significant else "grey"
        if pair.test.low is not None:
            axis.plot([100 * pair.test.low, 100 * pair.test.high], [y, y], color=colour, linewidth=1.5)
        axis.plot([centre], [y], marker="o", color=colour, markerfacecolor=colour if pair.significant else "white")
        plotted.append((label, centre))
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(ys, [label for label, _ in rows], fontsize=7)
    for tick, (_, pair) in zip(axis.get_yticklabels(), rows):
        if pair is None:
            tick.set_fontweight("bold")
    axis.set_ylim(0.0, total)
    axis.set_xlim(-103, 103)
    axis.set_xlabel("difference in exact accuracy (percentage points), treatment − control")
    name, title = "forest", "Contrasts: differences with 95% intervals"
    if parts > 1:
        name, title = f"forest_{part}", f"{title} (part {part} of {parts})"
    return Drawn(name, title,
                 "One row per pair of each declared contrast (bold: the contrast). Filled black: the pair differs "
                 "after Holm's correction over every test in the report; hollow grey: it does not, or it has no test. "
                 "Intervals: Welch (≥ 2 seeds a side); one seed against several: t over the several seeds' spread; "
                 "one seed a side: Newcombe's score interval from pooled examples; paired t over seeds (ACT).", figure, data={"rows": plotted})


def extrapolation(variants: list[Variant], styles: Styles) -> Drawn | None:
    """Exact accuracy vs the task's extrapolation axis (length, grid size), one line per variant."""
    panels = []
    for task, group in by_task(variants).items():
        for axis_name in sorted({a for v in group for r in v.complete for a in r.curves}):
            lines = []
            for variant in group:
                per_x: dict[float, list[tuple[float, int | None]]] = defaultdict(list)
                for run in variant.complete:
                    for point in run.curves.get(axis_name, ()):
                        if point.exact_accuracy is not None:
                            per_x[point.x].append((point.exact_accuracy, run.split_examples.get(point.split or "")))
                if per_x:
                    lines.append((variant, {x: accuracy_interval([a for a, _ in v], [e for _, e in v])
                                            for x, v in sorted(per_x.items())}))
            if lines:
                panels.append((task, axis_name, lines))
    if not panels:
        return None
    figure, axes = grid(len(panels), 2, 3.6)
    data = {}
    for axis, (task, axis_name, lines) in zip(axes, panels):
        for variant, intervals in lines:
            xs = list(intervals)
            means = [100 * intervals[x].mean for x in xs]
            axis.plot(xs, means, label=variant.label, **styles.line(variant))
            if all(intervals[x].low is not None for x in xs):   # no band where every seed scores 0
                axis.fill_between(xs, [100 * intervals[x].low for x in xs], [100 * intervals[x].high for x in xs],
                                  where=[intervals[x].high > 0 and intervals[x].mean > 0 for x in xs],
                                  color=styles.colour(variant), alpha=0.12, linewidth=0)
            data[(task, axis_name, variant.label)] = list(zip(xs, means))
        axis.set_xlabel(axis_name)
        percent_axis(axis)
        axis.set_title(f"{task}: exact accuracy vs {axis_name}")
        legend_outside(axis)
    return Drawn("extrapolation", "Extrapolation",
                 f"Exact accuracy on every evaluation split, against the task's size axis (the tasks' presets "
                 f"say which sizes are trained on); bands: {INTERVALS}, left out where every seed scores 0.",
                 figure, data=data)
