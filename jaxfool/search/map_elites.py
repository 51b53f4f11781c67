"""One MAP-Elites generation as a pure function, and many of them per host call.

    archive --select--> parent pairs --vary--> children --express--> uint8 images
            --score (classifier, log-probabilities)--> [B, K] --insert--> archive'

`step` is that line; `run` repeats it `num_generations` times inside one jitted call
(`lax.fori_loop`), so the host only logs and saves between calls. The key of generation g is
`fold_in(key, g)`: results do not depend on how a run is split into host calls.

With a `mesh`, the children (and so rendering and classification, the costly part) are split
along the population axis over the mesh's devices; the archive stays replicated and its insert
sees every child. A population that does not divide evenly is padded with copies of a child,
whose scores are dropped before the insert.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfool.classifiers import scoring
from jaxfool.classifiers.protocol import Classifier
from jaxfool.search import archive as archive_lib
from jaxfool.search.emitters import EmitContext
from jaxfool.search.emitters.original import Original
from jaxfool.search.encodings import Encoding

POP_AXIS = "pop"


def population_mesh(devices: Any = None) -> Mesh:
    """A one-axis mesh over `devices` (default: all devices) for splitting the population."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(devices, (POP_AXIS,))


@dataclass(frozen=True)
class EvolutionConfig:
    """Static settings of a run (hashable; a static argument of the jitted functions).

    classes: the classifier outputs that get an archive cell, in cell order.
    population: children per generation (the original's `pop::size`), even.
    initial_population: random genomes scored and inserted first (`pop::init_size`).
    eval_chunk: at most this many images go through the classifier at once (None: all); with
        a mesh, per device.
    mesh: devices to split the population over (axis name POP_AXIS); None: no sharding.
    emitters: (emitter, children) pairs sharing each generation's population, in population
        order (`jaxfool.search.emitters`); () = the original emitter for the whole population.
    """

    encoding: Encoding
    classifier: Classifier
    classes: tuple[int, ...]
    population: int = 200
    initial_population: int = 200
    eval_chunk: int | None = None
    mesh: Mesh | None = None
    emitters: tuple[tuple[Any, int], ...] = ()

    def __post_init__(self):
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be an even number >= 2, got {self.population}")
        if self.initial_population < 1:
            raise ValueError("initial_population must be >= 1")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be a non-empty list of distinct class indices")
        bad = [c for c in self.classes if not 0 <= c < self.classifier.num_classes]
        if bad:
            raise ValueError(
                f"classes {bad} out of range for {self.classifier.name} "
                f"({self.classifier.num_classes} classes)"
            )
        if self.mesh is not None and self.mesh.axis_names != (POP_AXIS,):
            raise ValueError(f"mesh must have the single axis {POP_AXIS!r}")
        for emitter, count in self.emitters:
            if not hasattr(emitter, "emit") or count < 2 or count % 2:
                raise ValueError(f"bad emitter share {(emitter, count)}")
            if emitter.encoding != self.encoding:
                raise ValueError(f"{type(emitter).__name__} varies another encoding's genomes")
        if self.emitters and sum(c for _, c in self.emitters) != self.population:
            raise ValueError(f"emitter shares {self.emitters} do not sum to the population")
        if self.encoding.image_shape != self.classifier.image_shape:
            raise ValueError(
                f"encoding makes {self.encoding.image_shape} images, "
                f"{self.classifier.name} takes {self.classifier.image_shape}"
            )

    @property
    def emitter_plan(self) -> tuple[tuple[Any, int], ...]:
        """(emitter, children) per emitter of a generation, in population order."""
        return self.emitters or ((Original(self.encoding), self.population),)

    def default_emitter_params(self) -> tuple:
        """Each emitter's default `Params`, in plan order (what `run` uses when given None)."""
        return tuple(e.default_params() for e, _ in self.emitter_plan)


@struct.dataclass
class EvolutionState:
    """Everything that evolves. generation = generations completed (0 after the random start)."""

    archive: archive_lib.Archive
    generation: jax.Array  # int32 []
    evaluations: jax.Array  # int32 [], images scored so far
    nan_scores: jax.Array  # int32 [], children whose scores held a NaN (never inserted)


