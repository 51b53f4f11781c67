"""Benchmark whole generations against the classifier alone, in one process.

    python experiments/benchmark.py --model=lenet --encoding=direct --population=200

Prints one JSON line: generations/s and evaluations/s after compilation, the time the
classifier alone needs for the same images, and their ratio (overhead = generation time /
classifier-only time). Timings are the best of --repeats runs of --generations generations.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxfool import classifiers, evolve, scoring
from jaxfool.encodings.cppn import CppnEncoding
from jaxfool.encodings.direct import DirectEncoding

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "suite",
    "fool",
    ["fool", "classifiers"],
    "fool: whole generations vs the classifier alone; classifiers: each ImageNet network's "
    "forward pass vs a torch CPU run of the same architecture (where torch is installed).",
)
flags.DEFINE_integer("batch", 64, "classifiers suite: images per forward pass.")
flags.DEFINE_string("model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}.")
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_enum("encoding", "direct", ["direct", "cppn"], "Genome encoding.")
flags.DEFINE_integer("render_size", 256, "CPPN: image size of the render-throughput test.")
flags.DEFINE_integer("render_batch", 400, "CPPN: genomes in the render-throughput test.")
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


def tiled_genomes(archive, count: int):
    """`count` genomes taken round-robin from the archive's elites (evolved, realistic)."""
    cells = jnp.arange(count) % archive.num_cells
    return jax.tree.map(lambda g: g[cells], archive.genomes)


def render_figures(config, state, n: int, gen_time: float) -> dict:
    """CPPN renderer: its share of a generation, and throughput at a large size."""
    enc = config.encoding
    population = tiled_genomes(state.archive, config.population)

    @jax.jit
    def render_loop(genomes):
        def body(i, acc):
            # a different weight each iteration, so XLA cannot hoist the render out of the loop
            g = genomes.replace(weight=genomes.weight * (1.0 - 1e-7 * i.astype(jnp.float32)))
            return acc + enc.express(g)[i % config.population, 0, 0, 0].astype(jnp.int32)

        return jax.lax.fori_loop(0, n, body, jnp.int32(0))

    render_loop(population).block_until_ready()
    native_time = best_time(lambda: render_loop(population).block_until_ready(), FLAGS.repeats)
    big = tiled_genomes(state.archive, FLAGS.render_batch)
    render_big = jax.jit(enc.render, static_argnums=1)
    render_big(big, FLAGS.render_size).block_until_ready()
    big_time = best_time(
        lambda: render_big(big, FLAGS.render_size).block_until_ready(), FLAGS.repeats
    )
    edges = np.asarray(population.edge_alive.sum(axis=1))
    return {
        "render_share_of_generation": round(native_time / gen_time, 3),
        "render_genome_pixels_per_s": round(
            FLAGS.render_batch * FLAGS.render_size**2 / big_time, 1
        ),
        "render_size": FLAGS.render_size,
        "render_batch": FLAGS.render_batch,
        "mean_live_edges": round(float(edges.mean()), 2),
    }


def flax_network(name: str):
    """(module, input size) of a registry network, for timing its forward pass alone."""
    from jaxfool.nets.alexnet import AlexNetTorchvision
    from jaxfool.nets.caffenet import CaffeNet
    from jaxfool.nets.efficientnet_lite import EfficientNetLite

    return {
        "caffenet": (CaffeNet(), 227),
        "alexnet_caffe": (CaffeNet(lrn_before_pool=True), 227),
        "alexnet_torchvision": (AlexNetTorchvision(), 224),
        "efficientnet_lite0": (EfficientNetLite.variant("lite0"), 224),
    }[name]


def torch_network(name: str):
    """The same architecture in torch (the tests' reference implementations), or None."""
    try:
        import torch  # noqa: F401

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests import test_efficientnet, test_imagenet_nets
    except ImportError:
        return None
    if name == "efficientnet_lite0":
        return test_efficientnet.torch_efficientnet_lite(1.0, 1.0)[1]
    if name == "alexnet_torchvision":
        return test_imagenet_nets.torch_alexnet_torchvision()
    return test_imagenet_nets.torch_caffenet(lrn_before_pool=name == "alexnet_caffe")


def timed(fn, *args) -> float:
    """Best wall time of `fn(*args)` after one warm-up call (compilation for jitted fns)."""
    jax.block_until_ready(fn(*args))
    return best_time(lambda: jax.block_until_ready(fn(*args)), FLAGS.repeats)


def classifier_suite() -> None:
    """One JSON line per ImageNet network: Flax and torch forward images/s at --batch."""
    for name in ("caffenet", "alexnet_caffe", "alexnet_torchvision", "efficientnet_lite0"):
        module, size = flax_network(name)
        x = jax.random.normal(jax.random.key(0), (FLAGS.batch, size, size, 3)) * 50
        variables = module.init(jax.random.key(1), x[:1])
        flax_time = timed(jax.jit(module.apply), variables, x)
        row = {
            "suite": "classifiers",
            "model": name,
            "batch": FLAGS.batch,
            "input_size": size,
            "device_kind": jax.devices()[0].device_kind,
            "jax_version": jax.__version__,
            "flax_images_per_s": round(FLAGS.batch / flax_time, 2),
        }
        net = torch_network(name)
        if net is not None:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
            xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
            with torch.no_grad():
                torch_time = timed(net, xt)
            row["torch_version"] = torch.__version__
            row["torch_images_per_s"] = round(FLAGS.batch / torch_time, 2)
            row["flax_over_torch_speed"] = round(torch_time / flax_time, 3)
        print(json.dumps(row), flush=True)


def main(argv):
    del argv
    if FLAGS.suite == "classifiers":
        classifier_suite()
        return
    if FLAGS.population < 2 or FLAGS.population % 2 or FLAGS.generations < 1:
        print(
            "benchmark.py: error: --population must be even >= 2, --generations >= 1",
            file=sys.stderr,
        )
        sys.exit(2)
    clf, params = classifiers.load_classifier(FLAGS.model, FLAGS.weights)
    encoding_cls = CppnEncoding if FLAGS.encoding == "cppn" else DirectEncoding
    config = evolve.EvolutionConfig(
        encoding=encoding_cls(image_shape=clf.image_shape),
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
    evolved = evolve.run(config, params, state, loop_key, n)
    images = config.encoding.express(config.encoding.init(init_key, FLAGS.population))
    clf_fn = classifier_only(config, params, images, n)
    clf_fn()
    clf_time = best_time(clf_fn, FLAGS.repeats)
    extra = {}
    if FLAGS.encoding == "cppn":
        extra = render_figures(config, evolved, n, gen_time)
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
                **extra,
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
