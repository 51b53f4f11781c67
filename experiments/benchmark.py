"""Benchmark suite: how fast jaxfool evolves, against the limits of the machine it runs on.

    python experiments/benchmark.py --suite=quick      # ~2 minutes on a 2-core CPU
    python experiments/benchmark.py --suite=all        # every configuration, CPU-sized
    python experiments/benchmark.py --suite=gpu        # every configuration, accelerator-sized
    python experiments/benchmark.py --suite=gpu --tiny # the same list at toy sizes (a dry run)
    python experiments/benchmark.py --suite=gpu-runs   # run_many on an accelerator (R = 8, 64)

Each configuration ("case") runs in a fresh subprocess (so its peak host RSS is its own; for
--suite=gpu and gpu-runs in one process unless --isolate, to save a CUDA start-up per case) and
prints one JSON line; a row with a classifier says which weights it used ("shipped" or
"random"; --suite=gpu's ImageNet cases run on random weights, which cost the same time).
Generation cases report device kind and count, jax version, population, image size, compile
time, generations/s, evaluations/s, the classifier alone on the same number of images in the
same kind of jitted loop, their ratio (overhead = generation time / classifier-only time;
overhead_ratio_cpu: the same in CPU seconds, which other processes on a shared machine barely
change), per-stage times (each emitter's own `emit`, express, insert), peak memory, and the
limits:

- flops_per_image: the classifier's FLOPs per image (XLA's cost analysis of its forward pass,
  on the CPU backend wherever the case runs: a GPU's own count leaves out cuDNN's convolutions);
- device_flops_per_s: the best of a large float32 matmul and a large convolution, measured in
  the same process; limit_generation_s = flops_per_image * population / device_flops_per_s is
  the fastest a generation could possibly be, and fraction_of_limit = limit / measured;
- original_evaluations_per_s: the original code's published cost (ImageNet: ~4 days x 128
  cores for 5000 generations of 400; MNIST: ~5 minutes for 200 generations of 200 on 4 cores);
- numpy_generations_per_s (MNIST direct): the same algorithm as a per-individual NumPy loop
  (`jaxfool.studies.numpy_baseline`), timed interleaved with jaxfool in the same process.

--suite=gpu runs every generation case in float32 and again with the classifier in bfloat16
(`compute_dtype`, name suffix /bf16): the bf16 case's device FLOP/s come from bf16 probes, and
it reports its log-probability error against float32 on the initial population's images.
Memory: `run_device_mib` is XLA's memory analysis of the compiled generation loop (the case's
own, even when cases share a process), `peak_device_mib` the process's peak so far.

Timings are the best of `repeats` runs, with the generation, the classifier alone and the
throughput probes timed in turn within each repeat. `load_avg_1m` and `cpu_cores_used` say how
much of the machine the case had; compare ratios, not absolute figures, across loaded runs.

Suites: quick, all, gpu, smoke (a seconds-long check of the machinery), device, mnist-direct,
mnist-cppn, imagenet-direct, imagenet-cppn, classifiers (each network alone, beside torch where
installed), render (CPPN renderer alone), archive-insert (MAP-Elites insert alone), emitters
(each `--emitter` and a mix: MNIST at population 200, Lite0 at 64, both encodings, with each
emitter's stage profile), classifiers-torch, gpu-runs (`map_elites.run_many`: R MNIST runs in
one call against one call per run), custom (one generation case from --model/--encoding/
--population/--emitter/--emitter_params/...: a run's own generation, e.g. a walk run's at its
population, whose gradients fill `--eval_chunk` as the run's do). The suites are tables in
`jaxfool.studies.benchmark.cases`: adding a configuration is adding its line there; the
measuring is the rest of `jaxfool.studies.benchmark`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import flags, logging

from jaxfool.base import cli
from jaxfool.base.cli import FlagError
from jaxfool.studies import benchmark

FLAGS = flags.FLAGS
flags.DEFINE_string("suite", "quick", f"One of: {', '.join(benchmark.SUITES)}.")
flags.DEFINE_bool("tiny", False, "Shrink every case to toy sizes (checks a suite runs at all).")
flags.DEFINE_bool(
    "isolate",
    None,
    "Run each case in a fresh subprocess, so peak memory is its own (default: yes, except for "
    "--suite=gpu and gpu-runs, where a CUDA start-up per case would cost minutes).",
)
flags.DEFINE_string("only", None, "Run only the cases whose name contains this string.")
flags.DEFINE_integer("repeats", None, "Timed runs per case, the best reported (default: per case).")
flags.DEFINE_integer("eval_chunk", None, "Images per classifier call (default: fool.py's).")
flags.DEFINE_string("model", "lenet", "custom: classifier.")
flags.DEFINE_string("weights", None, "custom: weights file or 'random' (default: shipped).")
flags.DEFINE_string("encoding", "direct", "custom: direct, cppn or dense_cppn.")
flags.DEFINE_integer("population", 200, "custom: children per generation (even).")
flags.DEFINE_integer("generations", 100, "custom: generations per timed run.")
flags.DEFINE_bool("ten_crop", True, "custom, caffenet/alexnet_caffe: the paper's 10 crops.")
flags.DEFINE_string("emitter", "original", "custom: fool.py's --emitter.")
flags.DEFINE_string("emitter_params", "", "custom: fool.py's --emitter_params.")
flags.DEFINE_bool("stages", True, "custom: also time each emitter's emit, express and insert.")
flags.DEFINE_string("case", None, "Internal: run this one JSON-encoded case and print its line.")


def selected_cases() -> list[benchmark.Case]:
    """The cases of --suite, with --tiny, --repeats, --eval_chunk and --only applied."""
    custom = None
    if FLAGS.suite == "custom":
        custom = benchmark.custom_case(
            FLAGS.model, FLAGS.weights, FLAGS.encoding, FLAGS.population, FLAGS.generations,
            FLAGS.ten_crop, FLAGS.emitter, FLAGS.emitter_params, FLAGS.stages,
        )  # fmt: skip
    return benchmark.select(
        FLAGS.suite, FLAGS.tiny, FLAGS.repeats, FLAGS.eval_chunk, FLAGS.only, custom
    )


def main(argv):
    logging.set_verbosity(logging.WARNING)  # no INFO lines (JAX's backend probes) on stderr
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.case is not None:
        case = benchmark.Case(**json.loads(FLAGS.case))
        print(json.dumps(benchmark.run_case(case)), flush=True)
        return
    isolate = (
        FLAGS.isolate if FLAGS.isolate is not None else FLAGS.suite not in benchmark.GPU_SUITES
    )
    failed = 0
    cases = selected_cases()
    start = time.perf_counter()
    for case in cases:
        if isolate:
            failed += not benchmark.run_isolated(
                case, [sys.executable, str(Path(__file__).resolve())]
            )
        else:
            print(json.dumps(benchmark.run_case(case, isolated=False)), flush=True)
    seconds = time.perf_counter() - start
    print(f"--suite={FLAGS.suite}: {len(cases)} cases in {seconds:.0f} s", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
