"""Re-render a run's elite genomes, re-score them with its classifier, compare with classes.csv.

    python experiments/rescore.py results/imagenet1000_lite0_original
    python experiments/rescore.py --classes=0-9 results/imagenet1000_lite0_original
    python experiments/rescore.py --gallery=/tmp/poster.png RUN    # also draw the elites
    python experiments/rescore.py --gallery=/tmp/poster.png --tile=48 RUN

The classifier and encoding come from the run's config.json (its model, weights and settings);
scoring goes through evolution's own path with the run's eval chunk, so a run on the same
machine reproduces every recorded log-probability bit for bit. Prints one line; exit code 0
when all match, 1 when some differ (it names the first), 2 for a bad run directory or flag.
Writes nothing unless --gallery is given (an existing file is kept unless --overwrite).
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags, logging

from jaxfool.base import cli
from jaxfool.base.cli import FlagError

FLAGS = flags.FLAGS
flags.DEFINE_string("classes", None, "Class indices to check, e.g. '0-9' (default: every elite).")
flags.DEFINE_string("gallery", None, "Also write a gallery PNG of the re-rendered elites here.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --gallery file.")
flags.DEFINE_integer(
    "tile",
    None,
    "--gallery tile size in pixels (default: 112, or 64 beyond 200 elites; smaller keeps a "
    "poster of 1000 noise images, which PNG cannot compress, small).",
    lower_bound=16,
    upper_bound=1024,
)


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) != 2:
        raise FlagError("name one run directory")
    from jaxfool import runs
    from jaxfool.runs import rescore

    run_dir = Path(argv[1])
    gallery = Path(FLAGS.gallery) if FLAGS.gallery else None
    if gallery is not None and gallery.exists() and not FLAGS.overwrite:
        raise FlagError(f"--gallery={gallery} exists; pass --overwrite to replace it")
    classes = None
    if FLAGS.classes:
        try:
            classes = runs.parse_classes(FLAGS.classes, 10**9)
        except ValueError as e:
            raise FlagError(f"--classes={FLAGS.classes}: {e}") from None
    result = rescore.rescore(run_dir, classes)
    print(rescore.report(result), flush=True)
    if gallery is not None and len(result.elites):
        confidences = runs.store.confidences(result.log_probs)
        records = [
            {"index": e.index, "label": e.label, "confidence": float(p)}
            for e, p in zip(result.elites, confidences, strict=True)
        ]
        runs.store.save_elite_gallery(gallery, result.images, records, tile=FLAGS.tile)
        print(f"wrote {gallery}")
    if len(result.mismatches):
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
