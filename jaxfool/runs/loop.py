"""The run loop of a MAP-Elites fooling run, as a library: what `experiments/fool.py` is.

    config (RunConfig, LoopConfig) --runs.setup.build--> classifier, EvolutionConfig
        --start (new run dir, or resume its checkpoint)--> state
        --chunks of generations (map_elites.run)--> progress line, metrics row, progress.png,
          checkpoint every --checkpoint_every --> outputs (summary, classes.csv, elites, gallery)

Signals: a `Stop` installed before anything slow (before JAX is imported, in the scripts) turns
SIGINT/SIGTERM into "stop after this chunk, write everything"; one that arrives during start-up
leaves nothing behind (`Interrupted`). A classifier that gives NaN scores stops the run with its
outputs written (status says so; fool.py exits 3).
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

from jaxfool import classifiers, plots
from jaxfool.base import compile_cache, fileio, memory
from jaxfool.base.errors import (
    Interrupted,
    NothingToDo,
    OutOfMemory,
    RunDirError,
    WriteFailed,
)
from jaxfool.base.signals import Stop
from jaxfool.runs import store
from jaxfool.runs.config import LoopConfig, RunConfig
from jaxfool.runs.rundir import RunDir
from jaxfool.runs.setup import build
from jaxfool.search import map_elites
from jaxfool.search.map_elites import EvolutionConfig


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
    evolution: EvolutionConfig,
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
    host call of `map_elites.run`, from `state`'s generation to `generations` (see `chunk_sizes`).
    `compiled`: `map_elites.run` lowered and compiled for these arguments (else jitted on use)."""
    step = compiled or (lambda *args: map_elites.run(evolution, *args))
    extra = () if emitter_params is None else (emitter_params,)
    sizes = chunk_sizes(int(state.generation), generations, log_every, checkpoint_every)
    for n in sizes:
        t0 = time.perf_counter()
        state = jax.block_until_ready(step(params, state, loop_key, n, *extra))
        yield state, n, time.perf_counter() - t0


def many_chunks(
    evolution: EvolutionConfig,
    params: Any,
    init_keys: jax.Array,
    loop_keys: jax.Array,
    generations: int,
    log_every: int,
    emitter_params: tuple | None = None,
) -> Iterator[tuple[Any, int]]:
    """R runs at once (keys [R]: each run's init and generations keys): (states, generations
    in the chunk) after the initial population (0) and after each host call of
    `map_elites.run_many_states` of at most `log_every` generations, up to `generations`."""
    state = map_elites.init_many(evolution, params, init_keys)
    yield state, 0
    for n in chunk_sizes(0, generations, log_every, 0):
        state = map_elites.run_many_states(evolution, params, state, loop_keys, n, emitter_params)
        yield state, n


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
        **store.archive_stats(np.asarray(state.archive.log_prob)),
        **memory.peak_memory(),
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
    evolution: EvolutionConfig
    params: Any
    state: Any
    loop_key: jax.Array
    record: dict  # config.json
    emitter_params: tuple | None = None  # the emitters' runtime Params (None: their defaults)
    writer: bool = True  # process 0 of a multi-host run
    log: Callable[[str], None] = print
    plots_note: str | None = None
    drawn: list | None = None  # the metrics rows progress.png shows (not drawn twice)
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
        rows, path = self.metrics(), self.dir.path / "progress.png"
        if rows == self.drawn and path.exists():  # e.g. the final redraw after the last chunk
            return
        try:
            plots.write_progress(
                path,
                rows,
                title=self.title(),
                population=self.evolution.population,
                num_classes=len(self.evolution.classes),
            )
            self.drawn = rows
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
            out / "elites" / f"{store.elite_stem(c, labels[c])}{suffix}"
            for c in cfg.classes
            for suffix in (".png", ".npz")
        )
    )
    records = store.write_elites(
        out, cfg.classes, labels, elite_images, archive.genomes, archive.log_prob,
        archive.last_improved, archive.takeovers, cfg.encoding,
    )  # fmt: skip
    if records:  # a classifier that scored everything NaN leaves no elite to show
        store.save_elite_gallery(
            out / "gallery.png",
            np.stack([elite_images[cfg.classes.index(r["index"])] for r in records]),
            records,
        )
    stats = store.archive_stats(archive.log_prob)
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
        **memory.peak_memory(),
        "classes": records,
    }
    store.save_checkpoint(out, state, run.loop_key, run.record)
    store.write_classes_csv(out / "classes.csv", records)
    run.write_progress_plot()
    fileio.write_json(out / "summary.json", summary)
    return summary


