"""Benchmark whole generations against the classifier alone, in one process.

    python experiments/benchmark.py --model=lenet --encoding=direct --population=200

Prints one JSON line: generations/s and evaluations/s after compilation, the time the
classifier alone needs for the same images, and their ratio (overhead = generation time /
classifier-only time). Timings are the best of --repeats runs of --generations generations.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxfool import classifiers, evolve, scoring
from jaxfool.encodings.direct import DirectEncoding

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}.")
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_enum("encoding", "direct", ["direct"], "Genome encoding.")
flags.DEFINE_integer("population", 200, "Children per generation.")
flags.DEFINE_integer("generations", 200, "Generations per timed run.")
flags.DEFINE_integer("repeats", 3, "Timed runs; the best is reported.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("eval_chunk", None, "Images per classifier call.")


def best_time(fn, repeats: int) -> float:
    """Smallest wall time of `repeats` calls of fn() (which blocks until done)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def classifier_only(config: evolve.EvolutionConfig, params, images, n: int):
    """Scores the same number of images as n generations do, in one jitted loop."""

    @jax.jit
    def loop(params, images):
        def body(i, acc):
            x = images + i.astype(jnp.uint8)  # differs per iteration: nothing is hoisted
            lp = scoring.score(config.classifier.logits, params, x, config.eval_chunk)
            return acc + lp[0, 0]

        return jax.lax.fori_loop(0, n, body, jnp.float32(0))

    return lambda: loop(params, images).block_until_ready()


def main(argv):
    del argv
    if FLAGS.population < 2 or FLAGS.population % 2 or FLAGS.generations < 1:
        print(
            "benchmark.py: error: --population must be even >= 2, --generations >= 1",
            file=sys.stderr,
        )
        sys.exit(2)
    clf, params = classifiers.load_classifier(FLAGS.model, FLAGS.weights)
    config = evolve.EvolutionConfig(
        encoding=DirectEncoding(image_shape=clf.image_shape),
        classifier=clf,
        classes=tuple(range(clf.num_classes)),
        population=FLAGS.population,
        initial_population=FLAGS.population,
        eval_chunk=FLAGS.eval_chunk,
    )
    init_key, loop_key = evolve.run_keys(FLAGS.seed)
    state = evolve.init(config, params, init_key)
    n = FLAGS.generations

    t = time.perf_counter()
    jax.block_until_ready(evolve.run(config, params, state, loop_key, n))
    first_call = time.perf_counter() - t
    gen_time = best_time(
        lambda: jax.block_until_ready(evolve.run(config, params, state, loop_key, n)),
        FLAGS.repeats,
    )
    images = config.encoding.express(config.encoding.init(init_key, FLAGS.population))
    clf_fn = classifier_only(config, params, images, n)
    clf_fn()
    clf_time = best_time(clf_fn, FLAGS.repeats)
    dev = jax.devices()[0]
    print(
        json.dumps(
            {
                "suite": f"{FLAGS.model}-{FLAGS.encoding}",
                "model": FLAGS.model,
                "encoding": FLAGS.encoding,
                "population": FLAGS.population,
                "image_shape": list(clf.image_shape),
                "generations_timed": n,
                "device_kind": dev.device_kind,
                "device_count": jax.device_count(),
                "platform": dev.platform,
                "cpu": platform.processor() or platform.machine(),
                "jax_version": jax.__version__,
                "compile_s": round(max(first_call - gen_time, 0.0), 3),
                "generations_per_s": round(n / gen_time, 2),
                "evaluations_per_s": round(n * FLAGS.population / gen_time, 1),
                "classifier_only_generations_per_s": round(n / clf_time, 2),
                "overhead_ratio": round(gen_time / clf_time, 3),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