def evaluate(config: EvolutionConfig, params: Any, genomes: Any) -> tuple[jax.Array, jax.Array]:
    """Expresses and scores genomes.

    Returns (log-probabilities [B, K] of the archive's classes, number of rows with a NaN).
    """
    batch = jax.tree.leaves(genomes)[0].shape[0]
    genomes = shard_population(config.mesh, genomes)
    images = config.encoding.express(genomes)
    log_probs = scoring.score(
        config.classifier.logits, params, images, config.eval_chunk, config.mesh
    )
    log_probs = log_probs[:batch, jnp.asarray(config.classes)]
    nan_rows = jnp.sum(jnp.any(jnp.isnan(log_probs), axis=1), dtype=jnp.int32)
    return log_probs, nan_rows


def shard_population(mesh: Mesh | None, genomes: Any) -> Any:
    """Pads the leading axis to a multiple of the mesh size (with copies of the first genome)
    and splits it over the mesh; without a mesh, returns `genomes` unchanged."""
    if mesh is None:
        return genomes
    batch = jax.tree.leaves(genomes)[0].shape[0]
    pad = -batch % mesh.size

    def split(g):
        if pad:
            g = jnp.concatenate([g, jnp.repeat(g[:1], pad, axis=0)])
        spec = PartitionSpec(POP_AXIS, *([None] * (g.ndim - 1)))
        return jax.lax.with_sharding_constraint(g, NamedSharding(mesh, spec))

    return jax.tree.map(split, genomes)


@partial(jax.jit, static_argnums=0)
def init(config: EvolutionConfig, params: Any, key: jax.Array) -> EvolutionState:
    """Scores `initial_population` random genomes and fills the archive with them."""
    genomes = config.encoding.init(key, config.initial_population)
    example = jax.tree.map(lambda g: g[0], genomes)
    log_probs, nans = evaluate(config, params, genomes)
    archive = archive_lib.insert(
        archive_lib.empty(example, len(config.classes)), genomes, log_probs, 0
    )
    return EvolutionState(archive, jnp.int32(0), jnp.int32(config.initial_population), nans)


def emit(
    config: EvolutionConfig,
    params: Any,
    archive: archive_lib.Archive,
    key: jax.Array,
    generation: jax.Array,
    emitter_params: tuple | None = None,
) -> Any:
    """The generation's children: each emitter its share, concatenated in plan order (one
    emitter uses `key` itself; several use fold_in(key, i))."""
    plan = config.emitter_plan
    emitter_params = config.default_emitter_params() if emitter_params is None else emitter_params
    context = EmitContext(
        config.encoding, config.classifier, config.classes, params, config.eval_chunk
    )
    if len(plan) == 1:
        ((emitter, n),) = plan
        return emitter.emit(key, archive, emitter_params[0], generation, n, context)
    parts = [
        emitter.emit(jax.random.fold_in(key, i), archive, p, generation, n, context)
        for i, ((emitter, n), p) in enumerate(zip(plan, emitter_params, strict=True))
    ]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def tell(config: EvolutionConfig, state: EvolutionState, children: Any, log_probs: jax.Array):
    """Inserts children scored outside (log-probabilities [B, K] of the archive's classes;
    rows with a NaN are counted and never inserted) as generation state.generation + 1."""
    nans = jnp.sum(jnp.any(jnp.isnan(log_probs), axis=1), dtype=jnp.int32)
    generation = state.generation + 1
    return EvolutionState(
        archive=archive_lib.insert(state.archive, children, log_probs, generation),
        generation=generation,
        evaluations=state.evaluations + log_probs.shape[0],
        nan_scores=state.nan_scores + nans,
    )


def step(
    config: EvolutionConfig,
    params: Any,
    state: EvolutionState,
    key: jax.Array,
    emitter_params: tuple | None = None,
):
    """One generation: emit, express, score, insert. Returns the new state."""
    children = emit(config, params, state.archive, key, state.generation, emitter_params)
    log_probs, _ = evaluate(config, params, children)
    return tell(config, state, children, log_probs)


@partial(jax.jit, static_argnums=0)
def ask(
    config: EvolutionConfig,
    params: Any,
    state: EvolutionState,
    key: jax.Array,
    emitter_params: tuple | None = None,
) -> tuple[Any, jax.Array]:
    """(children, their uint8 images) of the next generation, for scoring outside JAX; with
    the run's generations key, `tell` then gives exactly what `run` would."""
    children = emit(
        config, params, state.archive, jax.random.fold_in(key, state.generation),
        state.generation, emitter_params,
    )  # fmt: skip
    return children, config.encoding.express(children)


