"""Charts of a run's progress (progress.png, overlays of several runs) and of the retraining
rounds, drawn with matplotlib: an optional dependency (`pip install -e '.[plots]'`).

Confidences are drawn on a logit axis, log(p / (1 - p)), with ticks labelled as probabilities:
0.9, 0.99, 0.999, ... are evenly spaced, so 0.99 and 0.9999 are as far apart as 0.5 and 0.99
(a linear axis puts everything that matters in the top pixel), and low confidences early in a
run (0.01, 0.001) still fit. matplotlib is imported only inside the functions that draw, and
only through `matplotlib.figure.Figure` and its Agg canvas, so no pyplot state is touched.
It draws only: the files are read by `runs.readers` (a run) and `studies.retrain_report`
(a retraining experiment).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxfool.base import fileio

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PlotsUnavailable",
    "RunCurve",
    "available",
    "progress_figure",
    "retrain_confidence_figure",
    "save_figure",
    "write_progress",
    "x_values",
]

INSTALL_HINT = "matplotlib is not installed; pip install -e '.[plots]' for progress.png"
FIGSIZE = (8.0, 6.0)  # inches; at DPI this is 960 x 720 pixels
DPI = 120
# A confidence of exactly 1.0 (float64 exp of a log-probability above -1e-16) sits at infinity
# on the logit axis: values are clipped into [P_CLIP, 1 - P_CLIP], i.e. 12 nines at most.
P_CLIP = 1e-12
# (row key, legend name, line style) of the archive statistics in the top panel.
STATS = (
    ("median_confidence", "median", "-"),
    ("mean_confidence", "mean", "--"),
    ("min_confidence", "min", ":"),
)
# (num_classes_above key, line style) of the bottom panel.
THRESHOLDS = (("0.99", "-"), ("0.9999", "--"))
# (row key, legend name, line style) of the retraining chart: confidences, then fractions.
RETRAIN_CONFIDENCES = (("median_confidence", "median", "-"), ("max_confidence", "max", "--"))
RETRAIN_FRACTIONS = (
    ("test_accuracy", "test accuracy", "-"),
    ("rejects_previous_trained", "rejects prev. (trained)", "--"),
    ("rejects_previous_heldout", "rejects prev. (held out)", ":"),
)
SINGLE_COLOUR = "#1f4e9c"
KEY_COLOUR = "0.25"  # the line-style key's lines, when colours name the runs
REFERENCE_COLOUR = "0.4"  # a published figure drawn for comparison (--reference)


class PlotsUnavailable(RuntimeError):
    """matplotlib cannot be imported: charts are skipped, with this message saying why."""


def available() -> bool:
    """Whether matplotlib can be imported (charts can be drawn)."""
    try:
        _figure_class()
    except PlotsUnavailable:
        return False
    return True


def _figure_class() -> type[Figure]:
    """matplotlib's Figure class, imported on first use; PlotsUnavailable without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotsUnavailable(INSTALL_HINT) from e
    return Figure