def weights_records(config: RunConfig) -> dict | list | None:
    """The weights a run uses, named the same on every machine (`classifiers.weights_record`:
    model, file, package or shipped, sha256); a list for an ensemble's members."""
    if config.models:
        refs = [classifiers.parse_model_ref(t) for t in config.models.split(",")]
        return [classifiers.weights_record(r.name, r.weights) for r in refs]
    return classifiers.weights_record(config.model, config.weights)


def run_record(config: RunConfig, loop: LoopConfig, classes, command: str) -> dict:
    """config.json: the command, both configs, and the machine (enough to resume or redo)."""
    weights = weights_records(config)
    return {
        "command": command,
        "flags": {**dataclasses.asdict(config), **dataclasses.asdict(loop)},
        "weights": weights,
        "classes": list(classes),
        "jax_version": jax.__version__,
        "compilation_cache": compile_cache.location(),
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
    }


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
    compile_cache.enable()
    writer = jax.process_index() == 0
    mesh = map_elites.population_mesh() if loop.shard and jax.device_count() > 1 else None
    setup = build(config, loop, mesh)
    config, loop, evolution, params = setup.config, setup.loop, setup.evolution, setup.params
    _check_stop(stop, None, resume)
    init_key, loop_key = map_elites.run_keys(config.seed)
    if resume:
        rundir = RunDir.existing(loop.out)
        record = json.loads((rundir.path / "config.json").read_text())
        template = jax.eval_shape(lambda p, k: map_elites.init(evolution, p, k), params, init_key)
        state, saved_key, _ = store.load_checkpoint(rundir.path, template)
        if not np.array_equal(jax.random.key_data(saved_key), jax.random.key_data(loop_key)):
            raise RunDirError(f"{rundir.path}: the checkpoint's key is not this seed's")
        record["flags"] = {**record["flags"], **dataclasses.asdict(loop)}
        check_something_to_do(rundir.path, int(state.generation), loop.generations)
    else:
        init = map_elites.init.lower(evolution, params, init_key).compile()
        memory.check_fits(
            init, f"scoring {evolution.initial_population} initial genomes",
            "--population (and --initial_population) or --eval_chunk",
        )  # fmt: skip
        _check_stop(stop, None, resume)
        out = loop.out or default_out(config)
        loop = dataclasses.replace(loop, out=str(out))
        rundir = RunDir.create(out, loop.overwrite) if writer else RunDir(Path(out))
        record = run_record(config, loop, evolution.classes, command)
        try:
            if writer:
                rundir.record(*(rundir.path / f for f in store.RUN_FILES))
                fileio.write_json(rundir.path / "config.json", record)
            _check_stop(stop, rundir, resume)
            state = jax.block_until_ready(init(params, init_key))
            if writer and loop.checkpoint_every:  # a fault before the first chunk's checkpoint
                store.save_checkpoint(rundir.path, state, loop_key, record)  # can resume
        except (WriteFailed, jax.errors.JaxRuntimeError) as e:
            rundir.discard()  # a run that never got going leaves nothing behind
            if memory.is_out_of_memory(e):
                raise OutOfMemory(
                    "out of memory scoring the initial population; lower --population "
                    "(and --initial_population) or --eval_chunk"
                ) from None
            raise
    _check_stop(stop, rundir, resume)
    return Run(
        rundir, config, loop, evolution, params, state, loop_key, record,
        setup.emitter_params, writer, log,
    )  # fmt: skip


