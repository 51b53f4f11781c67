"""The run loop of a MAP-Elites fooling run, as a library: what `experiments/fool.py` is.

    config (RunConfig, LoopConfig) --build--> classifier, EvolutionConfig
        --start (new run dir, or resume its checkpoint)--> state
        --chunks of generations (evolve.run)--> progress line, metrics row, progress.png,
          checkpoint every --checkpoint_every --> outputs (summary, classes.csv, elites, gallery)

Configs are dataclasses that validate themselves once (`ConfigError` names the field, which a
script reports as its flag). Signals: a `Stop` installed before anything slow (before JAX is
imported, in the scripts) turns SIGINT/SIGTERM into "stop after this chunk, write everything";
one that arrives during start-up leaves nothing behind (`Interrupted`). A classifier that gives
NaN scores stops the run with its outputs written (status says so; fool.py exits 3).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxfool import classifiers

from jaxfool.classifiers import custom as custom_model

from jaxfool.search import emitters

from jaxfool.search import map_elites as evolve

from jaxfool.base import fileio

from jaxfool.runs import store as runs
from jaxfool.base.errors import ConfigError, Interrupted
from jaxfool.runs.rundir import RunDir, RunDirError
from jaxfool.base.signals import Stop
from jaxfool.base.npz import WeightsFileError

ENCODINGS = ("cppn", "direct")
# outputs of every run (elites/ come per class): recorded in the manifest before they exist
RUN_FILES = (
    "config.json", "metrics.jsonl", "progress.png", "summary.json", "classes.csv",
    "gallery.png", "checkpoint/state.npz",
)  # fmt: skip


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(field, message)


@dataclass(frozen=True)
class RunConfig:
    """What a run computes: config.json records it and `--resume` keeps it (defaults: the
    original code's; None: the original's value for the kind of model, see
    `evolve.original_settings`)."""

    model: str = "lenet"
    weights: str | None = None
    mean: str | None = None
    encoding: str = "cppn"
    population: int | None = None
    initial_population: int | None = None
    seed: int = 0
    classes: str | None = None
    eval_chunk: int | None = None
    ten_crop: bool = True
    compute_dtype: str = "float32"
    direct_genes: str = "auto"
    mutation_rate: float = 0.1
    mutation_schedule: str = "constant"
    crossover_rate: float = 0.5
    sbx_equal_genes: str = "copy"
    cppn_coords: str = "raw"
    cppn_color: str = "hls"
    max_nodes: int = 64
    max_edges: int = 256
    emitter: str = "original"
    emitter_params: str = ""
    models: str = ""  # an ensemble 'name[:weights[:mean]],...' (replaces model/weights/mean)
    ensemble_fitness: str = "mean"

    @property
    def model_name(self) -> str:
        """What the run evolved against: `model`, or "ensemble" with `models`."""
        return "ensemble" if self.models else self.model

    def __post_init__(self):
        if not custom_model.is_spec(self.model):  # your own model is checked when it loads
            models = tuple(classifiers.MODELS)
            _check(
                self.model in models, "model", f"{self.model!r}: choose one of {', '.join(models)}"
            )
        choices = {
            "compute_dtype": classifiers.COMPUTE_DTYPES,
            "encoding": ENCODINGS,
            "direct_genes": ("auto", "float32", "uint8"),
            "mutation_schedule": ("constant", "halving"),
            "sbx_equal_genes": ("copy", "half"),
            "cppn_coords": ("raw", "normalized"),
            "cppn_color": ("hls", "hsv"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            _check(value in allowed, name, f"{value!r}: choose one of {', '.join(allowed)}")
        pop = self.population
        _check(pop is None or (pop >= 2 and pop % 2 == 0), "population", "must be even, >= 2")
        ini = self.initial_population
        _check(ini is None or ini >= 1, "initial_population", "must be >= 1")
        _check(self.seed >= 0, "seed", "must be >= 0")
        _check(self.eval_chunk is None or self.eval_chunk >= 1, "eval_chunk", "must be >= 1")
        for name in ("mutation_rate", "crossover_rate"):
            _check(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")
        check_emitter_settings(self.emitter, self.emitter_params, 2 * 10**6)  # any population
        if self.models:
            try:
                refs = ensemble_refs(self.models)
            except ValueError as e:
                raise ConfigError("models", str(e)) from None
            _check(len(refs) >= 2, "models", "an ensemble needs at least two networks")
            for ref in refs:
                known = ref.name in classifiers.MODELS or custom_model.is_spec(ref.name)
                _check(known, "models", f"{ref.name!r}: not a model; see --model")
        _check(
            self.ensemble_fitness in classifiers.ENSEMBLE_FITNESS,
            "ensemble_fitness",
            f"{self.ensemble_fitness!r}: choose mean or min",
        )
        _check(self.max_nodes >= 1, "max_nodes", "must be >= 1")
        _check(self.max_edges >= 1, "max_edges", "must be >= 1")
        _check(
            self.ten_crop or classifiers.has_ten_crop(self.model) or bool(self.models),
            "ten_crop",
            f"--noten_crop: only {' and '.join(filter(classifiers.has_ten_crop, classifiers.MODELS))}"
            " score 10 crops",
        )


@dataclass(frozen=True)
class LoopConfig:
    """How a run is driven (may change when it resumes; the results do not depend on it).

    generations: total to reach (None: the original's); log_every: generations per host call
    (a progress line, a metrics row); checkpoint_every: also checkpoint every this many
    (0: at the end only); overwrite: replace a previous run's files in `out`.
    """

    out: str | None = None
    generations: int | None = None
    log_every: int = 25
    checkpoint_every: int = 0
    overwrite: bool = False
    shard: bool = True

    def __post_init__(self):
        gens = self.generations
        _check(gens is None or gens >= 0, "generations", "must be >= 0")
        _check(self.log_every >= 1, "log_every", "must be >= 1")
        _check(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")


def check_emitter_settings(
    spec: str, text: str, population: int, fields: tuple[str, str] = ("emitter", "emitter_params")
) -> None:
    """An `--emitter` spec (names and fractions) and its `--emitter_params` text, checked
    before any encoding exists; ConfigError naming fields[0] or fields[1]."""
    try:
        emitters.parse_spec(spec, population)
    except ValueError as e:
        raise ConfigError(fields[0], str(e)) from None
    try:
        parse_emitter_params(text, spec)
    except ValueError as e:
        raise ConfigError(fields[1], str(e)) from None


def ensemble_refs(models: str) -> list:
    """`--models` 'name[:weights[:mean]],...' -> classifiers.ModelRef per member
    (ValueError for a malformed one)."""
    return [classifiers.parse_model_ref(t) for t in models.split(",")]


def parse_emitter_params(text: str, spec: str, encoding: Any = None) -> dict[str, dict[str, float]]:
    """'gradient.step_size=0.1,isoline.iso_sigma=0.02' -> {emitter: {field: value}}, each
    emitter one of `spec`'s and each field one of its Params' over `encoding` (None: over
    either encoding). ValueError naming the part."""
    names = {name.partition(":")[0].strip() for name in spec.split(",")}
    out: dict[str, dict[str, float]] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        target, _, value = part.partition("=")
        name, _, field = target.partition(".")
        if name not in names:
            raise ValueError(f"emitter_params {part!r}: {name!r} is not in --emitter={spec}")
        fields = emitters.param_names(name, encoding)
        if field not in fields:
            known = ", ".join(fields) or "none"
            raise ValueError(f"emitter_params {part!r}: {name} has no {field!r} ({known})")
        try:
            out.setdefault(name, {})[field] = float(value)
        except ValueError:
            raise ValueError(f"emitter_params {part!r}: {value!r} is not a number") from None
    return out


def emitter_params(config: RunConfig, evolution: evolve.EvolutionConfig) -> tuple:
    """Each emitter's runtime Params: its defaults with `config.emitter_params` applied."""
    return spec_emitter_params(config.emitter, config.emitter_params, evolution)


def spec_emitter_params(spec: str, text: str, evolution: evolve.EvolutionConfig) -> tuple:
    """The runtime Params of `evolution`'s emitters (built from `spec`): their defaults with
    the `--emitter_params` text `text` applied."""
    import jax.numpy as jnp

    given = parse_emitter_params(text, spec, evolution.encoding)
    names = [n for n, _ in evolution.emitters] or ["original"]
    return tuple(
        p.replace(**{k: jnp.float32(v) for k, v in given.get(name, {}).items()})
        for name, p in zip(names, evolution.default_emitter_params(), strict=True)
    )


def replace_checked(config, **changes):
    """dataclasses.replace, with a wrong type also reported as the field's ConfigError."""
    for name, value in changes.items():
        if value is not None and not isinstance(value, (int, float, str, bool)):
            raise ConfigError(name, f"{value!r} is not a plain value")
    return dataclasses.replace(config, **changes)


# --- building a run ----------------------------------------------------------------------------


def load_classifier(config: RunConfig):
    """The classifier and params of `config` (10-crop setting applied; an ensemble with
    `models`); ConfigError(model / models)."""
    if config.models:
        return load_ensemble(config)
    try:
        clf, params = classifiers.load_classifier(
            config.model, config.weights, config.mean, config.compute_dtype
        )
    except (WeightsFileError, ValueError, OSError) as e:
        raise ConfigError("model", str(e)) from None
    if not config.ten_crop:
        clf = classifiers.with_center_crop(clf)
    return clf, params


def load_ensemble(config: RunConfig):
    """The `models` of `config` as one classifier (`jaxfool.classifiers.ensemble`); ConfigError(models)."""
    refs = ensemble_refs(config.models)
    members = []
    for ref in refs:
        try:
            clf, params = classifiers.load_classifier(
                ref.name, ref.weights, ref.mean, config.compute_dtype
            )
            if not config.ten_crop and classifiers.has_ten_crop(ref.name):
                clf = classifiers.with_center_crop(clf)
        except (WeightsFileError, ValueError, OSError) as e:
            raise ConfigError("models", f"{ref.label()}: {e}") from None
        members.append((clf, params))
    try:
        return classifiers.ensemble(members, config.ensemble_fitness, [r.label() for r in refs])
    except ValueError as e:
        raise ConfigError("models", str(e)) from None


def with_original_defaults(config: RunConfig, loop: LoopConfig, image_shape):
    """Fills the settings left None with the original's for images of `image_shape`."""
    defaults = evolve.original_settings(image_shape, config.encoding)
    config = dataclasses.replace(
        config,
        population=config.population or defaults["population"],
        eval_chunk=config.eval_chunk or defaults["eval_chunk"],
    )
    if config.initial_population is None:
        config = dataclasses.replace(config, initial_population=config.population)
    if loop.generations is None:
        loop = dataclasses.replace(loop, generations=defaults["generations"])
    return config, loop


def build_encoding(config: RunConfig, image_shape):
    """The genome encoding of `config` for images of `image_shape`."""
    from jaxfool.search.encodings.cppn import CppnEncoding
    from jaxfool.search.encodings.direct import DirectEncoding

    try:
        if config.encoding == "cppn":
            return CppnEncoding(
                image_shape=tuple(image_shape),
                max_nodes=config.max_nodes,
                max_edges=config.max_edges,
                coords=config.cppn_coords,
                color=config.cppn_color,
            )
        genes = config.direct_genes
        if genes == "auto":
            genes = "uint8" if image_shape[-1] == 3 else "float32"
        return DirectEncoding(
            image_shape=tuple(image_shape),
            genes=genes,
            mutation_rate=config.mutation_rate,
            crossover_rate=config.crossover_rate,
            mutation_schedule=config.mutation_schedule,
            sbx_equal_genes=config.sbx_equal_genes,
        )
    except ValueError as e:
        raise ConfigError("encoding", str(e)) from None


def evolution_config(config: RunConfig, clf, mesh=None) -> evolve.EvolutionConfig:
    """The static evolution settings of a run (config's defaults already filled in)."""
    try:
        classes = runs.parse_classes(config.classes, clf.num_classes)
    except ValueError as e:
        raise ConfigError("classes", str(e)) from None
    shares = () if config.emitter == "original" else config.emitter
    try:
        shares = emitters.parse_spec(shares, config.population) if shares else ()
    except ValueError as e:
        raise ConfigError("emitter", str(e)) from None
    encoding = build_encoding(config, clf.image_shape)
    try:  # the fields of this encoding's Params (the original emitter's differ by encoding)
        parse_emitter_params(config.emitter_params, config.emitter, encoding)
    except ValueError as e:
        raise ConfigError("emitter_params", str(e)) from None
    return evolve.EvolutionConfig(
        encoding=encoding,
        classifier=clf,
        classes=classes,
        population=config.population,
        initial_population=config.initial_population or config.population,
        eval_chunk=config.eval_chunk,
        mesh=mesh,
        emitters=shares,
    )


# --- the loop ----------------------------------------------------------------------------------


def chunk_sizes(start: int, total: int, log_every: int, checkpoint_every: int = 0) -> Iterator[int]:
    """Generations per host call from `start` to `total`: at most `log_every`, and ending on
    every multiple of `checkpoint_every` (so checkpoints fall where they are asked for)."""
    gen = start
    while gen < total:
        n = min(log_every, total - gen)
        if checkpoint_every:
            n = min(n, checkpoint_every - gen % checkpoint_every)
        yield n
        gen += n


def chunks(
    evolution: evolve.EvolutionConfig,
    params: Any,
    state: Any,
    loop_key: jax.Array,
    generations: int,
    log_every: int,
    checkpoint_every: int = 0,
    compiled: Callable | None = None,
    emitter_params: tuple | None = None,
) -> Iterator[tuple[Any, int, float]]:
    """The loop every script drives: (state, generations in the chunk, seconds) after each
    host call of `evolve.run`, from `state`'s generation to `generations` (see `chunk_sizes`).
    `compiled`: `evolve.run` lowered and compiled for these arguments (else jitted on use)."""
    step = compiled or (lambda *args: evolve.run(evolution, *args))
    extra = () if emitter_params is None else (emitter_params,)
    sizes = chunk_sizes(int(state.generation), generations, log_every, checkpoint_every)
    for n in sizes:
        t0 = time.perf_counter()
        state = jax.block_until_ready(step(params, state, loop_key, n, *extra))
        yield state, n, time.perf_counter() - t0


def progress_row(state, previous_takeovers: int, n: int, seconds: float, population: int):
    """The metrics row of a chunk of `n` generations that took `seconds`."""
    takeovers = int(np.sum(state.archive.takeovers))
    return {
        "generation": int(state.generation),
        "evaluations": int(state.evaluations),
        "seconds": round(seconds, 4),
        "gens_per_s": n / seconds,
        "evals_per_s": n * population / seconds,
        "improved": takeovers - previous_takeovers,
        "nan_scores": int(state.nan_scores),
        **runs.archive_stats(np.asarray(state.archive.log_prob)),
        **runs.peak_memory(),
    }


def progress_line(row: dict, total: int, k: int) -> str:
    """One log line: progress, speed, ETA, confidences, classes above thresholds, improvements."""
    above = row["num_classes_above"]
    eta = (total - row["generation"]) / row["gens_per_s"]
    return (
        f"gen {row['generation']:>6}/{total} | {row['gens_per_s']:7.1f} gen/s | "
        f"{row['evals_per_s']:9.0f} evals/s | ETA {eta:7.1f}s | "
        f"median {row['median_confidence']:.8f} mean {row['mean_confidence']:.6f} "
        f"min {row['min_confidence']:.8f} | "
        f">=0.99 {above['0.99']}/{k} >=0.9999 {above['0.9999']}/{k} | improved {row['improved']}"
    )


@dataclass
class Run:
    """A run being driven: its directory, settings, classifier and current state."""

    dir: RunDir
    config: RunConfig
    loop: LoopConfig
    evolution: evolve.EvolutionConfig
    params: Any
    state: Any
    loop_key: jax.Array
    record: dict  # config.json
    writer: bool = True  # process 0 of a multi-host run
    log: Callable[[str], None] = print
    plots_note: str | None = None
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def metrics(self) -> list[dict]:
        path = self.dir.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_progress_plot(self) -> None:
        """progress.png from metrics.jsonl; without matplotlib, says once how to get it."""
        if not self.writer or self.plots_note is not None:
            return
        from jaxfool import plots  # matplotlib only when a chart is drawn

        try:
            plots.write_progress(
                self.dir.path / "progress.png",
                self.metrics(),
                title=self.title(),
                population=self.evolution.population,
                num_classes=len(self.evolution.classes),
            )
        except plots.PlotsUnavailable as e:
            self.plots_note = str(e)
            self.log(f"note: no progress.png: {e}")

    def title(self) -> str:
        c = self.config
        return (
            f"{self.evolution.classifier.name}, {c.encoding}, {len(self.evolution.classes)} "
            f"classes, population {self.evolution.population}, seed {c.seed}"
        )


def _elite_images(encoding, genomes) -> np.ndarray:
    return np.asarray(jax.jit(encoding.express)(genomes))


def write_outputs(run: Run, status: str) -> dict:
    """summary.json, classes.csv, elites/, gallery.png, progress.png and the checkpoint."""
    out, cfg, state = run.dir.path, run.evolution, run.state
    archive = jax.device_get(state.archive)
    elite_images = _elite_images(cfg.encoding, archive.genomes)
    labels = cfg.classifier.labels
    run.dir.record(
        *(
            out / "elites" / f"{runs.elite_stem(c, labels[c])}{suffix}"
            for c in cfg.classes
            for suffix in (".png", ".npz")
        )
    )
    records = runs.write_elites(
        out, cfg.classes, labels, elite_images, archive.genomes, archive.log_prob,
        archive.last_improved, archive.takeovers, cfg.encoding,
    )  # fmt: skip
    if records:  # a classifier that scored everything NaN leaves no elite to show
        runs.save_elite_gallery(
            out / "gallery.png",
            np.stack([elite_images[cfg.classes.index(r["index"])] for r in records]),
            records,
        )
    stats = runs.archive_stats(archive.log_prob)
    summary = {
        "model": run.config.model_name,
        **({"ensemble": cfg.classifier.name} if run.config.models else {}),
        "weights": run.record["weights"],
        "encoding": run.config.encoding,
        "population": cfg.population,
        "generations_completed": int(state.generation),
        "seed": run.config.seed,
        "status": status,
        "median_confidence": stats["median_confidence"],
        "mean_confidence": stats["mean_confidence"],
        "min_confidence": stats["min_confidence"],
        "num_classes_above": stats["num_classes_above"],
        "evaluations": int(state.evaluations),
        "nan_scores": int(state.nan_scores),
        "wall_seconds": round(time.perf_counter() - run.started, 3),
        "eval_chunk": cfg.eval_chunk,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        **runs.peak_memory(),
        "classes": records,
    }
    runs.save_checkpoint(out, state, run.loop_key, run.record)
    runs.write_classes_csv(out / "classes.csv", records)
    run.write_progress_plot()
    fileio.write_json(out / "summary.json", summary)
    return summary


def drop_metrics_after(path: Path, generation: int) -> None:
    """Keeps the metrics lines up to the checkpoint's generation (a killed run wrote more)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line).get("generation", 0) <= generation]
    fileio.write_text(path, "".join(line + "\n" for line in kept))


def run_record(config: RunConfig, loop: LoopConfig, classes, command: str) -> dict:
    """config.json: the command, both configs, and the machine (enough to resume or redo)."""
    weights = None if config.models else classifiers.weights_file(config.model, config.weights)
    return {
        "command": command,
        "flags": {**dataclasses.asdict(config), **dataclasses.asdict(loop)},
        "weights": weights,
        "classes": list(classes),
        "jax_version": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
    }


def resumed_configs(
    out: str | Path, config: RunConfig, loop: LoopConfig, given: set[str]
) -> tuple[RunConfig, LoopConfig, dict]:
    """The saved run's RunConfig (a `given` setting that differs is a ConfigError) and its loop
    settings, each replaced by the `given` value where one was given."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise ConfigError("resume", "no config.json there (not a run directory)")
    try:
        record = json.loads(path.read_text())
        saved = record["flags"]
        if not isinstance(saved, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ConfigError("resume", f"{path} is not a run config") from None
    changes = {}
    for field in dataclasses.fields(RunConfig):
        if field.name not in saved:
            continue
        ours, theirs = getattr(config, field.name), saved[field.name]
        if field.name in given and ours != theirs:
            raise ConfigError(
                field.name,
                f"--{field.name}={ours} conflicts with the resumed run's {theirs!r}; "
                "a resumed run keeps its settings",
            )
        changes[field.name] = theirs
    loop_changes = {
        f.name: saved[f.name]
        for f in dataclasses.fields(LoopConfig)
        if f.name in saved and f.name not in given and f.name not in ("out", "overwrite")
    }
    try:
        return (
            replace_checked(config, **changes),
            replace_checked(loop, out=str(out), **loop_changes),
            record,
        )
    except (TypeError, ConfigError) as e:
        raise ConfigError("resume", f"{path}: a saved setting is invalid ({e})") from None


def _check_stop(stop: Stop | None, rundir: RunDir | None, resuming: bool) -> None:
    """During start-up: a signal ends the run here, leaving nothing a new run wrote."""
    if not stop:
        return
    if rundir is not None and not resuming:
        rundir.discard()
    kept = "the run is as it was" if resuming else "nothing was written"
    raise Interrupted(stop.name, f"interrupted by {stop.name} during start-up; {kept}")


def start(
    config: RunConfig,
    loop: LoopConfig,
    resume: bool = False,
    stop: Stop | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
) -> Run:
    """Loads the classifier, scores the initial population (or restores the checkpoint of
    `loop.out` when resuming) and returns the run, ready for `drive`."""
    writer = jax.process_index() == 0
    mesh = evolve.population_mesh() if loop.shard and jax.device_count() > 1 else None
    clf, params = load_classifier(config)
    config, loop = with_original_defaults(config, loop, clf.image_shape)
    evolution = evolution_config(config, clf, mesh)
    _check_stop(stop, None, resume)
    init_key, loop_key = evolve.run_keys(config.seed)
    if resume:
        rundir = RunDir.existing(loop.out)
        record = json.loads((rundir.path / "config.json").read_text())
        template = jax.eval_shape(lambda p, k: evolve.init(evolution, p, k), params, init_key)
        state, saved_key, _ = runs.load_checkpoint(rundir.path, template)
        if not np.array_equal(jax.random.key_data(saved_key), jax.random.key_data(loop_key)):
            raise RunDirError(f"{rundir.path}: the checkpoint's key is not this seed's")
        record["flags"] = {**record["flags"], **dataclasses.asdict(loop)}
    else:
        out = loop.out or default_out(config)
        loop = dataclasses.replace(loop, out=str(out))
        rundir = RunDir.create(out, loop.overwrite) if writer else RunDir(Path(out))
        record = run_record(config, loop, evolution.classes, command)
        if writer:
            rundir.record(*(rundir.path / f for f in RUN_FILES))
            fileio.write_json(rundir.path / "config.json", record)
        _check_stop(stop, rundir, resume)
        state = evolve.init(evolution, params, init_key)
        jax.block_until_ready(state)
    _check_stop(stop, rundir, resume)
    return Run(rundir, config, loop, evolution, params, state, loop_key, record, writer, log)


def default_out(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}_{config.model_name}_{config.encoding}_s{config.seed}"


def drive(run: Run, stop: Stop | None = None, resuming: bool = False) -> dict:
    """Runs chunks of generations to `run.loop.generations`, logging and checkpointing, and
    writes the outputs. Returns summary.json's dict; its status says how the run ended."""
    loop, cfg = run.loop, run.evolution
    out = run.dir.path
    custom = run.config.emitter != "original" or run.config.emitter_params
    extra = (emitter_params(run.config, cfg),) if custom else ()  # none: the defaults
    compiled = evolve.run.lower(cfg, run.params, run.state, run.loop_key, 1, *extra).compile()
    _check_stop(stop, run.dir, resuming)
    if resuming and run.writer:
        drop_metrics_after(out / "metrics.jsonl", int(run.state.generation))
        fileio.write_json(out / "config.json", run.record)  # the loop settings it goes on with
    run.log(
        f"compiled and scored the initial population in {time.perf_counter() - run.started:.1f}s"
    )
    status = "completed"
    takeovers = int(np.sum(run.state.archive.takeovers))
    if int(run.state.nan_scores):
        status = "stopped: NaN scores"
    steps = chunks(cfg, run.params, run.state, run.loop_key, loop.generations, loop.log_every,
                   loop.checkpoint_every, compiled, *extra)  # fmt: skip
    for state, n, seconds in steps if status == "completed" else ():
        run.state = state
        row = progress_row(state, takeovers, n, seconds, cfg.population)
        takeovers += row["improved"]
        if run.writer:
            runs.append_jsonl(out / "metrics.jsonl", row)
            run.write_progress_plot()
        run.log(progress_line(row, loop.generations, len(cfg.classes)))
        if row["nan_scores"]:
            status = "stopped: NaN scores"
            break
        every = loop.checkpoint_every
        if every and row["generation"] % every == 0 and run.writer:
            runs.save_checkpoint(out, run.state, run.loop_key, run.record)
        if stop:
            status = f"interrupted by {stop.name} at generation {row['generation']}"
            break
    if not run.writer:
        return {"status": status}
    return write_outputs(run, status)
