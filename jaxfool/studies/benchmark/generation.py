"""Generation cases: whole MAP-Elites generations as fool.py runs them, beside the classifier
alone on as many images (their ratio is the overhead of everything else), each stage alone
(every emitter's own `emit`, express, insert), the device's limit and the NumPy baseline.

A case's run is assembled by `runs.build`, the one assembly fool.py uses (one device: no
population mesh), and timed through `map_elites.run` compiled as fool.py compiles it.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool import classifiers
from jaxfool.classifiers import scoring
from jaxfool.runs.config import RunConfig
from jaxfool.runs.setup import Setup, build
from jaxfool.search import archive as archive_lib
from jaxfool.search import map_elites
from jaxfool.search.emitters import EMITTERS, EmitContext
from jaxfool.studies import numpy_baseline
from jaxfool.studies.benchmark.cases import Case
from jaxfool.studies.benchmark.timing import (
    ORIGINAL_IMAGENET,
    ORIGINAL_MNIST,
    blocking,
    flops_per_image,
    interleaved,
    limit_fields,
    process_cpu_s,
    run_device_mib,
    sig,
    throughput_from,
    throughput_probes,
)


def run_config(case: Case) -> RunConfig:
    """The fool.py settings of a generation case: its model, weights, 10-crop fitness,
    encoding, population and eval_chunk; the rest (direct genes: uint8 for colour, float32 for
    MNIST; CPPN capacities; eval_chunk when None) fool.py's defaults."""
    return RunConfig(
        model=case.model,
        weights=case.weights,
        encoding=case.encoding,
        population=case.population,
        eval_chunk=case.eval_chunk,
        ten_crop=case.ten_crop,
        compute_dtype=case.compute_dtype,
        emitter=case.emitter,
        emitter_params=case.emitter_params,
    )


def case_setup(case: Case) -> Setup:
    """A generation case's classifier, params, EvolutionConfig and emitter Params, built as
    `runs.start` builds a run's (one device: no population mesh)."""
    return build(run_config(case))


def classifier_only(config: map_elites.EvolutionConfig, params, images):
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


def emitter_name(emitter) -> str:
    """The registry name of an emitter object ("original", "gradient", ...)."""
    names = {cls: name for name, cls in EMITTERS.items()}
    return names.get(type(emitter), type(emitter).__name__.lower())


def stage_times(setup: Setup, state, key, repeats: int, n: int) -> dict[str, float]:
    """Seconds per generation of each stage but the classifier, each jitted on its own: every
    emitter's own `emit` of its share of the children ("emit/NAME", parent selection
    included), expressing the children and inserting them.

    A stage compiled alone can fuse differently than inside `map_elites.run` (XLA may fuse a
    stage's work into the next one's), so the stages need not add up to the generation; they
    locate the time.
    """
    config, params = setup.evolution, setup.params
    plan = config.emitter_plan
    eparams = setup.emitter_params or config.default_emitter_params()
    arch, generation = state.archive, jnp.int32(1)
    fns = {}
    for i, ((emitter, count), p) in enumerate(zip(plan, eparams, strict=True)):

        def emit(k, a, p, clf_params, emitter=emitter, count=count):
            context = EmitContext(config.encoding, config.classifier, config.classes, clf_params)
            return emitter.emit(k, a, p, generation, count, context)

        emit = jax.jit(emit)
        emit_key = key if len(plan) == 1 else jax.random.fold_in(key, i)
        fns[f"emit/{emitter_name(emitter)}"] = blocking(emit, emit_key, arch, p, params)
    emit_all = jax.jit(map_elites.emit, static_argnums=0)
    children = emit_all(config, params, arch, key, generation, setup.emitter_params)
    express = jax.jit(config.encoding.express)
    log_probs = -jax.random.exponential(key, (config.population, arch.num_cells))
    fns["express"] = blocking(express, children)
    fns["insert"] = insert_loop(arch, children, log_probs, max(n, 10))  # fixed cost shared
    for fn in fns.values():
        fn()  # compile
    times = interleaved(fns, repeats)
    times["insert"] /= max(n, 10)
    return times


def numpy_baseline_timer(params, population: int, generations: int):
    """(time one NumPy-baseline run of `generations` generations, its archive medians)."""
    rng = np.random.default_rng(0)
    p = numpy_baseline.numpy_lenet_params(params)
    arch = numpy_baseline.init(rng, p, population)
    before = float(np.median(arch.log_prob))

    def run():
        for _ in range(generations):
            numpy_baseline.generation(rng, p, arch, population)

    return run, lambda: (before, float(np.median(arch.log_prob)))


def log_prob_error(case: Case, config, params, init_key) -> dict:
    """The case's dtype against float32: log p of the archive's classes on the initial
    population's images, max |difference| over all of them and over each image's best class,
    and how often the best class agrees."""
    f32 = case_setup(dataclasses.replace(case, compute_dtype="float32"))
    images = jax.jit(config.encoding.express)(config.encoding.init(init_key, case.population))
    classes = jnp.asarray(config.classes)

    def scores(cfg, p):
        fn = jax.jit(lambda p, x: scoring.score(cfg.classifier.logits, p, x, cfg.eval_chunk))
        return np.asarray(fn(p, images)[:, classes])

    want, got = scores(f32.evolution, f32.params), scores(config, params)
    top = want.argmax(axis=1)
    rows = np.arange(len(top))
    delta = np.abs(got - want)
    return {
        "max_abs_delta_log_prob": sig(float(delta.max())),
        "max_abs_delta_log_prob_top": sig(float(delta[rows, top].max())),
        "top_class_agreement": round(float(np.mean(got.argmax(axis=1) == top)), 4),
    }


def generation_case_row(case: Case) -> dict:
    """Whole generations (`map_elites.run`), the classifier alone, stages, limits, baselines."""
    setup = case_setup(case)
    clf, params, config = setup.classifier, setup.params, setup.evolution
    extra = () if setup.emitter_params is None else (setup.emitter_params,)
    init_key, loop_key = map_elites.run_keys(0)
    n = case.generations

    t = time.perf_counter()
    state = jax.block_until_ready(map_elites.init(config, params, init_key))
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    run = map_elites.run.lower(config, params, state, loop_key, n, *extra).compile()  # fool.py's
    compile_s = time.perf_counter() - t

    fns = {"generation": blocking(run, params, state, loop_key, n, *extra)}
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
        "emitter_params": case.emitter_params,
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
        stages = stage_times(setup, state, loop_key, case.repeats, n)
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
