"""Do fooling images transfer? Score the elites of fool.py runs with other models (paper §3.5).

    python experiments/transfer.py --runs=runs/a,runs/b \\
        --models=lenet,lenet:/work/runs/lenet_s1.npz,lenet_paper:PATH/lenet_iter_10000 \\
        --out=runs/transfer

Rows: the model each run evolved against (runs of the same model are pooled). Columns: the
--models. Cell: the median confidence the target gives the class each image was evolved for,
and the fraction of images at or above --threshold. A model spec is name[:weights[:mean]]
(registry names as in fool.py --model). Writes DIR/transfer.json (matrix, per-image scores)
and DIR/transfer.md (markdown tables) and prints the tables. Refuses an --out that holds files.
Bad flags give a one-line error and exit code 2.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from absl import flags, logging

from jaxfool.base import cli
from jaxfool.base.cli import FlagError

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", None, "Comma-separated fool.py run directories (the sources).")
flags.DEFINE_string(
    "models", None, "Comma-separated target models, each name[:weights[:mean]] (e.g. lenet)."
)
flags.DEFINE_string("out", None, "Output directory (must not hold files).")
flags.DEFINE_float("threshold", 0.99, "Confidence counted as fooled (the fraction column).")
flags.DEFINE_integer("eval_chunk", 64, "Images per classifier call (bounds memory).")


def split_list(flag: str, text: str | None) -> list[str]:
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise FlagError(f"--{flag} is required: a comma-separated list")
    return items


def file_in_the_way(path: Path) -> Path | None:
    """The first of `path` and its parents that exists and is not a directory, if any."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def check_flags() -> tuple[list[str], list[str], Path]:
    runs = split_list("runs", FLAGS.runs)
    models = split_list("models", FLAGS.models)
    if not FLAGS.out:
        raise FlagError("--out is required: the directory for transfer.json and transfer.md")
    if not 0.0 < FLAGS.threshold <= 1.0:
        raise FlagError(f"--threshold={FLAGS.threshold}: must be in (0, 1]")
    if FLAGS.eval_chunk < 1:
        raise FlagError(f"--eval_chunk={FLAGS.eval_chunk}: must be >= 1")
    out = Path(FLAGS.out)
    blocker = file_in_the_way(out)
    if blocker is not None:
        where = "" if blocker == out else f"{blocker} "
        raise FlagError(f"--out={out}: {where}is a file, not a directory")
    if out.exists() and any(out.iterdir()):
        raise FlagError(f"--out={out} already exists and is not empty; choose another")
    return runs, models, out


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    run_dirs, model_specs, out = check_flags()

    from jaxfool import classifiers
    from jaxfool.base import fileio, images
    from jaxfool.base.npz import WeightsFileError
    from jaxfool.studies import transfer

    try:
        elites = [transfer.load_run(d) for d in run_dirs]
    except (transfer.TransferError, images.ImageFileError) as e:
        raise FlagError(f"--runs: {e}") from None
    targets = []
    for text in model_specs:
        try:
            ref = classifiers.parse_model_ref(text)
            clf, params = classifiers.load_classifier(ref.name, ref.weights, ref.mean)
        except (transfer.TransferError, WeightsFileError, ValueError, OSError) as e:
            raise FlagError(f"--models: {text}: {e}") from None
        targets.append((ref, clf, params))

    matrix = transfer.transfer_matrix(
        transfer.group_by_source(elites),
        targets,
        threshold=FLAGS.threshold,
        chunk=FLAGS.eval_chunk,
    )
    matrix["command"] = shlex.join(sys.argv)
    table = transfer.markdown(matrix)
    if out.exists() and any(out.iterdir()):  # it may have appeared meanwhile
        raise FlagError(f"--out={out} already exists and is not empty; choose another")
    fileio.write_json(out / "transfer.json", matrix)
    fileio.write_text(out / "transfer.md", table)
    print(table, end="")
    print(f"wrote {out}/transfer.json and {out}/transfer.md")


if __name__ == "__main__":
    cli.run(main)