def _new_figure(rows: int, height_ratios: Sequence[float]) -> tuple[Figure, list[Axes]]:
    """A figure of `rows` stacked panels sharing the x axis, laid out with constrained layout."""
    fig = _figure_class()(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": list(height_ratios)})
    return fig, list(axes)


# --- the data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCurve:
    """One run's metrics rows and what it takes to draw them.

    population: images per generation; initial_population: images scored before generation 1
    (defaults to `population`). Both only serve x="evaluations" for rows that lack the
    "evaluations" key. num_classes: the archive's size, the ceiling of the class counts.
    """

    label: str
    rows: Sequence[Mapping[str, Any]]
    population: int | None = None
    initial_population: int | None = None
    num_classes: int | None = None


def as_run(run: RunCurve | Sequence[Any]) -> RunCurve:
    """A RunCurve from itself or from a tuple (label, rows[, population])."""
    return run if isinstance(run, RunCurve) else RunCurve(*run)


def x_values(run: RunCurve, x: str = "generation") -> np.ndarray:
    """The x coordinate of each row: its generation, or the images evaluated by then (the row's
    "evaluations", else generation * population + initial population)."""
    if x == "generation":
        return np.array([r["generation"] for r in run.rows], np.float64)
    if x != "evaluations":
        raise ValueError(f"x must be 'generation' or 'evaluations', got {x!r}")
    if all("evaluations" in r for r in run.rows):
        return np.array([r["evaluations"] for r in run.rows], np.float64)
    if run.population is None:
        raise ValueError(f"{run.label}: rows lack 'evaluations'; x='evaluations' needs population")
    initial = run.population if run.initial_population is None else run.initial_population
    return np.array(
        [r.get("evaluations", r["generation"] * run.population + initial) for r in run.rows],
        np.float64,
    )


def confidence_values(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """rows[i][key] as float64, clipped into [P_CLIP, 1 - P_CLIP] for the logit axis; NaN where
    the key is absent or None, or the archive was empty (occupied == 0: no confidence at all)."""
    values = [
        math.nan if r.get(key) is None or r.get("occupied", 1) == 0 else float(r[key]) for r in rows
    ]
    return np.clip(np.array(values, np.float64), P_CLIP, 1.0 - P_CLIP)


def fraction_values(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """rows[i][key] as float64, NaN where absent or None (the first round has no rejections)."""
    return np.array([math.nan if r.get(key) is None else float(r[key]) for r in rows], np.float64)


def count_values(rows: Sequence[Mapping[str, Any]], threshold: str) -> np.ndarray:
    """Classes at or above `threshold` per row (num_classes_above), NaN where not recorded."""
    return np.array(
        [r.get("num_classes_above", {}).get(threshold, math.nan) for r in rows], np.float64
    )


# --- axes ---------------------------------------------------------------------------------------


def probability_label(p: float) -> str:
    """A tick label for probability p on the logit axis: '0.5', '0.99', '0.001', and powers of
    ten beyond six nines ('1-10^-8') and below 0.001 ('10^-5')."""
    if not 0.0 < p < 1.0:
        return ""
    if math.isclose(p, 0.5):
        return "0.5"
    tail = 1.0 - p if p > 0.5 else p
    n = -math.log10(tail)
    if not math.isclose(n, round(n), abs_tol=1e-6):  # not a decade: enough digits to tell
        return f"{p:.{math.ceil(n) + 1}f}".rstrip("0")
    n = round(n)
    if p > 0.5:
        return f"0.{'9' * n}" if n <= 6 else f"$1-10^{{-{n}}}$"
    return f"{p:.{n}f}" if n <= 3 else f"$10^{{-{n}}}$"


def confidence_axis(ax: Axes, label: str) -> None:
    """Logit y axis with probability tick labels at 0.5 and the decades (0.9, 0.99, ...)."""
    from matplotlib.ticker import FuncFormatter, LogitLocator, NullLocator

    ax.set_yscale("logit", nonpositive="clip")
    ax.yaxis.set_major_locator(LogitLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda p, _: probability_label(p)))
    ax.yaxis.set_minor_locator(NullLocator())  # minor ticks cost a third of the drawing time
    ax.set_ylabel(label)
    ax.grid(True, which="major", color="0.88", linewidth=0.8)


def set_confidence_limits(ax: Axes, values: Sequence[np.ndarray]) -> None:
    """y limits from the data, widened to whole decades of the logit axis so that the end ticks
    show (say 0.9 to 0.99999), and at least 0.5 .. 0.99 when the data is flat."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.array([0.5, 0.99])])
    logit = np.log10(finite / (1.0 - finite))
    lo, hi = math.floor(logit.min() - 0.05), math.ceil(logit.max() + 0.05)
    ax.set_ylim(1.0 / (1.0 + 10.0**-lo), 1.0 / (1.0 + 10.0**-hi))


def x_axis(ax: Axes, x: str) -> None:
    """The shared x axis: generations, or images evaluated in engineering notation (200k)."""
    if x == "evaluations":
        from matplotlib.ticker import EngFormatter

        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel("images evaluated")
    else:
        ax.set_xlabel("generation")


def key_handle(style: str, colour: str, label: str, marker: str | None = None) -> Any:
    """A legend entry: a line of `style` and `colour` that is not in the plot."""
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle=style, color=colour, marker=marker, label=label)


def legend_right(ax: Axes, handles: list) -> Any:
    """The line-style key of a panel, outside it on its right (never over the data)."""
    return ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        frameon=False,
    )


def legend_top(fig: Figure, handles: list) -> Any:
    """The runs' colours, in columns across the top of the figure (above the panels, so that
    long run names do not narrow them)."""
    longest = max(len(h.get_label()) for h in handles)
    columns = max(1, min(len(handles), 100 // (longest + 8)))
    return fig.legend(handles=handles, loc="outside upper center", ncols=columns, frameon=False)


def run_colours(n: int) -> list[str]:
    """One colour per run: a single dark blue for one run, else the tab10 cycle."""
    if n == 1:
        return [SINGLE_COLOUR]
    tab10 = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    ]  # fmt: skip
    return [tab10[i % len(tab10)] for i in range(n)]


# --- the progress chart -------------------------------------------------------------------------


def check_reference(value: float, label: str) -> None:
    """ValueError unless a reference line can be drawn: 0 < value < 1 (a logit axis) and a label."""
    if not 0.0 < value < 1.0 or not label:
        raise ValueError(f"reference {value}:{label!r}: needs 0 < confidence < 1 and a label")


def progress_figure(
    runs: Sequence[RunCurve | Sequence[Any]],
    title: str | None = None,
    x: str = "generation",
    references: Sequence[tuple[float, str]] = (),
) -> Figure:
    """The archive over a run, as in the paper's figures. Top: median (solid), mean (dashed) and
    min (dotted) confidence of the elites. Bottom: classes at >= 0.99 (solid) and >= 0.9999
    (dashed). Several runs: one colour each, named in a legend. Each data line is labelled
    'RUN: STAT' (its legend is drawn from separate key handles). `references`: (confidence,
    label) pairs drawn as grey dash-dot lines across the top panel, labelled at their right end
    (a published figure to compare with, such as the paper's median)."""
    runs = [as_run(r) for r in runs]
    for value, label in references:
        check_reference(value, label)
    fig, (top, bottom) = _new_figure(2, (2.0, 1.0))
    colours = run_colours(len(runs))
    confidence_axis(top, "confidence of the elites")
    drawn = []
    for run, colour in zip(runs, colours, strict=True):
        xs = x_values(run, x)
        # a run with one row (stopped before its second log line) is a point: a line alone
        # would draw nothing
        marker = "o" if len(xs) == 1 else None
        for key, name, style in STATS:
            ys = confidence_values(run.rows, key)
            top.plot(
                xs, ys, linestyle=style, color=colour, linewidth=1.6, marker=marker,
                label=f"{run.label}: {name}",
            )  # fmt: skip
            drawn.append(ys)
        for threshold, style in THRESHOLDS:
            ys = count_values(run.rows, threshold)
            bottom.plot(
                xs, ys, linestyle=style, color=colour, linewidth=1.6, marker=marker,
                label=f"{run.label}: ≥ {threshold}",
            )  # fmt: skip
    for value, label in references:
        top.axhline(value, color=REFERENCE_COLOUR, linestyle="-.", linewidth=1.2, label=label)
        top.annotate(
            label, xy=(0.99, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
            fontsize="small", color=REFERENCE_COLOUR,
        )  # fmt: skip
        drawn.append(np.array([value]))
    set_confidence_limits(top, drawn)
    class_count_axis(bottom, runs)
    x_axis(bottom, x)
    key = KEY_COLOUR if len(runs) > 1 else SINGLE_COLOUR
    if len(runs) > 1:
        legend_top(fig, [key_handle("-", c, r.label) for r, c in zip(runs, colours, strict=True)])
    legend_right(top, [key_handle(s, key, n) for _, n, s in STATS])
    legend_right(bottom, [key_handle(s, key, f"≥ {t}") for t, s in THRESHOLDS])
    if title is None and len(runs) == 1:
        title = runs[0].label
    if title:
        top.set_title(title, fontsize="medium")  # under the runs legend: no overlap
    return fig


def class_count_axis(ax: Axes, runs: Sequence[RunCurve]) -> None:
    """Integer y axis of class counts, from 0 up to the archive size when the runs agree on it
    (a thin line there: 'all classes')."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, steps=[1, 2, 2.5, 5, 10]))
    ax.set_ylabel("classes")
    ax.grid(True, color="0.88", linewidth=0.8)
    sizes = {r.num_classes for r in runs}
    if len(sizes) == 1 and None not in sizes:
        (n,) = sizes
        ax.axhline(n, color="0.6", linewidth=0.8, zorder=0)
        ax.set_ylim(0, n * 1.08 if n else 1)
    else:
        ax.set_ylim(bottom=0)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Writes `fig` as a PNG of its own size (figsize x dpi) atomically; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # the figure's canvas becomes Agg: no backend, no pyplot
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return fileio.write_bytes(path, buf.getvalue())


def write_progress(
    path: str | Path,
    rows: Sequence[Mapping[str, Any]],
    title: str | None = None,
    population: int | None = None,
    num_classes: int | None = None,
) -> Path:
    """progress.png of one run from its metrics rows (the run loop rewrites it every chunk)."""
    run = RunCurve(title or "", rows, population, num_classes=num_classes)
    return save_figure(progress_figure([run], title=title), path)


# --- the retraining chart -----------------------------------------------------------------------


def retrain_confidence_figure(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    title: str | None = None,
) -> Figure:
    """Per retraining round (network DNN_i): top, the median (solid) and max (dashed) confidence
    of the fooling images evolved against DNN_i; bottom, DNN_i's test accuracy and how many of
    round i-1's fooling images it puts in the fooling class (trained on / held out). `rows`
    are retrain.retrain's rows, or a dict label -> rows for several series in one chart."""
    series = dict(rows) if isinstance(rows, Mapping) else {"": rows}
    fig, (top, bottom) = _new_figure(2, (1.6, 1.0))
    if len(series) > 2:  # the legend of series above the panels: keep the panels' height
        fig.set_size_inches(FIGSIZE[0], FIGSIZE[1] + 0.2 * (len(series) - 2))
    colours = run_colours(len(series))
    confidence_axis(top, "confidence of the new\nfooling images")
    drawn = []
    present = set()
    for (label, rs), colour in zip(series.items(), colours, strict=True):
        xs = np.array([r["iteration"] for r in rs], np.float64)
        prefix = f"{label}: " if label else ""
        for key, name, style in RETRAIN_CONFIDENCES:
            ys = confidence_values(rs, key)
            top.plot(xs, ys, linestyle=style, color=colour, marker="o", markersize=4,
                     linewidth=1.6, label=prefix + name)  # fmt: skip
            drawn.append(ys)
        for key, name, style in RETRAIN_FRACTIONS:
            ys = fraction_values(rs, key)
            if np.isnan(ys).all():
                continue
            present.add(key)
            bottom.plot(xs, ys, linestyle=style, color=colour, marker="o", markersize=4,
                        linewidth=1.6, label=prefix + name)  # fmt: skip
    set_confidence_limits(top, drawn)
    fraction_axis(bottom)
    bottom.set_xlabel("iteration i (network DNN_i)")
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    key = KEY_COLOUR if len(series) > 1 else SINGLE_COLOUR
    if len(series) > 1:
        legend_top(fig, [key_handle("-", c, s) for s, c in zip(series, colours, strict=True)])
    legend_right(top, [key_handle(s, key, n, "o") for _, n, s in RETRAIN_CONFIDENCES])
    legend_right(
        bottom, [key_handle(s, key, n, "o") for k, n, s in RETRAIN_FRACTIONS if k in present]
    )
    top.set_title(
        title or "fooling images evolved against each retrained network", fontsize="medium"
    )
    return fig


def fraction_axis(ax: Axes) -> None:
    """A 0..100% y axis."""
    from matplotlib.ticker import PercentFormatter

    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("fraction")
    ax.grid(True, color="0.88", linewidth=0.8)
