"""Overlay the progress of several runs on one chart (confidence and classes over generations).

    python experiments/plot.py runs/cppn runs/direct                    # -> progress_overlay.png
    python experiments/plot.py runs/a runs/b --x=evaluations --labels=CPPN,direct --out=cmp.png
    python experiments/plot.py runs/a --reference="0.8811:paper median (CaffeNet, 2M evaluations)"
    python experiments/plot.py --retrain runs/retrain_direct runs/retrain_cppn --out=retrain.png

Each RUN is a run directory of experiments/fool.py (its metrics.jsonl; summary.json or
config.json name the run: DIR (model, encoding, seed N)); with --retrain, each is an output
directory of experiments/retrain.py (its retrain.json; named by its encoding), drawn as
retrain.py's confidence.png with every experiment's series in one chart. Needs matplotlib:
pip install -e '.[plots]'. An existing --out is kept unless --overwrite.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from jaxfool import plots
from jaxfool.base import cli
from jaxfool.base.cli import FlagError
from jaxfool.runs import readers
from jaxfool.studies import retrain_report

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "progress_overlay.png", "The PNG to write.")
flags.DEFINE_enum("x", "generation", ["generation", "evaluations"], "The x axis.")
flags.DEFINE_list(
    "labels", None, "Legend labels, one per RUN (default: DIR (model, encoding, seed))."
)
flags.DEFINE_string("title", None, "Title above the chart.")
flags.DEFINE_bool(
    "retrain", False, "The directories are retrain.py experiments: overlay their rounds."
)
flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")
flags.DEFINE_multi_string(
    "reference",
    [],
    "CONFIDENCE:LABEL, a horizontal line across the confidence panel (a published figure to "
    "compare with); repeatable.",
)


def out_path(text: str, overwrite: bool) -> Path:
    """--out checked: a .png file name that is not a directory, nor an existing file unless
    `overwrite`."""
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise FlagError(f"--out={text}: must end in .png")
    if path.is_dir():
        raise FlagError(f"--out={text}: a directory, not a file name")
    if path.exists() and not overwrite:
        raise FlagError(f"--out={text}: exists; pass --overwrite to replace it")
    return path


def parse_references(texts: list[str]) -> list[tuple[float, str]]:
    """--reference values as (confidence, label): a number in (0, 1), a colon, a label."""
    references = []
    for text in texts:
        value, _, label = text.partition(":")
        try:
            references.append((float(value), label.strip()))
            plots.check_reference(*references[-1])
        except ValueError:
            raise FlagError(
                f"--reference={text}: expected CONFIDENCE:LABEL with 0 < CONFIDENCE < 1"
            ) from None
    return references


def read_runs(args: list[str], labels: list[str] | None) -> list[plots.RunCurve]:
    """The runs named on the command line, with the --labels if given."""
    check_labels(args, labels, "run")
    runs = []
    for i, arg in enumerate(args):
        try:
            runs.append(readers.read_run(arg, None if labels is None else labels[i]))
        except ValueError as e:
            raise FlagError(e) from None
    return runs


def check_labels(args: list[str], labels: list[str] | None, what: str) -> None:
    if not args:
        raise FlagError(f"name at least one {what} directory")
    if labels is not None and len(labels) != len(args):
        raise FlagError(f"--labels: {len(labels)} given for {len(args)} {what}s")


def read_retrains(args: list[str], labels: list[str] | None) -> dict[str, list]:
    """The retraining experiments named on the command line, as one dict of chart series."""
    check_labels(args, labels, "retraining experiment")
    series: dict[str, list] = {}
    for i, arg in enumerate(args):
        try:
            more = retrain_report.read_retrain(arg, None if labels is None else labels[i])
        except ValueError as e:
            raise FlagError(e) from None
        for name in more:
            if name in series:
                raise FlagError(f"{arg}: a second series named {name!r}; name them with --labels")
        series.update(more)
    return series


def retrain_main(args: list[str], out: Path) -> None:
    if FLAGS.reference or FLAGS["x"].present:
        raise FlagError("--reference and --x are for run progress charts, not --retrain")
    series = read_retrains(args, FLAGS.labels)
    try:
        fig = plots.retrain_confidence_figure(series, title=FLAGS.title)
    except plots.PlotsUnavailable as e:
        raise FlagError(e) from None
    print(plots.save_figure(fig, out))


def main(argv):
    out = out_path(FLAGS.out, FLAGS.overwrite)
    if FLAGS.retrain:
        return retrain_main(argv[1:], out)
    runs = read_runs(argv[1:], FLAGS.labels)
    references = parse_references(FLAGS.reference)
    try:
        fig = plots.progress_figure(runs, title=FLAGS.title, x=FLAGS.x, references=references)
    except plots.PlotsUnavailable as e:
        raise FlagError(e) from None
    except ValueError as e:  # --x=evaluations for rows that cannot say how many
        raise FlagError(f"--x={FLAGS.x}: {e}") from None
    print(plots.save_figure(fig, out))


if __name__ == "__main__":
    cli.run(main)
