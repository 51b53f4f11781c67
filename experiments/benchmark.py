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
change), per-stage times, peak memory, and the limits:

- flops_per_image: the classifier's FLOPs per image (XLA's cost analysis of its forward pass,
  on the CPU backend wherever the case runs: a GPU's own count leaves out cuDNN's convolutions);
- device_flops_per_s: the best of a large float32 matmul and a large convolution, measured in
  the same process; limit_generation_s = flops_per_image * population / device_flops_per_s is
  the fastest a generation could possibly be, and fraction_of_limit = limit / measured;
- original_evaluations_per_s: the original code's published cost (ImageNet: ~4 days x 128
  cores for 5000 generations of 400; MNIST: ~5 minutes for 200 generations of 200 on 4 cores);
- numpy_generations_per_s (MNIST direct): the same algorithm as a per-individual NumPy loop
  (`numpy_baseline.py`), timed interleaved with jaxfool in the same process.

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
(each `--emitter` and a mix: MNIST at population 200, Lite0 at 64, both encodings), gpu-runs
(`evolve.run_many`: R MNIST runs in one call against one call per run), custom (one
generation case from --model/--encoding/--population/...). The suites are the tables `BASIC`
and `OWN` below: adding a configuration is adding its line there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from jaxfool import classifiers, runs
from jaxfool.base import cli, memory
from jaxfool.base.cli import FlagError
from jaxfool.classifiers import scoring
from jaxfool.search import archive as archive_lib
from jaxfool.search import map_elites as evolve
from jaxfool.search.encodings.cppn import CppnEncoding

ENCODINGS = ("direct", "cppn")
# The original code's published cost (PAPER.md, ANCHORS.md), as evaluations per second.
ORIGINAL_IMAGENET = {"evaluations_per_s": 5000 * 400 / (4 * 86400), "hardware": "128 CPU cores"}
ORIGINAL_MNIST = {"evaluations_per_s": 200 * 200 / 300, "hardware": "4 CPU cores"}


@dataclass(frozen=True)
class Case:
    """One measured configuration (JSON-serialisable, so a subprocess can run it).

    kind: "device" (matmul/conv throughput), "generation" (whole generations), "classifier"
    (one network's forward pass), "render" (CPPN rendering), "insert" (archive insertion),
    "runs" (`runs` whole runs vmapped in one call against one call per run).
    """

    kind: str
    suite: str
    name: str
    model: str = "lenet"
    weights: str | None = None  # None: the model's shipped weights; "random"
    ten_crop: bool = True
    encoding: str = "direct"
    population: int = 200  # generation cases; also the batch of render/insert cases
    generations: int = 1  # per timed run (a traced loop count: no recompilation)
    repeats: int = 3
    eval_chunk: int | None = None  # None: fool.py's default for the model
    classifier_only: bool = True  # also time the classifier alone (and the overhead ratio)
    stages: bool = True  # also time select/vary/express/insert separately
    numpy_generations: int = 0  # > 0: time the NumPy baseline for this many generations
    size: int = 256  # render: image size; classifier: unused
    channels: int = 3  # render: 1 (MNIST) or 3 (ImageNet)
    cells: int = 1000  # insert: archive cells
    compute_dtype: str = "float32"  # generation: the classifier's forward pass (or "bfloat16")
    emitter: str = "original"  # generation: fool.py's --emitter spec
    runs: int = 1  # runs: independent runs vmapped in one call (evolve.run_many)


# --- suites: tables of cases ------------------------------------------------------------------
# A table case's suite is filled in when its suite is chosen, and so is "{suite}" in its name.


def gen(model: str, encoding: str, population: int, weights: str | None = None, **kw) -> Case:
    """Whole generations; CaffeNet (no weights file here) on random weights, which cost the
    same time as trained ones, scoring the paper's 10 crops. weights: None for the model's
    shipped weights (CaffeNet: random), or "random"."""
    weights = "random" if model == "caffenet" else weights
    tag = f"{model}-10crop" if model == "caffenet" else model
    name = f"{{suite}}/{tag}/{encoding}/p{population}"
    if kw.get("emitter", "original") != "original":
        name += f"/{kw['emitter']}"
    return Case("generation", "", name, model, weights, True, encoding, population, **kw)


def in_both_dtypes(case: Case) -> tuple[Case, Case]:
    """A generation case as it is (float32) and with its classifier in bfloat16 (its speed and
    confidence error; no stage profile or NumPy baseline, which do not depend on the dtype)."""
    bf16 = dataclasses.replace(
        case, name=f"{case.name}/bf16", compute_dtype="bfloat16", stages=False, numpy_generations=0
    )
    return case, bf16


def net(model: str, batch: int) -> Case:
    """One network's forward pass alone on `batch` images."""
    return Case("classifier", "", f"classifiers/{model}", model, population=batch)


def render(size: int, channels: int, batch: int) -> Case:
    """The CPPN renderer alone: `batch` grown CPPNs drawn at size x size x channels."""
    name = f"render/{size}x{size}x{channels}/b{batch}"
    return Case("render", "", name, population=batch, size=size, channels=channels)


