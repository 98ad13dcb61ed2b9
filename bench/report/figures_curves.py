"""Figures of curves: learning curves (vs step and vs training FLOPs), accuracy vs test-time
iterations, fixed-point residuals, the ACT histogram. Same contract as figures_accuracy.py."""
from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np

from bench.report.load import Variant, by_task
from bench.report.plotting import Drawn, Styles, grid, legend_outside, log_axis, percent_axis, pyplot


def _mean_by_x(per_seed: list[dict[float, float]], geometric: bool = False) -> tuple[list[float], list[float]]:
    """x and the mean over seeds at every x that every seed has (geometric mean for losses)."""
    if not per_seed:
        return [], []
    xs = sorted(set.intersection(*(set(points) for points in per_seed)))
    if geometric:
        return xs, [float(10 ** np.mean([math.log10(p[x]) for p in per_seed])) for x in xs]
    return xs, [float(np.mean([p[x] for p in per_seed])) for x in xs]


def learning_curves(variants: list[Variant], styles: Styles, against: str = "step") -> Drawn | None:
    """Rows: tasks; columns: training-batch exact accuracy and training loss, against optimiser step
    or training FLOPs (step × FLOPs per step); one line per variant, mean over its complete seeds."""
    tasks = {t: [v for v in g if any(r.train_curve for r in v.complete)] for t, g in by_task(variants).items()}
    tasks = {t: g for t, g in tasks.items() if g}
    if not tasks:
        return None
    figure, axes = grid(2 * len(tasks), 2, 3.0)
    data = {}
    for row, (task, group) in enumerate(tasks.items()):
        accuracy_axis, loss_axis = axes[2 * row], axes[2 * row + 1]
        for variant in group:
            scale = 1.0
            if against == "flops":
                per_step = variant.values(lambda r: r.flops_per_step)
                if not per_step:
                    continue
                scale = float(np.mean(per_step))
            accuracy = [{p.step * scale: 100 * p.exact_accuracy for p in r.train_curve if p.exact_accuracy is not None}
                        for r in variant.complete if r.train_curve]
            loss = [{p.step * scale: p.loss for p in r.train_curve if p.loss is not None and p.loss > 0}
                    for r in variant.complete if r.train_curve]
            style = {**styles.line(variant), "marker": None}
            xs, ys = _mean_by_x([a for a in accuracy if a])
            if xs:
                accuracy_axis.plot(xs, ys, label=f"{variant.label} (n={len(accuracy)})", **style)
                data[(task, variant.label, "accuracy")] = list(zip(xs, ys))
            xs, ys = _mean_by_x([loss_ for loss_ in loss if loss_], geometric=True)
            if xs:
                loss_axis.plot(xs, ys, label=f"{variant.label} (n={len(loss)})", **style)
                data[(task, variant.label, "loss")] = list(zip(xs, ys))
        for axis in (accuracy_axis, loss_axis):
            if against == "flops":
                log_axis(axis)
            axis.set_xlabel("optimiser step" if against == "step" else "training FLOPs (log scale)")
        percent_axis(accuracy_axis)
        accuracy_axis.set_ylabel("training-batch exact accuracy (%)")
        accuracy_axis.set_title(f"{task}: exact accuracy on training batches")
        loss_axis.set_yscale("log")
        loss_axis.set_ylabel("training loss (log scale)")
        loss_axis.set_title(f"{task}: training loss")
        legend_outside(loss_axis)
    name = "learning_curves" if against == "step" else "learning_curves_flops"
    title = "Learning curves" if against == "step" else "Learning curves against training FLOPs"
    return Drawn(name, title, "Each run's logged training curve (bench/trainer.py): exact accuracy of the training "
                 "batch and the training loss; mean over complete seeds (geometric mean for the loss)"
                 + (", against cumulative training FLOPs (step × counted FLOPs per step)" if against == "flops" else "")
                 + ". Diverged seeds are left out (see the runs table).", figure, data=data)


