"""Fooling images by gradient ascent on the input (the paper's §3.7, `find_fooling_image.py`).

    python experiments/gradient_ascent.py --model=lenet --classes=0-9
    python experiments/gradient_ascent.py --model=efficientnet_lite0 --preset=plain \\
        --classes=200,207,215,279 --stop_at=0.9999

All classes ascend at once (one jitted, vmapped loop); progress is printed every --log_every
steps. Flags -> `runs.ascent.ascent_config` (a preset of `search.gradient_ascent` with
overrides) -> `runs.ascent.run`. Writes DIR/summary.json (per class: confidence, steps to
argmax / 0.99 / 0.999 / 0.9999, image), config.json, metrics.jsonl, images/ (one PNG per
class) and gallery.png.
"""

from __future__ import annotations

import shlex
import sys

from absl import flags, logging

from jaxfool import classifiers
from jaxfool.base import cli
from jaxfool.base.cli import FlagError
from jaxfool.runs import ascent
from jaxfool.search import gradient_ascent as ga

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}, or package.module:factory."
)
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_string("mean", None, "Mean image (.binaryproto/.npy) for LeNet / Caffe models.")
flags.DEFINE_string(
    "classes",
    None,
    "Target classes, e.g. '0-9' or '200,207' (default: all of a 10-class model, else the "
    "paper's 20 supplementary classes).",
)
flags.DEFINE_string("preset", "plain", f"Hyperparameters of the original: {', '.join(ga.PRESETS)}.")
flags.DEFINE_string(
    "optimizer",
    "progress",
    f"progress (the original's step rule) or {', '.join(ga.OPTAX_OPTIMIZERS)}.",
)
flags.DEFINE_float("learning_rate", 1.0, "optax optimisers only: step size in grey levels.")
flags.DEFINE_integer("steps", None, "Steps (default: the preset's N).")
flags.DEFINE_string("start", "mean_plus", f"Start image: {', '.join(ga.STARTS)}.")
flags.DEFINE_float(
    "stop_at", None, "Stop a class once its probability reaches this (default: run all steps)."
)
flags.DEFINE_integer("seed", 0, "Seed of the start image (the original's rseed).")
flags.DEFINE_string("out", None, "Run directory (default: runs/<time>_ascent_<model>_<preset>).")
flags.DEFINE_bool("overwrite", False, "Replace an existing run in --out.")
flags.DEFINE_integer("log_every", 25, "Steps per host call: one progress line each.")


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = ascent.ascent_config(
        FLAGS.preset, FLAGS.optimizer, FLAGS.learning_rate, FLAGS.start, FLAGS.stop_at, FLAGS.steps
    )
    ascent.run(
        config, FLAGS.model, FLAGS.weights, FLAGS.mean, FLAGS.classes, FLAGS.seed, FLAGS.out,
        FLAGS.overwrite, FLAGS.log_every, shlex.join(sys.argv),
        {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])},
    )  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