def insert(data: str, encoding: str, children: int, generations: int, **kw) -> Case:
    """The MAP-Elites insert alone into an "mnist" (28 x 28 x 1, 10 cells) or "imagenet"
    (256 x 256 x 3, 1000 cells) archive, `generations` times per timed run."""
    size, channels, cells = (28, 1, 10) if data == "mnist" else (256, 3, 1000)
    name = f"insert/{data}-{encoding}"
    return Case(
        "insert", "", name, encoding=encoding, population=children, generations=generations,
        size=size, channels=channels, cells=cells, **kw,
    )  # fmt: skip


def imagenet_gpu(model: str, encoding: str) -> Case:
    """An ImageNet generation case of --suite=gpu: the paper's population of 400 on random
    weights (the GPU machine has no weights package; they cost the same time as trained ones),
    the whole population in one classifier call (fool.py's default of 32 images a call is sized
    for a CPU's memory), and no per-stage profile (each stage compiles on its own, tens of
    seconds a network on a GPU)."""
    return gen(model, encoding, 400, weights="random", generations=10, eval_chunk=400, stages=False)


DEVICE = Case("device", "", "device")
NETS = ("lenet", "caffenet", "alexnet_caffe", "alexnet_torchvision", "efficientnet_lite0")
TORCH_LAYOUT_NETS = tuple(classifiers.TORCHVISION_NETS)  # resnet18 ... vit_b_16

# The basic suites, CPU-sized ("cpu": --suite=NAME and --suite=all) and accelerator-sized
# ("gpu": --suite=gpu); all runs every basic suite in this order, gpu in GPU_ORDER's. ImageNet
# on the CPU: several generations per call, as fool.py runs them, so a call's fixed cost (a
# fresh output archive, 188 MiB for direct genomes) is shared; CaffeNet's 14 s generations need
# no more.
BASIC: dict[str, dict[str, tuple[Case, ...]]] = {
    "device": {"cpu": (DEVICE,), "gpu": (DEVICE,)},
    "mnist-direct": {
        "cpu": (gen("lenet", "direct", 200, generations=200, numpy_generations=3),),
        "gpu": (
            *in_both_dtypes(gen("lenet", "direct", 200, generations=1000, numpy_generations=3)),
            # the NumPy loop at 4000: ~1 s a generation on a CPU, one is enough
            *in_both_dtypes(gen("lenet", "direct", 4000, generations=200, numpy_generations=1)),
        ),
    },
    "mnist-cppn": {
        "cpu": (gen("lenet", "cppn", 200, generations=100),),
        "gpu": (
            *in_both_dtypes(gen("lenet", "cppn", 200, generations=500)),
            *in_both_dtypes(gen("lenet", "cppn", 4000, generations=100)),
        ),
    },
    "imagenet-direct": {
        "cpu": (
            gen("efficientnet_lite0", "direct", 64, generations=5, repeats=2),
            gen("caffenet", "direct", 64, generations=1, repeats=2),
        ),
        "gpu": (
            *in_both_dtypes(imagenet_gpu("efficientnet_lite0", "direct")),
            *in_both_dtypes(imagenet_gpu("caffenet", "direct")),
        ),
    },
    "imagenet-cppn": {
        "cpu": (
            gen("efficientnet_lite0", "cppn", 64, generations=5, repeats=2),
            gen("caffenet", "cppn", 64, generations=1, repeats=2),
            # issue 5: peak RSS of the paper's setting with default chunking
            gen("caffenet", "cppn", 400, repeats=1, classifier_only=False, stages=False),
        ),
        "gpu": (
            *in_both_dtypes(imagenet_gpu("efficientnet_lite0", "cppn")),
            *in_both_dtypes(imagenet_gpu("caffenet", "cppn")),
        ),
    },
    "classifiers": {
        "cpu": tuple(net(m, 64) for m in NETS),
        "gpu": tuple(net(m, 256) for m in NETS),
    },
    "render": {
        "cpu": (render(28, 1, 200), render(256, 3, 64), render(1024, 3, 4)),
        "gpu": (render(28, 1, 4000), render(256, 3, 400), render(1024, 3, 64)),
    },
    "archive-insert": {
        "cpu": (
            insert("mnist", "direct", 200, 100),
            insert("imagenet", "direct", 64, 10),
            insert("imagenet", "cppn", 64, 10),
        ),
        "gpu": (
            insert("mnist", "direct", 200, 100),
            insert("imagenet", "direct", 400, 10),
            insert("imagenet", "cppn", 400, 10),
        ),
    },
}
COMBINED = {"all": "cpu", "gpu": "gpu"}  # every basic suite, at one size
# --suite=gpu's order: the figures that the accelerator's goals name first (MNIST, ImageNet
# CPPN, the renderer behind it), so that a run cut short by a time limit keeps them
GPU_ORDER = ("device", "mnist-direct", "mnist-cppn", "imagenet-cppn", "render",
             "imagenet-direct", "classifiers", "archive-insert")  # fmt: skip
assert sorted(GPU_ORDER) == sorted(BASIC)

# issue 13: each emitter (and a mix) at MNIST's paper population and on Lite0 at population 64;
# the overhead ratio against the classifier alone is each emitter's cost in forward passes
EMITTER_SPECS = ("original", "isoline", "gradient", "original:0.5,gradient:0.5")


def many(encoding: str, runs: int, generations: int, **kw) -> Case:
    """`runs` MNIST runs (population 200) in one `evolve.run_many` call vs one call per run."""
    name = f"runs/lenet/{encoding}/p200/r{runs}"
    return Case("runs", "", name, encoding=encoding, generations=generations, runs=runs, **kw)