def test_time(variants: list[Variant], styles: Styles) -> Drawn | None:
    """Accuracy vs test-time iterations. With per-split curves (DeepThinking's plot): one panel per
    variant and knob, one line per evaluation split (test size). Otherwise one panel per task, one
    line per variant and knob, on the first split. ★ marks the trained setting. The report draws one
    such figure per task (named for it): a study has dozens of variant × knob panels, too many to
    read in one figure."""
    by_split = [(v, knob) for v in variants for knob in sorted({k for r in v.complete
                                                                for s in r.test_time_by_split.values() for k in s})]
    plt = pyplot()
    data: dict = {}
    if by_split:
        figure, axes = grid(len(by_split), 3, 3.2)
        splits = list(dict.fromkeys(s for v, _ in by_split for r in v.complete for s in r.test_time_by_split))
        colours = dict(zip(splits, plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(splits)))))
        for axis, (variant, knob) in zip(axes, by_split):
            for split in dict.fromkeys(s for r in variant.complete for s in r.test_time_by_split):
                curves = [r.test_time_by_split[split][knob] for r in variant.complete
                          if knob in r.test_time_by_split.get(split, {})]
                xs, ys = _mean_by_x([{p.x: 100 * p.exact_accuracy for p in c.points if p.exact_accuracy is not None}
                                     for c in curves])
                axis.plot(xs, ys, color=colours[split], marker="o", markersize=4, label=split)
                data[(variant.task, variant.label, knob, split)] = list(zip(xs, ys))
                _star(axis, curves, xs, ys, colours[split])
            title = textwrap.fill(f"{variant.task} · {variant.label} (n={len(variant.complete)})", 60)
            _iterations_axis(axis, title, knob)
        handles = [plt.Line2D([], [], color=colours[s], marker="o", label=s) for s in splits]
        figure.legend(handles=handles, loc="outside upper center", ncols=min(len(splits), 6), frameon=False)
        caption = ("DeepThinking's plot: exact accuracy when the trained model runs with more (or fewer) "
                   "iterations than trained, one line per evaluation split (larger test sizes: lighter); ★ = trained "
                   "setting; mean over seeds on the first `train.diagnostics_examples` examples of each split.")
        return Drawn(*_test_time_name(variants), caption, figure, data=data)
    tasks = {t: [(v, k) for v in g for k in sorted({k for r in v.complete for k in r.test_time})]
             for t, g in by_task(variants).items()}
    tasks = {t: lines for t, lines in tasks.items() if lines}
    if not tasks:
        return None
    figure, axes = grid(len(tasks), 2, 3.6)
    for axis, (task, lines) in zip(axes, tasks.items()):
        for variant, knob in lines:
            curves = [r.test_time[knob] for r in variant.complete if knob in r.test_time]
            xs, ys = _mean_by_x([{p.x: 100 * p.exact_accuracy for p in c.points if p.exact_accuracy is not None}
                                 for c in curves])
            axis.plot(xs, ys, label=f"{variant.label} · {knob}", **styles.line(variant))
            data[(task, variant.label, knob, None)] = list(zip(xs, ys))
            _star(axis, curves, xs, ys, styles.colour(variant))
        _iterations_axis(axis, task, "iterations or segments")
        legend_outside(axis)
    caption = ("Exact accuracy on the first `train.diagnostics_examples` examples of the first evaluation split when "
               "the trained model runs with more (or fewer) iterations than trained: outer segments (`segments`) or "
               "the model's own loops / solver iterations (`model.<key>`); ★ = trained setting; mean over seeds.")
    return Drawn(*_test_time_name(variants), caption, figure, data=data)


def _test_time_name(variants: list[Variant]) -> tuple[str, str]:
    """(file name, title): 'test_time_compute_maze', 'Test-time compute: maze' for one task's variants."""
    tasks = sorted({v.task for v in variants})
    if len(tasks) == 1:
        return f"test_time_compute_{tasks[0]}", f"Test-time compute: {tasks[0]}"
    return "test_time_compute", "Test-time compute"


def _star(axis, curves, xs, ys, colour) -> None:
    trained = {c.trained for c in curves}
    for value in trained:
        if value in xs:
            axis.plot([value], [ys[xs.index(value)]], marker="*", markersize=13, color=colour, linestyle="none")


def _iterations_axis(axis, title: str, knob: str) -> None:
    axis.set_xscale("log", base=2)
    axis.set_xlabel(f"test-time {knob} (log₂ scale)")
    percent_axis(axis)
    axis.set_title(title, fontsize=9)


FIXED_POINT_LEGEND_ROWS = 16


