"""jaxfool.plots and experiments/plot.py: the lines drawn are the rows' values, the PNG is a
whole image of the figure's size, run directories are read strictly, and without matplotlib
every entry point says how to get it."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image

from jaxfool import plots
from jaxfool.runs import readers
from jaxfool.studies import retrain_report

from . import script_runner
from .conftest import REPO

pytest.importorskip("matplotlib")

PLOT = [sys.executable, str(REPO / "experiments" / "plot.py")]
PIXELS = (round(plots.FIGSIZE[0] * plots.DPI), round(plots.FIGSIZE[1] * plots.DPI))


def metrics_rows(n: int = 6, every: int = 5, population: int = 100, classes: int = 10):
    """Metrics rows like runs.loop.progress_row's: confidences rising towards 1."""
    rows = []
    for i in range(1, n + 1):
        med = 1.0 - 10.0 ** (-1.0 - 4.0 * i / n)
        rows.append(
            {
                "generation": i * every,
                "evaluations": population + i * every * population,
                "occupied": classes,
                "median_confidence": med,
                "mean_confidence": 1.0 - 3.0 * (1.0 - med),
                "min_confidence": 0.01 * i,
                "num_classes_above": {"0.99": min(classes, i + 2), "0.999": i, "0.9999": i - 1},
            }
        )
    return rows


def retrain_rows(rounds: int = 4):
    """Rows like retrain.retrain's: round 1 has no rejection rates."""
    rows = []
    for i in range(1, rounds + 1):
        row = {
            "iteration": i,
            "network": f"DNN_{i}",
            "outputs": 10 if i == 1 else 11,
            "test_accuracy": 0.99 - 0.001 * i,
            "median_confidence": 1.0 - 10.0 ** -(5 - i / 2),
            "max_confidence": 1.0 - 10.0 ** -(7 - i / 2),
            "min_confidence": 0.5,
        }
        if i > 1:
            row |= {"rejects_previous_trained": 1.0, "rejects_previous_heldout": 0.9 - 0.05 * i}
        rows.append(row)
    return rows


def write_run(path, rows, summary=None, config=None):
    """A synthetic run directory: metrics.jsonl (+ summary.json, config.json)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def legend_texts(legend):
    return [t.get_text() for t in legend.get_texts()]


def drawn(fig):
    """The figure drawn on an Agg canvas (tick labels exist only after a draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig


# --- tick labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, label",
    [
        (0.5, "0.5"),
        (0.9, "0.9"),
        (0.99, "0.99"),
        (0.9999, "0.9999"),
        (1 - 1e-6, "0.999999"),
        (1 - 1e-8, "$1-10^{-8}$"),
        (0.1, "0.1"),
        (0.001, "0.001"),
        (1e-5, "$10^{-5}$"),
        (0.0, ""),
        (1.0, ""),
    ],
)
def test_probability_label(p, label):
    assert plots.probability_label(p) == label


# --- progress_figure -----------------------------------------------------------------------------


def test_one_run_draws_the_rows_values():
    rows = metrics_rows()
    fig = plots.progress_figure([plots.RunCurve("run A", rows, 100, num_classes=10)])
    top, bottom = fig.axes
    gens = [r["generation"] for r in rows]
    lines = lines_by_label(top)
    for key, name, style in plots.STATS:
        line = lines[f"run A: {name}"]
        np.testing.assert_array_equal(line.get_xdata(), gens)
        np.testing.assert_allclose(line.get_ydata(), [r[key] for r in rows], rtol=0, atol=1e-15)
        assert line.get_linestyle() == style
    lines = lines_by_label(bottom)
    for threshold, style in plots.THRESHOLDS:
        line = lines[f"run A: ≥ {threshold}"]
        np.testing.assert_array_equal(
            line.get_ydata(), [r["num_classes_above"][threshold] for r in rows]
        )
        assert line.get_linestyle() == style
    assert top.get_yscale() == "logit"
    assert legend_texts(top.get_legend()) == ["median", "mean", "min"]
    assert legend_texts(bottom.get_legend()) == ["≥ 0.99", "≥ 0.9999"]
    assert not fig.legends  # one run: no legend of runs
    assert top.get_title() == "run A"
    assert bottom.get_ylim()[1] >= 10  # the archive's size fits


def test_confidence_ticks_show_the_nines():
    fig = drawn(plots.progress_figure([("run", metrics_rows())]))
    labels = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert {"0.9", "0.99", "0.999", "0.9999", "0.99999"} <= labels
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= 0.01 and 1 - 1e-5 <= hi < 1  # every row within the axis