# Suites of their own cases (CPU-sized).
OWN: dict[str, tuple[Case, ...]] = {
    "emitters": (
        *(
            gen("lenet", e, 200, generations=20, stages=False, emitter=s)
            for e in ENCODINGS
            for s in EMITTER_SPECS
        ),
        *(
            gen("efficientnet_lite0", e, 64, generations=1, repeats=2, stages=False, emitter=s)
            for e in ENCODINGS
            for s in EMITTER_SPECS
        ),
        many("direct", 8, 50, repeats=2),
        many("cppn", 8, 25, repeats=2),
    ),
    # the torch-layout ports beside torchvision's definitions (batch 16: VGG-16 and ViT-B/16
    # take ~16 GFLOPs an image)
    "classifiers-torch": tuple(net(m, 16) for m in TORCH_LAYOUT_NETS),
    # ~1 minute on an idle 2-core CPU (59 s, 2026-12-03): MNIST at the paper's population
    # (with the stage profile and the NumPy baseline for direct), the renderer and the insert
    # at ImageNet size, and one small ImageNet CPPN generation on EfficientNet-Lite0
    "quick": (
        gen("lenet", "direct", 200, generations=25, numpy_generations=2),
        gen("lenet", "cppn", 200, generations=25, stages=False),
        render(256, 3, 16),
        insert("imagenet", "direct", 64, 5),
        gen("efficientnet_lite0", "cppn", 16, repeats=1, stages=False),
    ),
    # issue 32: run_many on an accelerator (its default batching there is "vmap"): R = 8 and
    # 64 MNIST runs in one call against one call per run
    "gpu-runs": tuple(
        many(e, r, n, repeats=2) for e, n in (("direct", 100), ("cppn", 50)) for r in (8, 64)
    ),
    # seconds of measuring (mostly compilation): a generation case with every field (stages,
    # limits, NumPy baseline) and an insert case; the test's suite
    "smoke": (
        gen("lenet", "direct", 8, generations=2, repeats=1, numpy_generations=1),
        insert("mnist", "direct", 8, 2, repeats=1),
    ),
}
SUITES = ("quick", "all", "gpu", "smoke", *BASIC, "emitters", "classifiers-torch", "gpu-runs",
          "custom")  # fmt: skip
GPU_SUITES = ("gpu", "gpu-runs")  # accelerator-sized, run in one process by default


FLAGS = flags.FLAGS
flags.DEFINE_string("suite", "quick", f"One of: {', '.join(SUITES)}.")
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
flags.DEFINE_string("encoding", "direct", "custom: direct or cppn.")
flags.DEFINE_integer("population", 200, "custom: children per generation (even).")
flags.DEFINE_integer("generations", 100, "custom: generations per timed run.")
flags.DEFINE_bool("ten_crop", True, "custom, caffenet/alexnet_caffe: the paper's 10 crops.")
flags.DEFINE_string("case", None, "Internal: run this one JSON-encoded case and print its line.")


# --- choosing the cases -----------------------------------------------------------------------


def placed(suite: str, case: Case) -> Case:
    """A table case as a case of `suite` (its suite field and name filled in)."""
    return dataclasses.replace(case, suite=suite, name=case.name.format(suite=suite))


def suite_cases(suite: str) -> list[Case]:
    """The cases of a table suite (any but custom), in table order."""
    if suite in COMBINED:
        size = COMBINED[suite]
        order = GPU_ORDER if size == "gpu" else tuple(BASIC)
        return [placed(s, c) for s in order for c in BASIC[s][size]]
    cases = BASIC[suite]["cpu"] if suite in BASIC else OWN[suite]
    return [placed(suite, c) for c in cases]


def custom_case() -> Case:
    """The one generation case of --suite=custom, from --model/--encoding/--population/..."""
    if FLAGS.model not in classifiers.MODELS:
        raise FlagError(f"--model={FLAGS.model}: choose one of {', '.join(classifiers.MODELS)}")
    if FLAGS.encoding not in ENCODINGS:
        raise FlagError(f"--encoding={FLAGS.encoding}: choose one of {', '.join(ENCODINGS)}")
    if FLAGS.population < 2 or FLAGS.population % 2:
        raise FlagError(f"--population={FLAGS.population}: must be an even number >= 2")
    if FLAGS.generations < 1:
        raise FlagError(f"--generations={FLAGS.generations}: must be >= 1")
    if FLAGS.weights and FLAGS.weights != "random" and not Path(FLAGS.weights).is_file():
        raise FlagError(f"--weights={FLAGS.weights}: no such file")
    if FLAGS.weights and FLAGS.weights != "random":  # a bad file: one line now, not in the case
        runs.setup.load_classifier(runs.RunConfig(model=FLAGS.model, weights=FLAGS.weights))
    if not FLAGS.ten_crop and not classifiers.has_ten_crop(FLAGS.model):
        raise FlagError("--noten_crop: only caffenet and alexnet_caffe score 10 crops")
    name = f"custom/{FLAGS.model}/{FLAGS.encoding}/p{FLAGS.population}"
    return Case("generation", "custom", name, FLAGS.model, FLAGS.weights, FLAGS.ten_crop,
                FLAGS.encoding, FLAGS.population, FLAGS.generations)  # fmt: skip


