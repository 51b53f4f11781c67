"""The MNIST direct-encoding MAP-Elites loop written the straightforward way in NumPy: one
individual at a time, the baseline a user would otherwise write (`jaxfool.studies.numpy_baseline`
says what it computes; the benchmark times it beside jaxfool).

    python experiments/numpy_baseline.py --generations=200 --population=200 --seed=0

runs it against the shipped LeNet, prints a progress line every --log_every generations
(generation, gens/s, median and minimum confidence) and a final JSON line.
"""

from __future__ import annotations

import json

from absl import flags, logging

from jaxfool.base import cli
from jaxfool.base.cli import FlagError

FLAGS = flags.FLAGS
flags.DEFINE_integer("generations", 200, "Generations to run (the paper's MNIST 200).")
flags.DEFINE_integer("population", 200, "Children per generation, even (the paper's 200).")
flags.DEFINE_integer("seed", 0, "Seed of NumPy's generator (not jaxfool's random numbers).")
flags.DEFINE_integer("log_every", 10, "Generations between progress lines.")


def check_flags() -> None:
    """Raises FlagError naming the first bad flag."""
    if FLAGS.population < 2 or FLAGS.population % 2:
        raise FlagError(f"--population={FLAGS.population}: must be even, >= 2")
    for name in ("generations", "seed"):
        if FLAGS[name].value < 0:
            raise FlagError(f"--{name}={FLAGS[name].value}: must be >= 0")
    if FLAGS.log_every < 1:
        raise FlagError(f"--log_every={FLAGS.log_every}: must be >= 1")


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    check_flags()
    from jaxfool import classifiers  # JAX, only to read the shipped weights
    from jaxfool.studies import numpy_baseline

    _, params = classifiers.load_classifier("lenet")
    result = numpy_baseline.evolve(params, FLAGS.population, FLAGS.generations, FLAGS.seed,
                                   FLAGS.log_every)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
