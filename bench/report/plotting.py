"""Shared figure machinery: one colour and marker per model, line styles for a model's variants,
figure sizes for a 1,400-px page, legends outside the axes, compressed PNG output.

Figure functions (bench/report/figures_*.py) return a `Drawn` that still holds the matplotlib figure,
so tests can read the plotted data before `save` turns it into PNG bytes and closes it.
"""
from __future__ import annotations

import io
import math
import warnings as python_warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report.contrasts import main_variants
from bench.report.load import Variant, by_task
from bench.results import atomic_write_bytes

WIDTH_IN = 14.0          # at DPI: 1,400 px
DPI = 100
MAX_HEIGHT_IN = 25.0     # 2,500 px
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22", "#393b79", "#637939")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", ":", "-.")


@dataclass
class Drawn:
    name: str
    title: str
    caption: str
    figure: Any                         # matplotlib.figure.Figure until saved
    png: bytes = b""
    data: dict[str, Any] = field(default_factory=dict)   # what was plotted, for tests and the text


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 8, "axes.grid": True,
                         "grid.alpha": 0.3, "svg.hashsalt": "recurrent-bench"})
    return plt


class Styles:
    """Model → colour and marker (sorted model names, the same in every figure of a report);
    a model's variants → line style and marker fill (its main variant — at its preset, see
    `main_variants` — solid and filled, ablations dashed / dotted and hollow)."""

    def __init__(self, variants: list[Variant]):
        models = sorted({v.model for v in variants})
        self.model = {m: (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(models)}
        main: dict[str, int] = {}   # label → on how many tasks it is the model's main variant
        for group in by_task(variants).values():
            for variant in main_variants(group):
                main[variant.label] = main.get(variant.label, 0) + 1
        labels: dict[str, list[str]] = {}
        for variant in sorted(variants, key=lambda v: (-main.get(v.label, 0), v.label)):
            labels.setdefault(variant.model, [])
            if variant.label not in labels[variant.model]:
                labels[variant.model].append(variant.label)
        self.index = {label: i for names in labels.values() for i, label in enumerate(names)}

    def colour(self, variant: Variant) -> str:
        return self.model[variant.model][0]

    def line(self, variant: Variant) -> dict[str, Any]:
        """Keyword arguments for axis.plot / errorbar."""
        colour, marker = self.model[variant.model]
        index = self.index.get(variant.label, 0)
        return {"color": colour, "marker": marker, "linestyle": LINESTYLES[index % len(LINESTYLES)],
                "markerfacecolor": colour if index == 0 else "white", "markeredgecolor": colour}


def grid(count: int, columns: int, panel_height: float):
    """(figure, flat list of `count` axes) in a constrained-layout grid no taller than 2,500 px."""
    plt = pyplot()
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    height = min(MAX_HEIGHT_IN, max(3.0, panel_height * rows + 0.6))
    figure, axes = plt.subplots(rows, columns, figsize=(WIDTH_IN, height), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for axis in flat[count:]:
        axis.set_visible(False)
    return figure, flat[:count]


def legend_outside(axis, **kwargs) -> None:
    """The axis's legend to its right, outside the data."""
    handles, labels = axis.get_legend_handles_labels()
    if handles:
        axis.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                    frameon=False, **kwargs)


def percent_axis(axis, which: str = "y") -> None:
    """Exact accuracy in percent, from a little below 0 (points at 0 stay visible) to 100."""
    setter, label = (axis.set_ylim, axis.set_ylabel) if which == "y" else (axis.set_xlim, axis.set_xlabel)
    setter(-3, 103)
    label("exact accuracy (%)")


def log_axis(axis, which: str = "x") -> None:
    """Log axis labelled at 1-2-5 steps in engineering notation (200k, 1M)."""
    from matplotlib import ticker
    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    target.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(ticker.EngFormatter(sep=""))
    target.set_minor_formatter(ticker.NullFormatter())


def save(drawn: Drawn, out: Path) -> Drawn:
    """Render to a palette PNG (256 colours, optimised: a fraction of the RGBA size), write
    out/figures/<name>.png, close the figure. Same runs → same bytes (no dates in the file)."""
    from PIL import Image
    plt = pyplot()
    buffer = io.BytesIO()
    with python_warnings.catch_warnings():   # constrained layout may warn on odd data; the figure is drawn
        python_warnings.simplefilter("ignore", UserWarning)
        drawn.figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(drawn.figure)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    compressed = io.BytesIO()
    image.save(compressed, format="png", optimize=True)
    drawn.png = compressed.getvalue()
    directory = out / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / f"{drawn.name}.png", drawn.png)
    drawn.figure = None
    return drawn