def test_several_runs_one_colour_each_and_a_legend_of_runs():
    runs = [("cppn", metrics_rows()), ("direct", metrics_rows(n=4)), ("third", metrics_rows())]
    fig = plots.progress_figure(runs, title="overlay")
    top = fig.axes[0]
    lines = lines_by_label(top)
    colours = {label: lines[f"{label}: median"].get_color() for label, _ in runs}
    assert len(set(colours.values())) == 3
    for label, _ in runs:  # a run's statistics share its colour
        assert lines[f"{label}: min"].get_color() == colours[label]
    (legend,) = fig.legends
    assert legend_texts(legend) == ["cppn", "direct", "third"]
    assert [h.get_color() for h in legend.legend_handles] == list(colours.values())
    assert legend_texts(top.get_legend()) == ["median", "mean", "min"]
    assert top.get_title() == "overlay"


def test_reference_lines_cross_the_confidence_panel_with_their_labels():
    rows = metrics_rows()  # medians from 0.99 up: a reference at 0.5 widens the axis to show it
    fig = plots.progress_figure([("run", rows)], references=[(0.5, "paper: 50%")])
    top = fig.axes[0]
    (line,) = [ln for ln in top.get_lines() if ln.get_label() == "paper: 50%"]
    np.testing.assert_array_equal(line.get_ydata(), [0.5, 0.5])
    assert line.get_linestyle() == "-."
    assert [t.get_text() for t in top.texts] == ["paper: 50%"]
    assert top.get_ylim()[0] < 0.5
    assert legend_texts(top.get_legend()) == ["median", "mean", "min"]  # not in the key
    with pytest.raises(ValueError, match="needs 0 < confidence < 1"):
        plots.progress_figure([("run", rows)], references=[(1.0, "all")])


def test_x_evaluations_from_rows_or_population():
    rows = metrics_rows(population=50)
    run = plots.RunCurve("r", rows)
    np.testing.assert_array_equal(
        plots.x_values(run, "evaluations"), [r["evaluations"] for r in rows]
    )
    bare = [{k: v for k, v in r.items() if k != "evaluations"} for r in rows]
    with pytest.raises(ValueError, match="population"):
        plots.x_values(plots.RunCurve("r", bare), "evaluations")
    run = plots.RunCurve("r", bare, population=50, initial_population=200)
    np.testing.assert_array_equal(
        plots.x_values(run, "evaluations"), [r["generation"] * 50 + 200 for r in rows]
    )
    fig = plots.progress_figure([plots.RunCurve("r", bare, population=50)], x="evaluations")
    line = lines_by_label(fig.axes[0])["r: median"]
    np.testing.assert_array_equal(line.get_xdata(), [r["generation"] * 50 + 50 for r in rows])
    assert fig.axes[1].get_xlabel() == "images evaluated"
    with pytest.raises(ValueError, match="'generation' or 'evaluations'"):
        plots.x_values(run, "seconds")


def test_certain_and_empty_archives_stay_finite_on_the_axis():
    rows = metrics_rows(n=3)
    rows[0] |= {"occupied": 0, "median_confidence": 0.0, "mean_confidence": 0.0}
    rows[2]["median_confidence"] = 1.0  # exp of a log-probability above -1e-16
    fig = plots.progress_figure([("r", rows)])
    y = lines_by_label(fig.axes[0])["r: median"].get_ydata()
    assert math.isnan(y[0])  # no elites, no confidence
    assert y[2] == 1 - plots.P_CLIP
    assert fig.axes[0].get_ylim()[1] < 1


