"""The benchmark's cases and suites: what is measured, as data.

A `Case` is one measured configuration (JSON-serialisable, so a subprocess can run it); a suite
is a table of cases. The basic suites come CPU-sized ("cpu": --suite=NAME and --suite=all) and
accelerator-sized ("gpu": --suite=gpu); the others (`OWN`) are their own tables. Adding a
configuration is adding its line to a table. `select` picks a suite's cases and applies the
command line's changes (--tiny, --repeats, --eval_chunk, --only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from jaxfool import classifiers
from jaxfool.base import fileio
from jaxfool.base.errors import ConfigError
from jaxfool.runs.config import RunConfig, check_emitter_settings
from jaxfool.runs.setup import load_classifier
from jaxfool.search import encodings

ENCODINGS = ("direct", "cppn")


@dataclass(frozen=True)
class Case:
    """One measured configuration (JSON-serialisable, so a subprocess can run it).

    kind: "device" (matmul/conv throughput), "generation" (whole generations), "classifier"
    (one network's forward pass), "render" (CPPN rendering), "insert" (archive insertion),
    "runs" (`runs` whole runs vmapped in one call against one call per run), "startup"
    (fool.py --generations=1 from a cold and from a warm compilation cache).
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
    stages: bool = True  # also time each emitter's emit, express and insert separately
    numpy_generations: int = 0  # > 0: time the NumPy baseline for this many generations
    size: int = 256  # render: image size; classifier: unused
    channels: int = 3  # render: 1 (MNIST) or 3 (ImageNet)
    cells: int = 1000  # insert: archive cells
    compute_dtype: str = "float32"  # generation: the classifier's forward pass (or "bfloat16")
    emitter: str = "original"  # generation: fool.py's --emitter spec
    emitter_params: str = ""  # generation: fool.py's --emitter_params
    runs: int = 1  # runs: independent runs vmapped in one call (map_elites.run_many)
    script_args: tuple[str, ...] = ()  # startup: fool.py's flags (besides --generations=1)


# --- the tables' builders: a table case's suite is filled in when its suite is chosen, and so is
# "{suite}" in its name


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


def many(encoding: str, runs: int, generations: int, **kw) -> Case:
    """`runs` MNIST runs (population 200) in one `map_elites.run_many` call vs one call per run."""
    name = f"runs/lenet/{encoding}/p200/r{runs}"
    return Case("runs", "", name, encoding=encoding, generations=generations, runs=runs, **kw)


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
# the overhead ratio against the classifier alone is each emitter's cost in forward passes, and
# the stage profile times each emitter's own `emit`
EMITTER_SPECS = ("original", "isoline", "gradient", "gradient_full", "original:0.5,gradient:0.5")

# the walk of `experiments/configs/imagenet1000_lite0_cppn_walk.flags` (tests check they agree)
WALK_1000 = (
    "gradient_walk.sweep=1,gradient_walk.steps=37,gradient_walk.greedy=0,gradient_walk.adam=1,"
    "gradient_walk.grow=0.985,gradient_walk.step_min=0.0015,gradient_walk.step_max=0.0015"
)
# the relay of `experiments/configs/imagenet1000_lite0_cppn_walk_relay.flags` (tests check it)
RELAY_1000 = (
    WALK_1000.replace("gradient_walk.", "gradient_walk_relay.").replace(
        "sweep=1,", "sweep=1,gradient_walk_relay.ranked=0.9,"
    )
    + ",gradient_walk_relay.relay=0.9"
)

# Suites of their own cases (CPU-sized, but gpu-runs).
OWN: dict[str, tuple[Case, ...]] = {
    "emitters": (
        *(
            gen("lenet", e, 200, generations=20, emitter=s)
            for e in ENCODINGS
            for s in EMITTER_SPECS
            if e == "cppn" or s != "gradient_full"  # direct: the same as gradient
        ),
        *(
            gen("efficientnet_lite0", e, 64, generations=1, repeats=2, emitter=s)
            for e in ENCODINGS
            for s in EMITTER_SPECS
            if e == "cppn" or s != "gradient_full"
        ),
        # the walk on MNIST only (a child costs steps + 1 gradients: Lite0 is GPU work)
        *(gen("lenet", e, 200, generations=10, emitter="gradient_walk") for e in ENCODINGS),
        # the 1000-class walk's child (one per class) on Lite0: its overhead ratio is a child's
        # cost in classifier passes, the run's budget unit. 32 walks: one `eval_chunk` (fool.py's
        # Lite0 default), the shape of a run's gradient calls (a run whose walks do not fill its
        # last chunk pays for the whole chunk: 100 walks cost 128). No stage profile: the walk's
        # emit is nearly all of the generation
        gen(
            "efficientnet_lite0",
            "dense_cppn",
            32,
            generations=1,
            repeats=2,
            stages=False,
            emitter="gradient_walk",
            emitter_params=WALK_1000,
        ),
        # its relay: 32 walks and their 32 second legs (a walk's cost is two children's)
        gen(
            "efficientnet_lite0",
            "dense_cppn",
            64,
            generations=1,
            repeats=2,
            stages=False,
            emitter="gradient_walk_relay",
            emitter_params=RELAY_1000,
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
    # issue 29: fool.py --generations=1 from a cold and a warm compilation cache, as a user
    # starts it: the main job (MNIST) and the 10-class Lite0 preset
    "startup": (
        Case("startup", "", "startup/mnist", repeats=2),
        Case(
            "startup",
            "",
            "startup/lite0-10class",
            repeats=2,
            script_args=(
                "--flagfile=experiments/configs/imagenet_lite0_10class_cppn_normalized.flags",
            ),
        ),
    ),
    # seconds of measuring (mostly compilation): a generation case with every field (stages,
    # limits, NumPy baseline) and an insert case; the test's suite
    "smoke": (
        gen("lenet", "direct", 8, generations=2, repeats=1, numpy_generations=1),
        insert("mnist", "direct", 8, 2, repeats=1),
    ),
}
SUITES = ("quick", "all", "gpu", "smoke", *BASIC, "emitters", "classifiers-torch", "gpu-runs",
          "startup", "custom")  # fmt: skip
GPU_SUITES = ("gpu", "gpu-runs")  # accelerator-sized, run in one process by default


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


def custom_case(
    model: str, weights: str | None, encoding: str, population: int, generations: int,
    ten_crop: bool = True, emitter: str = "original", emitter_params: str = "",
    stages: bool = True,
) -> Case:  # fmt: skip
    """The one generation case of --suite=custom; ConfigError naming a bad setting (a weights
    file that does not load: now, not in the case)."""
    if model not in classifiers.MODELS:
        raise ConfigError("model", f"choose one of {', '.join(classifiers.MODELS)}")
    if encoding not in encodings.ENCODINGS:
        raise ConfigError("encoding", f"choose one of {', '.join(encodings.ENCODINGS)}")
    if population < 2 or population % 2:
        raise ConfigError("population", "must be an even number >= 2")
    check_emitter_settings(emitter, emitter_params, population)
    if generations < 1:
        raise ConfigError("generations", "must be >= 1")
    if weights and weights != "random":
        kind = fileio.not_a_regular_file(weights)
        if kind is not None:
            raise ConfigError("weights", f"not a regular file ({kind})")
        if not Path(weights).is_file():
            raise ConfigError("weights", "no such file")
    if weights and weights != "random":
        load_classifier(RunConfig(model=model, weights=weights))
    if not ten_crop and not classifiers.has_ten_crop(model):
        raise ConfigError(
            "ten_crop", "--noten_crop: only caffenet and alexnet_caffe score 10 crops"
        )
    name = f"custom/{model}/{encoding}/p{population}"
    if emitter != "original":
        name += f"/{emitter}"
    return Case("generation", "custom", name, model, weights, ten_crop, encoding, population,
                generations, stages=stages, emitter=emitter,
                emitter_params=emitter_params)  # fmt: skip


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


def select(
    suite: str,
    tiny: bool = False,
    repeats: int | None = None,
    eval_chunk: int | None = None,
    only: str | None = None,
    custom: Case | None = None,
) -> list[Case]:
    """The cases of `suite` (custom: `custom`), with `tiny`, `repeats`, `eval_chunk` and `only`
    applied. Bad choices are a ConfigError whose message is the whole line ("--suite=...")."""
    if suite not in SUITES:
        raise ConfigError("suite", f"--suite={suite}: choose one of {', '.join(SUITES)}")
    if repeats is not None and repeats < 1:
        raise ConfigError("repeats", f"--repeats={repeats}: must be >= 1")
    if eval_chunk is not None and eval_chunk < 1:
        raise ConfigError("eval_chunk", f"--eval_chunk={eval_chunk}: must be >= 1")
    cases = [custom] if suite == "custom" else suite_cases(suite)
    if tiny:
        cases = [shrink(c) for c in cases]
    if repeats is not None:
        cases = [dataclasses.replace(c, repeats=repeats) for c in cases]
    if eval_chunk is not None:
        cases = [dataclasses.replace(c, eval_chunk=eval_chunk) for c in cases]
    if only is not None:
        cases = [c for c in cases if only in c.name]
        if not cases:
            raise ConfigError("only", f"--only={only}: no case of --suite={suite} matches")
    return cases