@partial(jax.jit, static_argnums=0)
def run(
    config: EvolutionConfig,
    params: Any,
    state: EvolutionState,
    key: jax.Array,
    num_generations: jax.Array | int,
    emitter_params: tuple | None = None,
) -> EvolutionState:
    """Runs `num_generations` generations (a traced count: no recompilation per value).
    `emitter_params`: each emitter's Params (default: theirs), traced like the rest."""

    def body(_, s):
        return step(config, params, s, jax.random.fold_in(key, s.generation), emitter_params)

    return jax.lax.fori_loop(0, num_generations, body, state)


def step_many(
    config: EvolutionConfig,
    params: Any,
    states: EvolutionState,
    keys: jax.Array,
    emitter_params: tuple | None = None,
    batch: str = "map",
) -> EvolutionState:
    """One generation of R runs (state leaves and keys with a leading axis R).

    batch="vmap" vectorises the whole generation over runs (one classifier call of R x
    population images: what an accelerator wants). batch="map" vectorises only the insert and
    loops over runs for emit + score (`lax.map`), so the classifier sees one run's batch as in
    `run` and the result is bit-identical to separate runs: on XLA's CPU a LeNet call of 1600
    images costs 1.4-1.9x per image what 8 calls of 200 cost (measured, 2 cores), so vmapping
    the classifier made run_many 0.25x as fast as separate calls.
    """

    def scored_children(state_key):
        state, key = state_key
        children = emit(config, params, state.archive, key, state.generation, emitter_params)
        return children, evaluate(config, params, children)[0]

    if batch == "vmap":
        children, log_probs = jax.vmap(scored_children)((states, keys))
    elif batch == "map":
        children, log_probs = jax.lax.map(scored_children, (states, keys))
    else:
        raise ValueError(f"batch must be 'map' or 'vmap', got {batch!r}")
    return jax.vmap(partial(tell, config))(states, children, log_probs)


def default_batch() -> str:
    """How `run_many` batches runs by default: "map" on CPU, "vmap" on accelerators."""
    return "map" if jax.default_backend() == "cpu" else "vmap"


@partial(jax.jit, static_argnums=(0, 3))
def init_many(
    config: EvolutionConfig, params: Any, init_keys: jax.Array, batch: str | None = None
) -> EvolutionState:
    """`init` for R runs (keys [R]): states with a leading axis R (`batch` as in `step_many`)."""
    one = partial(init, config, params)
    if (default_batch() if batch is None else batch) == "vmap":
        return jax.vmap(one)(init_keys)
    return jax.lax.map(one, init_keys)


@partial(jax.jit, static_argnums=(0, 6))
def run_many_states(
    config: EvolutionConfig,
    params: Any,
    states: EvolutionState,
    loop_keys: jax.Array,
    num_generations: jax.Array | int,
    emitter_params: tuple | None = None,
    batch: str | None = None,
) -> EvolutionState:
    """`run` for R runs at once: states and generation keys with a leading axis R, the same
    traced generation count for all (so a caller can go on in chunks, as `run`'s callers do)."""
    if config.mesh is not None:
        raise ValueError("run_many batches runs on one device; use a config without a mesh")
    batch = default_batch() if batch is None else batch

    def body(_, s):
        keys = jax.vmap(jax.random.fold_in)(loop_keys, s.generation)
        return step_many(config, params, s, keys, emitter_params, batch)

    return jax.lax.fori_loop(0, num_generations, body, states)


def run_many(
    config: EvolutionConfig,
    params: Any,
    seeds: jax.Array,
    num_generations: int,
    emitter_params: tuple | None = None,
    batch: str | None = None,
) -> EvolutionState:
    """R independent runs (seeds int [R]) of `num_generations`, all runs in each of two jitted
    calls (`init_many`, `run_many_states`): state leaves get a leading axis R. Run r equals
    `init` + `run` with seed seeds[r] (bit for bit with batch="map", the CPU default; see
    `step_many`)."""
    if config.mesh is not None:
        raise ValueError("run_many batches runs on one device; use a config without a mesh")
    init_keys, loop_keys = jax.vmap(run_keys)(seeds)
    states = init_many(config, params, init_keys, batch)
    return run_many_states(
        config, params, states, loop_keys, num_generations, emitter_params, batch
    )


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init key, generations key) of a run with this seed."""
    init_key, loop_key = jax.random.split(jax.random.key(seed))
    return init_key, loop_key