def test_a_run_of_one_row_is_drawn_as_points():
    """A run stopped before its second log line has one row: lines alone would leave the
    panels blank, so its values are drawn as markers (and only then)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb

    fig = plots.progress_figure([("stopped at 25", metrics_rows(n=1, every=25))])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    for ax in fig.axes:
        lines = [line for line in ax.get_lines() if line.get_label().startswith("stopped")]
        assert lines and all(line.get_marker() == "o" for line in lines)
        colour = np.round(np.array(to_rgb(lines[0].get_color())) * 255).astype(int)
        box = ax.get_window_extent()  # the panel, in pixels from the bottom left
        rows = slice(int(pixels.shape[0] - box.y1), int(pixels.shape[0] - box.y0))
        panel = pixels[rows, int(box.x0) : int(box.x1)]
        assert np.sum(np.all(np.abs(panel - colour) <= 8, axis=-1)) >= 20  # the points show
    many = plots.progress_figure([("r", metrics_rows())])
    assert all(line.get_marker() in ("None", None, "") for line in many.axes[0].get_lines())


def test_empty_rows_draw_empty_axes():
    fig = plots.progress_figure([("nothing yet", [])])
    assert all(len(line.get_xdata()) == 0 for line in fig.axes[0].get_lines())


# --- PNG output ---------------------------------------------------------------------------------


def test_save_figure_writes_a_png_of_the_figure_size(tmp_path):
    path = plots.save_figure(plots.progress_figure([("r", metrics_rows())]), tmp_path / "a.png")
    assert path == tmp_path / "a.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == PIXELS
        im.load()  # the whole image decodes
    assert sorted(os.listdir(tmp_path)) == ["a.png"]  # no temporary file left beside it


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "progress.png"
    path.write_bytes(b"old")
    fig = plots.progress_figure([("r", metrics_rows())])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.save_figure(fig, path)
    assert path.read_bytes() == b"old"
    replaced = []
    monkeypatch.setattr(os, "replace", lambda a, b: replaced.append((a, b)) or os.rename(a, b))
    plots.save_figure(plots.progress_figure([("r", metrics_rows())]), path)
    ((tmp, dest),) = replaced
    assert os.path.dirname(tmp) == str(tmp_path) and dest == path  # renamed from beside it
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(os.listdir(tmp_path)) == ["progress.png"]


def test_write_progress_is_fast_for_200_rows(tmp_path):
    rows = metrics_rows(n=200, population=1000, classes=1000)
    path = tmp_path / "progress.png"
    plots.write_progress(path, rows, title="warm-up", population=1000)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        plots.write_progress(path, rows, title="lite0, cppn", population=1000, num_classes=1000)
        times.append(time.perf_counter() - t0)
    assert min(times) < 1.0, times  # about 0.15 s on one free core; loose for busy machines
    with Image.open(path) as im:
        assert im.size == PIXELS


# --- the retraining chart ------------------------------------------------------------------------


def test_retrain_figure_draws_each_round():
    rows = retrain_rows()
    fig = plots.retrain_confidence_figure(rows)
    top, bottom = fig.axes
    lines = lines_by_label(top)
    for key, name, _ in plots.RETRAIN_CONFIDENCES:
        np.testing.assert_array_equal(lines[name].get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(lines[name].get_ydata(), [r[key] for r in rows], atol=1e-15)
    lines = lines_by_label(bottom)
    np.testing.assert_allclose(
        lines["test accuracy"].get_ydata(), [r["test_accuracy"] for r in rows]
    )
    held = lines["rejects prev. (held out)"].get_ydata()
    assert math.isnan(held[0])  # DNN_1 has no previous round
    np.testing.assert_allclose(held[1:], [r["rejects_previous_heldout"] for r in rows[1:]])
    assert top.get_yscale() == "logit"
    assert legend_texts(top.get_legend()) == ["median", "max"]
    assert legend_texts(bottom.get_legend()) == [n for _, n, _ in plots.RETRAIN_FRACTIONS]
    assert bottom.get_xlabel() == "iteration i (network DNN_i)"


def test_retrain_figure_with_several_series():
    series = {"cppn, map-elites": retrain_rows(), "direct, map-elites": retrain_rows(3)}
    fig = drawn(plots.retrain_confidence_figure(series, title="both"))
    top, bottom = fig.axes
    assert legend_texts(fig.legends[0]) == list(series)
    lines = lines_by_label(top)
    assert len(lines["direct, map-elites: median"].get_xdata()) == 3
    colours = [lines[f"{label}: max"].get_color() for label in series]
    assert colours[0] != colours[1]
    assert top.get_title() == "both"
    assert "0.9999" in {t.get_text() for t in top.get_yticklabels()}


def write_retrain(path, rows, encoding="direct", emitter="original", probe=None):
    """A synthetic retrain.py output directory (retrain.json), with probe rows if `probe`."""
    path.mkdir(parents=True)
    if probe is not None:
        rows = [
            {**r, "probe": {"emitter": probe, "median_confidence": 0.999, "max_confidence": 1.0}}
            for r in rows
        ]
    flags = {"encoding": encoding, "emitter": emitter, "probe_emitter": probe or ""}
    summary = {"config": {"flags": flags}, "rows": rows, "wall_seconds": 1.0}
    (path / "retrain.json").write_text(json.dumps(summary))
    return path


def test_read_retrain_names_each_experiments_series(tmp_path):
    a = write_retrain(tmp_path / "a", retrain_rows(), probe="gradient")
    b = write_retrain(tmp_path / "b", retrain_rows(3), encoding="cppn")
    series = retrain_report.read_retrain(a)
    assert list(series) == ["direct, original (trained on)", "direct, probe: gradient"]
    assert [r["median_confidence"] for r in series["direct, probe: gradient"]] == [0.999] * 4
    assert list(retrain_report.read_retrain(b)) == ["cppn"]
    assert list(retrain_report.read_retrain(b, "CPPN chain")) == ["CPPN chain"]
    fig = drawn(plots.retrain_confidence_figure({**series, **retrain_report.read_retrain(b)}))
    assert legend_texts(fig.legends[0]) == [*series, "cppn"]
    assert tuple(fig.get_size_inches()) == (plots.FIGSIZE[0], plots.FIGSIZE[1] + 0.2)
    np.testing.assert_allclose(
        lines_by_label(fig.axes[0])["cppn: median"].get_ydata(),
        [r["median_confidence"] for r in retrain_rows(3)],
    )


def test_plot_script_retrain_overlays_experiments_and_rejects_bad_ones(tmp_path):
    a = write_retrain(tmp_path / "a", retrain_rows(), probe="gradient")
    b = write_retrain(tmp_path / "b", retrain_rows(3), encoding="cppn")
    out = tmp_path / "retrain.png"
    res = script_runner.run(
        PLOT + ["--retrain", str(a), str(b), f"--out={out}"], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (PIXELS[0], PIXELS[1] + 0.2 * plots.DPI)
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "retrain.json").write_text("{oops")
    cases = [
        ([str(a), str(a)], "a second series named 'direct, original (trained on)'"),
        ([str(tmp_path / "empty")], "retrain.json: no such file"),
        ([str(tmp_path / "corrupt")], "retrain.json: not a readable JSON file"),
        ([str(tmp_path / "nope")], "nope: no such retraining directory"),
        ([], "name at least one retraining experiment directory"),
        ([str(a), "--labels=x,y"], "--labels: 2 given for 1 retraining experiments"),
        ([str(a), "--reference=0.9:x"], "--reference and --x are for run progress charts"),
    ]
    for args, message in cases:
        res = script_runner.run(
            PLOT + ["--retrain", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, (args, res.stderr)
        assert lines[0].startswith("plot.py: error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "progress_overlay.png").exists()


def test_retrain_figure_without_rejections_has_only_accuracy():
    rows = retrain_rows(1)
    fig = plots.retrain_confidence_figure(rows)
    assert legend_texts(fig.axes[1].get_legend()) == ["test accuracy"]


# --- read_run -----------------------------------------------------------------------------------


def test_read_run_takes_label_population_and_classes_from_the_run(tmp_path):
    rows = metrics_rows()
    summary = {"model": "lenet", "encoding": "cppn", "seed": 3, "population": 100,
               "classes": [{"index": k} for k in range(10)]}  # fmt: skip
    config = {"flags": {"population": 100, "initial_population": 400}}
    run = readers.read_run(write_run(tmp_path / "cppn_run", rows, summary, config))
    assert run.label == "cppn_run (lenet, cppn, seed 3)"
    assert run.rows == rows
    assert (run.population, run.initial_population, run.num_classes) == (100, 400, 10)
    assert readers.read_run(tmp_path / "cppn_run", label="mine").label == "mine"


def test_read_run_of_a_live_run_uses_config_json(tmp_path):
    config = {"flags": {"model": "lenet", "encoding": "direct", "seed": 1, "population": 20},
              "classes": [0, 1, 2]}  # fmt: skip
    path = write_run(tmp_path / "live", metrics_rows(n=2), config=config)
    with open(path / "metrics.jsonl", "a") as f:
        f.write('{"generation": 15, "median_conf')  # a row being written
    run = readers.read_run(path)
    assert run.label == "live (lenet, direct, seed 1)"
    assert len(run.rows) == 2 and run.population == 20 and run.num_classes == 3
    assert readers.read_run(write_run(tmp_path / "bare", metrics_rows())).label == "bare"


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "metrics.jsonl: no such file"),
        ("", "metrics.jsonl: no metrics rows"),
        ("\n\n", "metrics.jsonl: no metrics rows"),
        ('{"generation": 5}\nnot json\n{"generation": 10}\n', "metrics.jsonl: line 2 is not JSON"),
        ('{"generation": 5}\n[1, 2]\n', "metrics.jsonl: line 2 is not a metrics row"),
        ('{"median_confidence": 0.5}\n', "metrics.jsonl: line 1 is not a metrics row"),
    ],
)
def test_read_run_rejects_bad_metrics_naming_the_file(tmp_path, text, message):
    if text is not None:
        (tmp_path / "metrics.jsonl").write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        readers.read_run(tmp_path)
    assert str(tmp_path / "metrics.jsonl") in str(e.value)


def test_read_run_rejects_a_missing_dir_and_corrupt_summary(tmp_path):
    with pytest.raises(ValueError, match="no such run directory"):
        readers.read_run(tmp_path / "absent")
    path = write_run(tmp_path / "r", metrics_rows())
    (path / "summary.json").write_text("{truncated")
    with pytest.raises(ValueError, match="summary.json: not a readable JSON file"):
        readers.read_run(path)


# --- without matplotlib --------------------------------------------------------------------------


def test_without_matplotlib_plots_are_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    assert not plots.available()
    with pytest.raises(plots.PlotsUnavailable, match=r"pip install -e '\.\[plots\]'"):
        plots.write_progress(tmp_path / "progress.png", metrics_rows(), "t")
    with pytest.raises(plots.PlotsUnavailable):
        plots.retrain_confidence_figure(retrain_rows())
    assert not (tmp_path / "progress.png").exists()
    monkeypatch.undo()
    assert plots.available()


# --- experiments/plot.py -------------------------------------------------------------------------


def two_runs(tmp_path):
    summary = {"model": "lenet", "encoding": "cppn", "seed": 0, "population": 100}
    a = write_run(tmp_path / "a", metrics_rows(), summary)
    b = write_run(tmp_path / "b", metrics_rows(n=4), {**summary, "encoding": "direct"})
    return a, b


def test_plot_script_overlays_two_runs(tmp_path):
    a, b = two_runs(tmp_path)
    out = tmp_path / "cmp.png"
    args = [str(a), str(b), f"--out={out}", "--x=evaluations", "--labels=CPPN,direct"]
    args += ["--reference=0.8811:paper: 88.11%"]  # the label may hold a colon
    res = script_runner.run(PLOT + args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == PIXELS
    res = script_runner.run(PLOT + args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "exists; pass --overwrite" in res.stderr
    res = script_runner.run(
        PLOT + args + ["--overwrite"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr


def test_plot_script_default_out_is_in_the_working_directory(tmp_path):
    a, b = two_runs(tmp_path)
    res = script_runner.run(
        PLOT + [str(a), str(b)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "progress_overlay.png").is_file()


def bad_inputs(tmp_path):
    a, _ = two_runs(tmp_path)
    (tmp_path / "empty").mkdir()
    write_run(tmp_path / "corrupt", []).joinpath("metrics.jsonl").write_text("{oops\n")
    return {
        "missing dir": ([str(tmp_path / "nope")], "nope: no such run directory"),
        "no metrics": ([str(tmp_path / "empty")], "metrics.jsonl: no such file"),
        "corrupt metrics": ([str(tmp_path / "corrupt")], "metrics.jsonl: line 1 is not JSON"),
        "no runs": ([], "name at least one run directory"),
        "labels": ([str(a), "--labels=x,y"], "--labels: 2 given for 1 runs"),
        "not png": ([str(a), "--out=x.jpg"], "--out=x.jpg: must end in .png"),
        "reference range": ([str(a), "--reference=1.5:x"], "--reference=1.5:x: expected"),
        "reference label": ([str(a), "--reference=0.9"], "--reference=0.9: expected"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing dir", "no metrics", "corrupt metrics", "no runs", "labels", "not png",
        "reference range", "reference label",
    ],
)  # fmt: skip
def test_plot_script_bad_input_is_one_line_and_exit_2(tmp_path, case):
    args, message = bad_inputs(tmp_path)[case]
    res = script_runner.run(PLOT + args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("plot.py: error: "), res.stderr
    assert message in lines[0]
    assert not (tmp_path / "progress_overlay.png").exists()


def test_plot_script_without_matplotlib_is_one_line_and_exit_2(tmp_path):
    a, _ = two_runs(tmp_path)
    script = str(REPO / "experiments" / "plot.py")
    code = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.argv = [{script!r}, {str(a)!r}]; runpy.run_path({script!r}, run_name='__main__')"
    )
    res = script_runner.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert lines == [f"plot.py: error: {plots.INSTALL_HINT}"]