def fixed_point(variants: list[Variant], styles: Styles) -> Drawn | None:
    """One panel per task: relative residual per iteration of every traced state (geometric mean
    over seeds), model colours; model states solid markers, the carry between segments hollow."""
    tasks: dict[str, list] = {}
    for task, group in by_task(variants).items():
        lines = []
        for variant in group:
            traces: dict[str, list[dict[float, float]]] = defaultdict(list)
            for run in variant.complete:
                for knob, entry in run.fixed_point.items():
                    for state, trace in entry.residuals.items():
                        traces[state].append({float(i + 1): v for i, v in enumerate(trace) if v is not None and v > 0})
            lines += [(variant, state, seeds) for state, seeds in sorted(traces.items()) if any(seeds)]
        if lines:
            tasks[task] = lines
    if not tasks:
        return None
    # one panel a row: a study traces dozens of variant × state lines, and their legend needs the room
    # (in two columns past FIXED_POINT_LEGEND_ROWS entries)
    columns = {task: 1 if len(lines) <= FIXED_POINT_LEGEND_ROWS else 2 for task, lines in tasks.items()}
    legend_rows = max(math.ceil(len(lines) / columns[task]) for task, lines in tasks.items())
    figure, axes = grid(len(tasks), 1, max(3.8, 0.16 * legend_rows + 0.8))
    data = {}
    for axis, (task, lines) in zip(axes, tasks.items()):
        for variant, state, seeds in lines:
            xs, ys = _mean_by_x([s for s in seeds if s], geometric=True)
            states = [s for v, s, _ in lines if v is variant and not s.startswith("carry.")]
            style = {**styles.line(variant), "markerfacecolor": styles.colour(variant)}
            if state.startswith("carry."):
                style = {**style, "markerfacecolor": "white", "linestyle": ":"}
            else:   # a variant's states: solid, dashed, dash-dot
                style["linestyle"] = ("-", "--", "-.")[states.index(state) % 3]
            axis.plot(xs, ys, label=f"{variant.label}: {state}", markersize=4, **style)
            data[(task, variant.label, state)] = list(zip(xs, ys))
        axis.axhline(0.05, color="grey", linewidth=1, linestyle=":")
        axis.set_yscale("log")
        axis.set_xlabel("iteration k (call order; carry.*: segment k → k+1)")
        axis.set_ylabel(r"$\|z_{k+1}-z_k\|\,/\,\|z_k\|$")
        axis.set_title(f"{task}: fixed-point residuals")
        legend_outside(axis, fontsize=7, ncols=columns[task])
    return Drawn("fixed_point", "Fixed-point residuals",
                 "Relative change of every recurrent state per iteration in the pass at the largest test-time setting, "
                 "averaged over the diagnostics subset, geometric mean over seeds; dotted grey line: 0.05 (the "
                 "report's convergence bar); one colour and marker per model, its states solid / dashed / dash-dot; hollow "
                 "dotted: the carry between outer segments.", figure, data=data)


def act_histogram(variants: list[Variant], styles: Styles) -> Drawn | None:
    """One panel per task: share of examples (%) by segments used under learned halting, bars per
    variant (mean over seeds of each seed's share)."""
    tasks = {t: [v for v in g if any(r.act and r.act.histogram for r in v.complete)] for t, g in by_task(variants).items()}
    tasks = {t: g for t, g in tasks.items() if g}
    if not tasks:
        return None
    figure, axes = grid(len(tasks), 2, 3.4)
    data = {}
    for axis, (task, group) in zip(axes, tasks.items()):
        width = 0.8 / len(group)
        for index, variant in enumerate(group):
            acts = [r.act for r in variant.complete if r.act and r.act.histogram]
            segments = range(1, max(max(a.histogram) for a in acts) + 1)
            shares = [float(np.mean([100 * a.histogram.get(k, 0) / max(sum(a.histogram.values()), 1) for a in acts]))
                      for k in segments]
            offsets = [k - 0.4 + width * (index + 0.5) for k in segments]
            style = styles.line(variant)
            axis.bar(offsets, shares, width, color=style["color"], edgecolor="black", linewidth=0.5,
                     hatch=None if style["linestyle"] == "-" else "//", label=f"{variant.label} (n={len(acts)})")
            data[(task, variant.label)] = dict(zip(segments, shares))
        axis.set_xticks(sorted({k for (t, _), shares in data.items() if t == task for k in shares}))
        axis.set_xlabel("segments used with learned halting")
        axis.set_ylabel("examples (%)")
        axis.set_ylim(0, 103)
        axis.set_title(f"{task}: ACT, segments used")
        legend_outside(axis)
    return Drawn("act", "ACT: segments used", "Histogram of the segments each evaluation example used under learned "
                 "halting (the diagnostics subset; mean over seeds of each seed's share).", figure, data=data)