def check_something_to_do(out: Path, done: int, asked: int) -> None:
    """NothingToDo when a resumed run is past the generation asked for, or at it with its
    outputs written (at it without them: the outputs are what is left to write)."""
    summary = out / "summary.json"
    finished = False
    if done == asked and summary.is_file():
        try:
            finished = json.loads(summary.read_text()).get("generations_completed") == done
        except (ValueError, OSError, AttributeError):
            finished = False
    if done > asked or finished:
        raise NothingToDo(
            f"{out} is already at generation {done} (--generations={asked}); nothing to do, "
            "nothing was touched"
        )


def default_out(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}_{config.model_name}_{config.encoding}_s{config.seed}"


def drive(run: Run, stop: Stop | None = None, resuming: bool = False) -> dict:
    """Runs chunks of generations to `run.loop.generations`, logging and checkpointing, and
    writes the outputs. Returns summary.json's dict; its status says how the run ended."""
    loop, cfg = run.loop, run.evolution
    out = run.dir.path
    extra = () if run.emitter_params is None else (run.emitter_params,)  # none: the defaults
    compiled = map_elites.run.lower(cfg, run.params, run.state, run.loop_key, 1, *extra).compile()
    memory.check_fits(compiled, f"a generation of {cfg.population}", "--population or --eval_chunk")
    _check_stop(stop, run.dir, resuming)
    try:
        if resuming and run.writer:
            store.remove_stale_temporaries(out)  # a killed write's half file, never read
            store.drop_metrics_after(out / "metrics.jsonl", int(run.state.generation))
            fileio.write_json(out / "config.json", run.record)  # the loop settings it goes on with
        run.log(
            f"compiled and scored the initial population in "
            f"{time.perf_counter() - run.started:.1f}s"
        )
        status = "completed"
        takeovers = int(np.sum(run.state.archive.takeovers))
        if int(run.state.nan_scores):
            status = "stopped: NaN scores"
        steps = chunks(cfg, run.params, run.state, run.loop_key, loop.generations,
                       loop.log_every, loop.checkpoint_every, compiled, *extra)  # fmt: skip
        for state, n, seconds in steps if status == "completed" else ():
            run.state = state
            row = progress_row(state, takeovers, n, seconds, cfg.population)
            takeovers += row["improved"]
            if run.writer:
                store.append_jsonl(out / "metrics.jsonl", row)
                run.write_progress_plot()
            run.log(progress_line(row, loop.generations, len(cfg.classes)))
            if row["nan_scores"]:
                status = "stopped: NaN scores"
                break
            every = loop.checkpoint_every
            if every and row["generation"] % every == 0 and run.writer:
                store.save_checkpoint(out, run.state, run.loop_key, run.record)
            if stop:
                status = f"interrupted by {stop.name} at generation {row['generation']}"
                break
        if not run.writer:
            return {"status": status}
        return write_outputs(run, status)
    except WriteFailed as e:
        raise WriteFailed(e.errno, f"{e}; {resume_hint(out)}") from None
    except jax.errors.JaxRuntimeError as e:
        if not memory.is_out_of_memory(e):
            raise
        raise OutOfMemory(
            f"out of memory at generation {int(run.state.generation)}: lower --eval_chunk "
            f"(now {cfg.eval_chunk}) or --population (now {cfg.population}); "
            f"{resume_hint(out)}"
        ) from None


def resume_hint(out: Path) -> str:
    """What a user can do after a run stopped on a resource fault: resume from the checkpoint
    on disk (written atomically, so it is whole), or start again without one."""
    saved = store.checkpoint_generation(out)
    if saved is None:
        return f"no checkpoint was written: start again (--overwrite --out={out})"
    return f"the checkpoint at generation {saved} is intact: --resume={out} goes on from it"