def shrink(case: Case) -> Case:
    """The same case at toy size: a dry run that the configuration compiles and runs."""
    return dataclasses.replace(
        case,
        name=f"{case.name}/tiny",
        population=min(case.population, 4),
        generations=1,
        repeats=1,
        numpy_generations=min(case.numpy_generations, 1),
        size=min(case.size, 64),
    )


def check_selection_flags() -> None:
    """--suite, --repeats and --eval_chunk, before any case is built."""
    if FLAGS.suite not in SUITES:
        raise FlagError(f"--suite={FLAGS.suite}: choose one of {', '.join(SUITES)}")
    if FLAGS.repeats is not None and FLAGS.repeats < 1:
        raise FlagError(f"--repeats={FLAGS.repeats}: must be >= 1")
    if FLAGS.eval_chunk is not None and FLAGS.eval_chunk < 1:
        raise FlagError(f"--eval_chunk={FLAGS.eval_chunk}: must be >= 1")


def selected_cases() -> list[Case]:
    """The cases of --suite, with --tiny, --repeats, --eval_chunk and --only applied."""
    check_selection_flags()
    cases = [custom_case()] if FLAGS.suite == "custom" else suite_cases(FLAGS.suite)
    if FLAGS.tiny:
        cases = [shrink(c) for c in cases]
    if FLAGS.repeats is not None:
        cases = [dataclasses.replace(c, repeats=FLAGS.repeats) for c in cases]
    if FLAGS.eval_chunk is not None:
        cases = [dataclasses.replace(c, eval_chunk=FLAGS.eval_chunk) for c in cases]
    if FLAGS.only is not None:
        cases = [c for c in cases if FLAGS.only in c.name]
        if not cases:
            raise FlagError(f"--only={FLAGS.only}: no case of --suite={FLAGS.suite} matches")
    return cases


# --- measuring --------------------------------------------------------------------------------


def best_time(fn, repeats: int) -> float:
    """Smallest wall time of `repeats` calls of fn() (which blocks until done)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(fns: dict, repeats: int, cpu: dict | None = None) -> dict[str, float]:
    """Best wall time of each blocking fn, timed in turn within each repeat: on a shared
    machine, load changes hit all of them alike, so their ratios stay meaningful. With a
    `cpu` dict, also fills in each fn's least CPU time (all threads of this process), which
    other processes' load barely changes."""
    times = {name: [] for name in fns}
    cpu_times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, t = process_cpu_s(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu_times[name].append(process_cpu_s() - c)
    if cpu is not None:
        cpu.update({name: min(ts) for name, ts in cpu_times.items()})
    return {name: min(ts) for name, ts in times.items()}


def blocking(fn, *args):
    """A no-argument callable that runs fn(*args) to completion."""
    return lambda: jax.block_until_ready(fn(*args))


def environment() -> dict:
    """Where the numbers come from: device, host and versions."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2),  # > cpu_count: shared, slower figures
    }


def throughput_probes(dtype: str = "float32") -> dict[str, tuple]:
    """{name: (blocking fn, FLOPs per call)}: a large matmul and a large 3 x 3 convolution
    (the kinds of work a classifier is made of) in `dtype`, at the default precision;
    compiled and run once."""
    cpu = jax.default_backend() == "cpu"
    n = 2048 if cpu else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    batch, hw, ch = (16, 56, 128) if cpu else (128, 56, 256)
    x = jax.random.normal(jax.random.key(1), (batch, hw, hw, ch), dtype)
    w = jax.random.normal(jax.random.key(2), (3, 3, ch, ch), dtype)
    matmul = jax.jit(lambda a: a @ a)
    conv = jax.jit(
        lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    probes = {
        "matmul": (blocking(matmul, a), 2 * n**3),
        "conv": (blocking(conv, x, w), 2 * batch * hw * hw * ch * ch * 9),
    }
    for fn, _ in probes.values():
        fn()
    return probes


def throughput_from(probes: dict, times: dict) -> dict:
    """FLOP/s of each probe from its best time; the device's best is the limit's divisor."""
    mm = probes["matmul"][1] / times["matmul"]
    cv = probes["conv"][1] / times["conv"]
    return {"matmul_flops_per_s": mm, "conv_flops_per_s": cv, "device_flops_per_s": max(mm, cv)}


def device_throughput(repeats: int = 3) -> dict:
    """Measured FLOP/s of the throughput probes, best of `repeats`."""
    probes = throughput_probes()
    times = interleaved({k: fn for k, (fn, _) in probes.items()}, repeats)
    return throughput_from(probes, times)


def cpu_flops(fn, *args) -> float:
    """FLOPs of fn(*args), from XLA's cost analysis of its lowered graph on the CPU backend
    (its compiled graph's where that gives none), whatever device the arguments are on: only
    their shapes and dtypes are used. Not the default backend's: on a GPU (issue 32, H200, jax
    0.11.2) the compiled graph's count leaves out the convolutions handed to cuDNN (LeNet 0.83
    of 4.6 MFLOPs, EfficientNet-Lite0 97 of 936, CaffeNet 10-crop 1.2 of 13.5 GFLOPs), and
    JAX's plugin backends give no count for a lowered graph. The lowered and compiled counts
    agree to 0.2% on the CPU (EfficientNet-Lite0 0.936 and 0.938 GFLOPs, LeNet exactly)."""
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])

    def spec(a):
        if hasattr(a, "shape") and hasattr(a, "dtype"):  # arrays, ShapeDtypeStructs
            return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu)
        return jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a), sharding=cpu)

    lowered = jax.jit(fn).lower(*jax.tree.map(spec, args))
    cost = lowered.cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per computation
        cost = cost[0]
    if not cost or not cost.get("flops"):
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def flops_per_image(logits_fn, params, image_shape, batch: int = 4) -> float:
    """The classifier's FLOPs per image (`cpu_flops` of its forward pass)."""
    x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.uint8)
    return cpu_flops(logits_fn, params, x) / batch


