"""Generations (and evaluations) until every class's elite reaches --threshold, per emitter.

    python experiments/compare_emitters.py --encodings=direct,cppn \
        --emitters="original;isoline;gradient;isoline:0.5,gradient:0.5" --seeds=0-4

For each encoding and emitter spec, each seed's run goes one generation per call until every
class is >= --threshold or --max_generations pass. Prints a markdown table (median and
per-seed generations; "-" for a run that did not get there) and a final JSON line.
Flags -> `runs.RunConfig` per encoding and spec -> `studies.compare_emitters.compare_row`.
"""

from jaxfool.base import cli

STOP = cli.Stop()

import json  # noqa: E402

from absl import flags  # noqa: E402

from jaxfool import runs  # noqa: E402
from jaxfool.base.cli import FlagError  # noqa: E402
from jaxfool.studies import compare_emitters  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet", "Classifier (see fool.py --model).")
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_string("encodings", "direct,cppn", "Comma-separated encodings.")
flags.DEFINE_string("emitters", "original;isoline;gradient", "Emitter specs, ';'-separated.")
flags.DEFINE_string("seeds", "0-4", "Seeds, e.g. '0-4' or '0,3'.")
flags.DEFINE_integer("population", 200, "Children per generation.")
flags.DEFINE_integer("max_generations", 200, "Give up on a run after this many generations.")
flags.DEFINE_float("threshold", 0.9999, "Every class's elite must reach this confidence.")
flags.DEFINE_string("classes", None, "Class indices (default: all).")
flags.DEFINE_enum("cppn_coords", "raw", ["raw", "normalized"], "CPPN inputs (see fool.py).")


def main(argv):
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        seeds = list(runs.parse_classes(FLAGS.seeds, 10**6))
    except ValueError as e:
        raise FlagError(f"--seeds: {e}") from None
    if FLAGS.max_generations < 0:
        raise FlagError(f"--max_generations={FLAGS.max_generations}: must be >= 0")
    if not 0 < FLAGS.threshold < 1:
        raise FlagError(f"--threshold={FLAGS.threshold}: must be in (0, 1)")
    specs = [s.strip() for s in FLAGS.emitters.split(";") if s.strip()]
    rows = []
    print(compare_emitters.TABLE_HEAD)
    for encoding in FLAGS.encodings.split(","):
        for spec in specs:
            config = runs.RunConfig(
                model=FLAGS.model, weights=FLAGS.weights, encoding=encoding.strip(),
                population=FLAGS.population, classes=FLAGS.classes, emitter=spec,
                cppn_coords=FLAGS.cppn_coords,
            )  # fmt: skip
            rows.append(compare_emitters.compare_row(
                config, seeds, FLAGS.threshold, FLAGS.max_generations, STOP
            ))  # fmt: skip
            print(compare_emitters.table_line(rows[-1]), flush=True)
            if STOP:
                break
    print(json.dumps({"model": FLAGS.model, "threshold": FLAGS.threshold, "seeds": seeds,
                      "cppn_coords": FLAGS.cppn_coords,
                      "max_generations": FLAGS.max_generations, "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
