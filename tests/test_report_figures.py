"""The report's figures draw the numbers of the tables and summaries: read back from the matplotlib
artists before saving (points, their values, panel counts, sizes, legend placement)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import write_fixture  # noqa: E402

from bench.report import figures_accuracy, figures_curves  # noqa: E402
from bench.report.contrasts import evaluate  # noqa: E402
from bench.report.load import load_runs  # noqa: E402
from bench.report.plotting import Styles  # noqa: E402
from bench.report.tables import accuracy_pivot  # noqa: E402


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    results = write_fixture(tmp_path_factory.mktemp("figures") / "results")
    variants, _ = load_runs(results)
    summaries = [json.loads(p.read_text()) for p in results.glob("maze-*/summary.json")]
    return variants, Styles(variants), summaries


def _visible(figure):
    return [axis for axis in figure.axes if axis.get_visible()]


def _check_size_and_legends(figure):
    width, height = figure.get_size_inches() * 100
    assert width == pytest.approx(1400) and height <= 2500
    figure.canvas.draw()
    inside = figure.bbox
    for axis in _visible(figure):
        # every label is drawn inside the figure (a label too long for the layout pushes text off it)
        texts = [axis.xaxis.label, axis.yaxis.label]
        for which in (axis.xaxis, axis.yaxis):   # the tick labels drawn: those inside the view limits
            low, high = sorted(which.get_view_interval())
            texts += [tick.label1 for tick in which.get_major_ticks() if low <= tick.get_loc() <= high]
        for text in (t for t in texts if t.get_visible() and t.get_text()):
            box = text.get_window_extent()
            assert box.x0 >= inside.x0 - 1 and box.x1 <= inside.x1 + 1, text.get_text()
        legend = axis.get_legend()
        if legend is not None:   # the legend sits right of its axes, not over the data, inside the figure
            assert legend.get_window_extent().x0 >= axis.get_window_extent().x1 - 1
            assert legend.get_window_extent().x1 <= inside.x1 + 1


def _pivot_means(variants):
    pivot = accuracy_pivot(variants)
    return {row["model"]: float(row["maze"].strip("*").split(" ")[0]) for _, row in pivot.iterrows()}


def test_dot_plot_points_are_the_pivot_table_sorted(fixture):
    variants, styles, _ = fixture
    drawn = figures_accuracy.accuracy_by_task(variants, styles)
    (axis,) = _visible(drawn.figure)
    points = [(c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in axis.containers]
    labels = [t.get_text() for t in axis.get_yticklabels()]
    assert len(points) == 3 == len(labels)
    means = _pivot_means(variants)
    for (x, y), label in zip(points, labels):
        assert x == pytest.approx(means[label], abs=0.05)
    assert [x for x, _ in points] == sorted(x for x, _ in points)        # best on top
    for container in axis.containers:                                    # error bars inside [0, 100]
        (bars,) = container.lines[2]
        segments = np.asarray(bars.get_segments())
        assert segments[..., 0].min() >= 0 and segments[..., 0].max() <= 100
    _check_size_and_legends(drawn.figure)


def test_pareto_plots_training_flops_against_the_pivot_means(fixture):
    variants, styles, summaries = fixture
    drawn = figures_accuracy.pareto(variants, styles)
    (axis,) = _visible(drawn.figure)
    means = _pivot_means(variants)
    plotted = {c.get_label(): (c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in axis.containers}
    assert set(plotted) == set(means)
    for label, (x, y) in plotted.items():
        assert x == pytest.approx(3e13) and y == pytest.approx(means[label], abs=0.05)
    frontier = axis.lines[-1]   # the step line: cheapest first, only improvements
    assert list(frontier.get_ydata()) == sorted(frontier.get_ydata())
    _check_size_and_legends(drawn.figure)


def test_extrapolation_lines_are_the_split_accuracies(fixture):
    variants, styles, summaries = fixture
    drawn = figures_accuracy.extrapolation(variants, styles)
    (axis,) = _visible(drawn.figure)
    lines = {line.get_label(): line for line in axis.lines}
    hrm = [s for s in summaries if s["model"] == "hrm" and s["status"] == "complete"]
    expected = [100 * np.mean([[p["exact_accuracy"] for p in s["curves"]["grid"] if p["x"] == x][0] for s in hrm])
                for x in (8, 12, 16)]
    assert list(lines["hrm"].get_xdata()) == [8, 12, 16]
    assert list(lines["hrm"].get_ydata()) == pytest.approx(expected)
    assert len(lines) == 3
    _check_size_and_legends(drawn.figure)


def test_learning_curves_are_the_seed_mean_of_the_logged_curves(fixture):
    variants, styles, summaries = fixture
    for against in ("step", "flops"):
        drawn = figures_curves.learning_curves(variants, styles, against)
        accuracy_axis, loss_axis = _visible(drawn.figure)
        assert len(loss_axis.lines) == 3            # one per variant; the diverged seed left out
        hrm = [s for s in summaries if s["model"] == "hrm" and s["status"] == "complete"]
        line = next(line for line in loss_axis.lines if line.get_label().startswith("hrm"))
        losses = np.array([[p["loss"] for p in s["train"]["curve"]] for s in hrm])
        assert list(line.get_ydata()) == pytest.approx(list(10 ** np.log10(losses).mean(0)))
        scale = 1.0 if against == "step" else 3e13 / 600
        assert list(line.get_xdata()) == pytest.approx([scale * p["step"] for p in hrm[0]["train"]["curve"]])
        _check_size_and_legends(drawn.figure)


def test_test_time_lines_and_the_trained_star(fixture):
    variants, styles, summaries = fixture
    drawn = figures_curves.test_time(variants, styles)
    (axis,) = _visible(drawn.figure)
    lines = [line for line in axis.lines if line.get_marker() != "*"]
    assert len(lines) == 3                      # transformer · segments, hrm · segments, looped · model.eval_loops
    looped = next(s for s in summaries if s["model"] == "looped")
    points = looped["diagnostics"]["test_time_compute"]["model.eval_loops"]["points"]
    line = next(line for line in lines if line.get_label().startswith("looped"))
    assert list(line.get_xdata()) == [p["x"] for p in points]
    assert list(line.get_ydata()) == pytest.approx([100 * p["exact_accuracy"] for p in points])
    stars = [line for line in axis.lines if line.get_marker() == "*"]
    assert len(stars) == 3 and 4 in [s.get_xdata()[0] for s in stars]   # looped trained with 4 loops
    _check_size_and_legends(drawn.figure)


def test_fixed_point_is_one_panel_per_task_with_every_state(fixture):
    variants, styles, summaries = fixture
    drawn = figures_curves.fixed_point(variants, styles)
    (axis,) = _visible(drawn.figure)
    labels = sorted(line.get_label() for line in axis.lines if not line.get_label().startswith("_"))
    assert labels == ["hrm: carry.z_high", "hrm: z_high", "hrm: z_low", "looped: z", "transformer: carry.z"]
    looped = next(s for s in summaries if s["model"] == "looped")
    trace = looped["diagnostics"]["fixed_point"]["model.eval_loops"]["residuals"]["z"]
    line = next(line for line in axis.lines if line.get_label() == "looped: z")
    assert list(line.get_xdata()) == [float(i + 1) for i, v in enumerate(trace) if v is not None]   # gap kept out
    assert list(line.get_ydata()) == pytest.approx([v for v in trace if v is not None])
    _check_size_and_legends(drawn.figure)


def test_act_histogram_bars_are_the_segments_used(fixture):
    variants, styles, summaries = fixture
    drawn = figures_curves.act_histogram(variants, styles)
    (axis,) = _visible(drawn.figure)
    bars = axis.patches
    hrm = [s["diagnostics"]["act"]["segments_histogram"] for s in summaries
           if s["model"] == "hrm" and s["status"] == "complete"]
    assert len(bars) == 8
    expected = [100 * np.mean([h[str(k)] / sum(h.values()) for h in hrm]) for k in range(1, 9)]
    assert [bar.get_height() for bar in bars] == pytest.approx(expected)
    assert sum(bar.get_height() for bar in bars) == pytest.approx(100.0)
    _check_size_and_legends(drawn.figure)


def test_forest_has_one_row_per_pair_at_its_difference(fixture):
    variants, _, _ = fixture
    pairs = evaluate(variants)
    drawn = figures_accuracy.forest(pairs)
    (axis,) = _visible(drawn.figure)
    centres = [line.get_xdata()[0] for line in axis.lines if line.get_marker() == "o"]
    assert centres == pytest.approx([100 * p.test.difference for p in pairs])
    assert len(axis.get_yticklabels()) == len(pairs) + len({p.contrast.name for p in pairs})
    _check_size_and_legends(drawn.figure)


def test_forest_wraps_long_labels_inside_the_figure(fixture):
    """Ablations with several overrides have labels of 150+ characters: they wrap, and the plot and its
    axis label stay inside the figure."""
    import dataclasses
    variants, _, _ = fixture
    long = "hrm (budget=flops, gradient=last_cycle, max_flops=6650953728000.0, segments=1, progressive_alpha=0.5)"
    pairs = [dataclasses.replace(p, treatment=long, control=long) for p in evaluate(variants)]
    drawn = figures_accuracy.forest(pairs)
    (axis,) = _visible(drawn.figure)
    assert max(len(line) for t in axis.get_yticklabels() for line in t.get_text().split("\n")) \
        <= figures_accuracy.FOREST_LABEL_WIDTH
    _check_size_and_legends(drawn.figure)


def test_forest_rows_are_as_tall_as_their_labels(fixture):
    """Four-line labels among one-line ones (the study's ablations beside its main pairs) each get
    the height they need: no label runs into the next, and each marker sits at its label."""
    import dataclasses
    variants, _, _ = fixture
    long = "hrm (budget=flops, gradient=last_cycle, max_flops=6650953728000.0, segments=1, progressive_alpha=0.5)"
    first = evaluate(variants)[0]   # one contrast, so the rows stay in this order: two long, six short
    pairs = [dataclasses.replace(first, treatment=long, control=long) if i % 8 < 2 else first for i in range(24)]
    drawn = figures_accuracy.forest(pairs)
    (axis,) = _visible(drawn.figure)
    _check_size_and_legends(drawn.figure)
    labels = axis.get_yticklabels()
    assert max(t.get_text().count("\n") for t in labels) >= 3 and min(t.get_text().count("\n") for t in labels) == 0
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda box: box.y0)
    assert all(lower.y1 <= upper.y0 + 0.5 for lower, upper in zip(boxes, boxes[1:]))
    centres_y = [line.get_ydata()[0] for line in axis.lines if line.get_marker() == "o"]
    label_y = [t.get_position()[1] for t in labels if t.get_fontweight() != "bold"]
    assert sorted(centres_y) == pytest.approx(sorted(label_y))


def test_a_forest_too_tall_for_one_figure_is_cut_into_parts(fixture):
    """120 four-line pairs need ≈ 72 in: they go into parts within FOREST_MAX_INCHES, each pair once and
    in order, each part drawn without overlapping labels (one squeezed figure would overlap them)."""
    import dataclasses
    variants, _, _ = fixture
    long = "hrm (budget=flops, gradient=last_cycle, max_flops=6650953728000.0, segments=1, progressive_alpha=0.5)"
    first = evaluate(variants)[0]
    pairs = [dataclasses.replace(first, treatment=f"{long} #{i}", control=long) for i in range(120)]
    parts = figures_accuracy.forest_parts(pairs)
    assert len(parts) >= 3 and [p.treatment for part in parts for p in part] == [p.treatment for p in pairs]
    for number, part in enumerate(parts, start=1):
        drawn = figures_accuracy.forest(part, number, len(parts))
        assert drawn.name == f"forest_{number}" and f"part {number} of {len(parts)}" in drawn.title
        _check_size_and_legends(drawn.figure)
        (axis,) = _visible(drawn.figure)
        boxes = sorted((t.get_window_extent() for t in axis.get_yticklabels()), key=lambda box: box.y0)
        assert all(lower.y1 <= upper.y0 + 0.5 for lower, upper in zip(boxes, boxes[1:]))
        assert [t.get_text() for t in axis.get_yticklabels()][0] == first.contrast.name   # each part is headed
        assert len(drawn.data["rows"]) == len(part)
    assert figures_accuracy.forest_parts(pairs[:8]) == [pairs[:8]]   # the study's size: one figure


def test_one_colour_and_marker_per_model_in_every_figure(fixture):
    variants, styles, _ = fixture
    seen: dict[str, set] = {}
    for make in (figures_accuracy.extrapolation, figures_curves.test_time):
        drawn = make(variants, styles)
        for line in _visible(drawn.figure)[0].lines:
            model = line.get_label().split(" ")[0].split(":")[0]
            if not line.get_label().startswith("_") and line.get_marker() != "*":
                seen.setdefault(model, set()).add((line.get_color(), line.get_marker()))
    assert set(seen) == {"hrm", "looped", "transformer"}
    assert all(len(styles_) == 1 for styles_ in seen.values())
    assert len({next(iter(s)) for s in seen.values()}) == 3


def test_deepthinking_plot_has_one_line_per_split(tmp_path):
    results = write_fixture(tmp_path / "results")
    path = next(results.glob("maze-looped-*/summary.json"))
    summary = json.loads(path.read_text())
    curve = summary["diagnostics"]["test_time_compute"]["model.eval_loops"]
    larger = {**curve, "points": [{**p, "exact_accuracy": p["exact_accuracy"] / 2} for p in curve["points"]]}
    summary["diagnostics"]["test_time_compute_by_split"] = {"test": {"model.eval_loops": curve},
                                                            "test_grid12": {"model.eval_loops": larger}}
    path.write_text(json.dumps(summary))
    variants, _ = load_runs(results)
    drawn = figures_curves.test_time(variants, Styles(variants))
    (axis,) = _visible(drawn.figure)              # only the looped run has per-split curves
    lines = {line.get_label(): line for line in axis.lines if line.get_marker() != "*"}
    assert set(lines) == {"test", "test_grid12"}
    for split, entry in (("test", curve), ("test_grid12", larger)):
        assert list(lines[split].get_ydata()) == pytest.approx([100 * p["exact_accuracy"] for p in entry["points"]])
    assert [t.get_text() for t in drawn.figure.legends[0].get_texts()] == ["test", "test_grid12"]
    _check_size_and_legends(drawn.figure)