def process_cpu_s() -> float:
    """CPU seconds this process has used so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sig(x: float | None, digits: int = 4):
    """x rounded to `digits` significant digits (JSON lines stay readable)."""
    if x is None or not np.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits}g}")


# --- generation cases -------------------------------------------------------------------------


def run_config(case: Case) -> runs.RunConfig:
    """The fool.py settings of a generation case: its model, weights, 10-crop fitness,
    encoding, population and eval_chunk; the rest (direct genes: uint8 for colour, float32 for
    MNIST; CPPN capacities; eval_chunk when None) fool.py's defaults."""
    return runs.RunConfig(
        model=case.model,
        weights=case.weights,
        encoding=case.encoding,
        population=case.population,
        eval_chunk=case.eval_chunk,
        ten_crop=case.ten_crop,
        compute_dtype=case.compute_dtype,
        emitter=case.emitter,
    )


def case_setup(case: Case):
    """(classifier, params, EvolutionConfig) of a generation case, built through the library
    as `runs.start` builds a run's (one device: no population mesh)."""
    setup = runs.build(run_config(case))
    return setup.classifier, setup.params, setup.evolution


def classifier_only(config: evolve.EvolutionConfig, params, images):
    """jitted (params, images, n) -> scores the same number of images as n generations."""

    @jax.jit
    def loop(params, images, n):
        def body(i, acc):
            x = images + i.astype(jnp.uint8)  # differs per iteration: nothing is hoisted
            lp = scoring.score(config.classifier.logits, params, x, config.eval_chunk)
            return acc + lp[0, 0]

        return jax.lax.fori_loop(0, n, body, jnp.float32(0))

    return loop


def insert_loop(arch, children, log_probs, n: int):
    """n inserts of the same children with rising scores, in one jitted loop (as in `run`,
    the archive is updated in place rather than copied per call)."""

    @jax.jit
    def loop(arch, children, log_probs, n):
        def body(i, a):
            return archive_lib.insert(a, children, log_probs + 0.01 * i.astype(jnp.float32), i)

        return jax.lax.fori_loop(0, n, body, arch)

    loop(arch, children, log_probs, n).log_prob.block_until_ready()
    return lambda: loop(arch, children, log_probs, n).log_prob.block_until_ready()


def stage_times(config, params, state, key, repeats: int, n: int) -> dict[str, float]:
    """Seconds per generation of each stage but the classifier, each jitted on its own.

    A stage compiled alone can fuse differently than inside `evolve.run` (XLA may fuse a stage's
    work into the next one's), so the stages need not add up to the generation; they locate
    the time.
    """
    enc, pop = config.encoding, config.population
    arch = state.archive
    select = jax.jit(lambda a, k: archive_lib.gather(a, archive_lib.select(a, k, pop)))
    parents = select(arch, key)
    pa, pb = (jax.tree.map(lambda g, s=s: g[s::2], parents) for s in (0, 1))
    vary = jax.jit(lambda k, a, b: enc.vary(k, a, b, jnp.int32(1)))
    children = vary(key, pa, pb)
    express = jax.jit(enc.express)
    log_probs = -jax.random.exponential(key, (pop, arch.num_cells))
    fns = {
        "select_gather": blocking(select, arch, key),
        "vary": blocking(vary, key, pa, pb),
        "express": blocking(express, children),
        "insert": insert_loop(arch, children, log_probs, max(n, 10)),  # fixed cost shared
    }
    for fn in fns.values():
        fn()  # compile
    times = interleaved(fns, repeats)
    times["insert"] /= max(n, 10)
    return times


def numpy_baseline_timer(params, population: int, generations: int):
    """(time one NumPy-baseline run of `generations` generations, its archive medians)."""
    import numpy_baseline as nb  # experiments/ is the script's directory

    rng = np.random.default_rng(0)
    p = nb.numpy_lenet_params(params)
    arch = nb.init(rng, p, population)
    before = float(np.median(arch.log_prob))

    def run():
        for _ in range(generations):
            nb.generation(rng, p, arch, population)

    return run, lambda: (before, float(np.median(arch.log_prob)))


def run_device_mib(compiled) -> dict | None:
    """XLA's memory analysis of a compiled function, in MiB: its arguments, outputs, temporaries
    and their total (arguments + outputs - aliased + temporaries); None where unavailable."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    mib = {
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "temp": stats.temp_size_in_bytes,
    }
    mib["total"] = sum(mib.values()) - stats.alias_size_in_bytes
    return {k: round(v / 2**20, 1) for k, v in mib.items()}


def log_prob_error(case: Case, config, params, init_key) -> dict:
    """The case's dtype against float32: log p of the archive's classes on the initial
    population's images, max |difference| over all of them and over each image's best class,
    and how often the best class agrees."""
    _, f32_params, f32_config = case_setup(dataclasses.replace(case, compute_dtype="float32"))
    images = jax.jit(config.encoding.express)(config.encoding.init(init_key, case.population))
    classes = jnp.asarray(config.classes)

    def scores(cfg, p):
        fn = jax.jit(lambda p, x: scoring.score(cfg.classifier.logits, p, x, cfg.eval_chunk))
        return np.asarray(fn(p, images)[:, classes])

    want, got = scores(f32_config, f32_params), scores(config, params)
    top = want.argmax(axis=1)
    rows = np.arange(len(top))
    delta = np.abs(got - want)
    return {
        "max_abs_delta_log_prob": sig(float(delta.max())),
        "max_abs_delta_log_prob_top": sig(float(delta[rows, top].max())),
        "top_class_agreement": round(float(np.mean(got.argmax(axis=1) == top)), 4),
    }


def limit_fields(flops: float, throughput: dict, population: int, gen_s: float, clf_s) -> dict:
    limit_s = flops * population / throughput["device_flops_per_s"]
    return {
        "flops_per_image": sig(flops),
        "matmul_flops_per_s": sig(throughput["matmul_flops_per_s"]),
        "conv_flops_per_s": sig(throughput["conv_flops_per_s"]),
        "device_flops_per_s": sig(throughput["device_flops_per_s"]),
        "limit_generation_s": sig(limit_s),
        "limit_generations_per_s": sig(1 / limit_s),
        "fraction_of_limit": sig(limit_s / gen_s),
        "classifier_fraction_of_limit": None if clf_s is None else sig(limit_s / clf_s),
    }


def generation_case_row(case: Case) -> dict:
    """Whole generations (`evolve.run`), the classifier alone, stages, limits, baselines."""
    clf, params, config = case_setup(case)
    init_key, loop_key = evolve.run_keys(0)
    n = case.generations

    t = time.perf_counter()
    state = jax.block_until_ready(evolve.init(config, params, init_key))
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    run = evolve.run.lower(config, params, state, loop_key, n).compile()  # as fool.py does
    compile_s = time.perf_counter() - t

    fns = {"generation": blocking(run, params, state, loop_key, n)}
    if case.classifier_only:
        genomes = config.encoding.init(init_key, case.population)  # the initial population
        images = jax.jit(config.encoding.express)(genomes)
        loop = classifier_only(config, params, images).lower(params, images, n).compile()
        fns["classifier"] = blocking(loop, params, images, n)
    numpy_result = None
    if case.numpy_generations:
        fns["numpy"], numpy_result = numpy_baseline_timer(
            params, case.population, case.numpy_generations
        )
    # timed with the rest (the same load on a shared machine), in the classifier's dtype
    probes = throughput_probes(case.compute_dtype)
    fns.update({k: fn for k, (fn, _) in probes.items()})
    cpu, wall = process_cpu_s(), time.perf_counter()
    cpu_times = {}
    times = interleaved(fns, case.repeats, cpu_times)
    cores_used = (process_cpu_s() - cpu) / (time.perf_counter() - wall)
    gen_s = times["generation"] / n
    clf_s = times["classifier"] / n if case.classifier_only else None

    row = {
        "model": clf.name,
        "weights": case.weights or "shipped",
        "fitness": classifiers.fitness_name(clf),
        "compute_dtype": case.compute_dtype,
        "emitter": case.emitter,
        "encoding": case.encoding,
        "population": case.population,
        "image_shape": list(clf.image_shape),
        "eval_chunk": config.eval_chunk,
        "generations_timed": n,
        "repeats": case.repeats,
        "init_s": sig(init_s),
        "compile_s": sig(compile_s),
        "generation_s": sig(gen_s),
        "generations_per_s": sig(1 / gen_s),
        "evaluations_per_s": sig(case.population / gen_s),
        "classifier_only_s": sig(clf_s),
        "classifier_only_generations_per_s": None if clf_s is None else sig(1 / clf_s),
        "overhead_ratio": None if clf_s is None else round(gen_s / clf_s, 3),
        # the same ratio in CPU seconds: robust where other processes share the cores
        "generation_cpu_s": sig(cpu_times["generation"] / n),
        "classifier_only_cpu_s": None if clf_s is None else sig(cpu_times["classifier"] / n),
        "overhead_ratio_cpu": None
        if clf_s is None
        else round(cpu_times["generation"] / cpu_times["classifier"], 3),
        "cpu_cores_used": round(cores_used, 2),  # while timing; below cpu_count: contention
        "run_device_mib": run_device_mib(run),
    }
    if case.stages:
        stages = stage_times(config, params, state, loop_key, case.repeats, n)
        if clf_s is not None:
            stages["classifier"] = clf_s
        row["stage_s"] = {k: sig(v) for k, v in stages.items()}
        row["stage_share_of_generation"] = {k: round(v / gen_s, 3) for k, v in stages.items()}
    flops = flops_per_image(clf.logits, params, clf.image_shape)
    throughput = throughput_from(probes, times)
    row.update(limit_fields(flops, throughput, case.population, gen_s, clf_s))
    original = ORIGINAL_MNIST if clf.image_shape[-1] == 1 else ORIGINAL_IMAGENET
    row["original_evaluations_per_s"] = sig(original["evaluations_per_s"])
    row["original_hardware"] = original["hardware"]
    row["speedup_over_original"] = sig(case.population / gen_s / original["evaluations_per_s"])
    if case.compute_dtype != "float32":
        row["log_prob_error_vs_float32"] = log_prob_error(case, config, params, init_key)
    if numpy_result is not None:
        numpy_s = times["numpy"] / case.numpy_generations
        before, after = numpy_result()
        row["numpy_generations_timed"] = case.numpy_generations
        row["numpy_generations_per_s"] = sig(1 / numpy_s)
        row["speedup_over_numpy"] = sig(numpy_s / gen_s)
        row["numpy_median_log_prob"] = [sig(before), sig(after)]
    return row


# --- the other kinds --------------------------------------------------------------------------


def flax_network(name: str):
    """(module, input size, channels) of a registry network, for timing its forward alone."""
    return classifiers.MODELS[name].network


def torch_network(name: str):
    """The same architecture in torch (the tests' reference implementations), or None where
    torch (a test-only extra) is not installed."""
    try:
        import torch

        from jaxfool.classifiers import torch_reference as torch_nets
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    if name in classifiers.TORCHVISION_NETS:
        return torch_nets.torchvision_model(name)
    return {
        "lenet": torch_nets.lenet,
        "caffenet": lambda: torch_nets.caffenet(lrn_before_pool=False),
        "alexnet_caffe": lambda: torch_nets.caffenet(lrn_before_pool=True),
        "alexnet_torchvision": torch_nets.alexnet_torchvision,
        "efficientnet_lite0": lambda: torch_nets.efficientnet_lite(1.0, 1.0),
    }[name]()


def classifier_case_row(case: Case) -> dict:
    """One network's forward pass alone: Flax images/s, its FLOPs, limit and torch's speed."""
    module, size, channels = flax_network(case.model)
    batch = case.population
    x = jax.random.normal(jax.random.key(0), (batch, size, size, channels)) * 50
    variables = module.init(jax.random.key(1), x[:1])
    forward = jax.jit(module.apply)
    t = time.perf_counter()
    jax.block_until_ready(forward(variables, x))
    first = time.perf_counter() - t
    fns = {"flax": blocking(forward, variables, x)}
    # torch here is the CPU build: compared on the CPU only, device against device
    net = torch_network(case.model) if jax.default_backend() == "cpu" else None
    if net is not None:
        import torch

        xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())

        def torch_forward():
            with torch.no_grad():
                net(xt)

        torch_forward()
        fns["torch"] = torch_forward
    probes = throughput_probes()
    fns.update({k: fn for k, (fn, _) in probes.items()})
    times = interleaved(fns, case.repeats)
    flops = cpu_flops(module.apply, variables, x) / batch
    throughput = throughput_from(probes, times)
    limit = throughput["device_flops_per_s"] / flops
    row = {
        "model": case.model,
        "weights": "random",  # the network's own initialisation: speed only
        "batch": batch,
        "input_shape": [size, size, channels],
        "compile_s": sig(max(first - times["flax"], 0.0)),
        "flops_per_image": sig(flops),
        "flax_images_per_s": sig(batch / times["flax"]),
        "device_flops_per_s": sig(throughput["device_flops_per_s"]),
        "limit_images_per_s": sig(limit),
        "fraction_of_limit": sig(batch / times["flax"] / limit),
        "torch_images_per_s": None,
        "flax_over_torch_speed": None,
    }
    if "torch" in times:
        import torch

        row["torch_version"] = torch.__version__
        row["torch_images_per_s"] = sig(batch / times["torch"])
        row["flax_over_torch_speed"] = round(times["torch"] / times["flax"], 3)
    return row


def grown_cppns(enc: CppnEncoding, n: int, rounds: int = 30):
    """n CPPNs after `rounds` rounds of mutation from the random start (evolved-sized graphs)."""
    vary = jax.jit(lambda k, a, b: enc.vary(k, a, b, jnp.int32(0)))
    pop = enc.init(jax.random.key(0), n + n % 2)
    for r in range(rounds):
        pop = vary(
            jax.random.key(r + 1), *(jax.tree.map(lambda g, s=s: g[s::2], pop) for s in (0, 1))
        )
    return jax.tree.map(lambda g: g[:n], pop)


def render_case_row(case: Case) -> dict:
    """The CPPN renderer alone: genome-pixels/s and edge-pixel updates/s at one size."""
    enc = CppnEncoding(image_shape=(case.size, case.size, case.channels))
    genomes = grown_cppns(enc, case.population)
    render = jax.jit(enc.render)
    t = time.perf_counter()
    jax.block_until_ready(render(genomes))
    first = time.perf_counter() - t
    render_s = best_time(blocking(render, genomes), case.repeats)
    pixels = case.population * case.size**2
    edges = np.asarray(genomes.edge_alive.sum(axis=1))
    return {
        "batch": case.population,
        "image_shape": [case.size, case.size, case.channels],
        "render_strategy": "sequential" if jax.default_backend() == "cpu" else "batched",
        "compile_s": sig(max(first - render_s, 0.0)),
        "render_s": sig(render_s),
        "genome_pixels_per_s": sig(pixels / render_s),
        "mean_live_edges": round(float(edges.mean()), 2),
        "edge_pixel_updates_per_s": sig(float(edges.sum()) * case.size**2 / render_s),
    }


def insert_case_row(case: Case) -> dict:
    """The MAP-Elites insert alone, as it runs inside a generation loop."""
    shape = (case.size, case.size, case.channels)
    enc = runs.setup.build_encoding(runs.RunConfig(encoding=case.encoding), shape)
    key = jax.random.key(0)
    children = enc.init(key, case.population)
    example = jax.tree.map(lambda g: g[0], children)
    arch = archive_lib.empty(example, case.cells)
    log_probs = -jax.random.exponential(key, (case.population, case.cells))
    t = time.perf_counter()
    fn = insert_loop(arch, children, log_probs, case.generations)
    first = time.perf_counter() - t
    insert_s = best_time(fn, case.repeats) / case.generations
    archive_bytes = sum(g.nbytes for g in jax.tree.leaves(arch.genomes))
    return {
        "encoding": case.encoding,
        "image_shape": list(shape),
        "cells": case.cells,
        "children": case.population,
        "archive_genome_mib": round(archive_bytes / 2**20, 1),
        "compile_s": sig(max(first - insert_s * case.generations, 0.0)),
        "insert_s": sig(insert_s),
        "inserts_per_s": sig(1 / insert_s),
        "archive_bytes_per_s": sig(archive_bytes / insert_s),
    }


def runs_case_row(case: Case) -> dict:
    """`case.runs` runs of `case.generations` generations (seeds 0..R-1): one `evolve.run_many`
    call (its default batching, and vmapped) against one call per run, and how far apart
    their archives are."""
    _, params, config = case_setup(case)
    n, r = case.generations, case.runs
    seeds = jnp.arange(r)
    batch = evolve.default_batch()
    t = time.perf_counter()
    compiled = {
        b: jax.jit(lambda p, s, b=b: evolve.run_many(config, p, s, n, None, b))
        .lower(params, seeds).compile()
        for b in (batch, "vmap")
    }  # fmt: skip
    alone = jax.jit(lambda p, s: evolve.run_many(config, p, s, n, None, batch))
    alone = alone.lower(params, seeds[:1]).compile()
    compile_s = time.perf_counter() - t

    def separately():
        return [alone(params, seeds[i : i + 1]) for i in range(r)]

    fns = {"together": blocking(compiled[batch], params, seeds),
           "vmapped": blocking(compiled["vmap"], params, seeds),
           "separately": lambda: [jax.block_until_ready(s) for s in separately()]}  # fmt: skip
    times = interleaved(fns, case.repeats)
    many_state, one_states = compiled[batch](params, seeds), separately()
    delta = max(
        float(np.max(np.abs(np.asarray(many_state.archive.log_prob[i])
                            - np.asarray(one.archive.log_prob[0]))))
        for i, one in enumerate(one_states)
    )  # fmt: skip
    same_takeovers = all(
        np.array_equal(
            np.asarray(many_state.archive.takeovers[i]), np.asarray(one.archive.takeovers[0])
        )
        for i, one in enumerate(one_states)
    )
    return {
        "model": case.model,
        "weights": case.weights or "shipped",
        "encoding": case.encoding,
        "emitter": case.emitter,
        "population": case.population,
        "runs": r,
        "batch": batch,
        "generations_timed": n,
        "repeats": case.repeats,
        "compile_s": sig(compile_s),
        "run_many_s_per_run": sig(times["together"] / r),
        "separate_calls_s_per_run": sig(times["separately"] / r),
        "run_many_speedup": round(times["separately"] / times["together"], 3),
        "vmap_speedup": round(times["separately"] / times["vmapped"], 3),
        "max_abs_delta_log_prob": sig(delta),
        "same_takeovers": same_takeovers,
    }


def device_case_row(case: Case) -> dict:
    return {k: sig(v) for k, v in device_throughput(case.repeats).items()}


ROWS = {
    "device": device_case_row,
    "generation": generation_case_row,
    "classifier": classifier_case_row,
    "render": render_case_row,
    "insert": insert_case_row,
    "runs": runs_case_row,
}


def run_case(case: Case, isolated: bool = True) -> dict:
    """Measures one case in this process: its JSON row. isolated: the process ran nothing
    else, so its peak memory is the case's own (else: the peak of the cases so far)."""
    t = time.perf_counter()
    row = {"suite": case.suite, "case": case.name, "kind": case.kind, **environment()}
    row.update(ROWS[case.kind](case))
    row.update(memory.peak_memory())
    row["isolated"] = isolated
    row["wall_s"] = round(time.perf_counter() - t, 1)
    return row


def run_isolated(case: Case) -> bool:
    """Runs one case in a fresh Python process and relays its JSON line; False if it failed."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--case={json.dumps(dataclasses.asdict(case))}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        print(lines[-1], flush=True)
        return True
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    print(json.dumps({"suite": case.suite, "case": case.name, "error": tail[0]}), flush=True)
    sys.stderr.write(proc.stderr)
    return False


def main(argv):
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.case is not None:
        print(json.dumps(run_case(Case(**json.loads(FLAGS.case)))), flush=True)
        return
    isolate = FLAGS.isolate if FLAGS.isolate is not None else FLAGS.suite not in GPU_SUITES
    failed = 0
    cases = selected_cases()
    start = time.perf_counter()
    for case in cases:
        if isolate:
            failed += not run_isolated(case)
        else:
            print(json.dumps(run_case(case, isolated=False)), flush=True)
    seconds = time.perf_counter() - start
    print(f"--suite={FLAGS.suite}: {len(cases)} cases in {seconds:.0f} s", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
