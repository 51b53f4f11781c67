"""MAP-Elites archive over classes, as the original code keeps it (`map_elite.hpp`).

One cell per class. A child is scored on all K classes and takes every cell where it beats the
occupant (strict >, an empty cell is beaten by anything finite), so one child may hold many
cells. Parents are drawn uniformly over occupied cells, which makes an elite that holds k cells
k times as likely to be picked. Fitness is a log-probability, so 0.99999 and 0.999999 (both 1.0
in a float32 softmax) still compare correctly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Archive:
    """Elites per class cell. All leaves have leading axis K (number of cells).

    genomes: pytree of the elites' genomes, [K, ...].
    log_prob: float32 [K], the elite's log-probability of the cell's class; -inf if empty.
    last_improved: int32 [K], generation of the latest takeover; -1 if empty.
    takeovers: int32 [K], how many times a child took the cell (the original's "jumps").
    """

    genomes: Any
    log_prob: jax.Array
    last_improved: jax.Array
    takeovers: jax.Array

    @property
    def num_cells(self) -> int:
        return self.log_prob.shape[0]

    @property
    def occupied(self) -> jax.Array:
        return self.log_prob > -jnp.inf


def empty(genome_example: Any, num_cells: int) -> Archive:
    """An archive of `num_cells` empty cells for genomes shaped like `genome_example`."""
    genomes = jax.tree.map(
        lambda g: jnp.zeros((num_cells,) + jnp.shape(g), jnp.asarray(g).dtype), genome_example
    )
    return Archive(
        genomes=genomes,
        log_prob=jnp.full((num_cells,), -jnp.inf, jnp.float32),
        last_improved=jnp.full((num_cells,), -1, jnp.int32),
        takeovers=jnp.zeros((num_cells,), jnp.int32),
    )


def insert(
    archive: Archive, genomes: Any, log_probs: jax.Array, generation: jax.Array | int
) -> Archive:
    """Inserts a batch of children, with the same result as inserting them one by one in order.

    genomes: pytree with leading axis B; log_probs: float [B, K], the children's log-probability
    of each cell's class (NaN counts as -inf: never inserted). For each cell the first child with
    the highest score wins if it beats the occupant; `takeovers` counts every child that would
    have taken the cell in sequential insertion (a new running maximum).
    """
    lp = jnp.where(jnp.isnan(log_probs), -jnp.inf, log_probs).astype(jnp.float32)
    winner = jnp.argmax(lp, axis=0)  # [K], first maximum = sequential order with strict >
    best = jnp.take_along_axis(lp, winner[None], axis=0)[0]
    improved = best > archive.log_prob

    running = jax.lax.cummax(lp, axis=0)
    before = jnp.concatenate([jnp.full_like(lp[:1], -jnp.inf), running[:-1]], axis=0)
    jumps = jnp.sum(lp > jnp.maximum(before, archive.log_prob[None]), axis=0, dtype=jnp.int32)

    def take(old, new):
        mask = improved.reshape((-1,) + (1,) * (old.ndim - 1))
        return jnp.where(mask, new[winner], old)

    return Archive(
        genomes=jax.tree.map(take, archive.genomes, genomes),
        log_prob=jnp.where(improved, best, archive.log_prob),
        last_improved=jnp.where(
            improved, jnp.asarray(generation, jnp.int32), archive.last_improved
        ),
        takeovers=archive.takeovers + jumps,
    )


def select(archive: Archive, key: jax.Array, n: int) -> jax.Array:
    """Draws `n` occupied cell indices uniformly, with replacement: int32 [n]."""
    logits = jnp.where(archive.occupied, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, shape=(n,)).astype(jnp.int32)


def gather(archive: Archive, cells: jax.Array) -> Any:
    """The genomes held by `cells` (int [n]): pytree with leading axis n."""
    return jax.tree.map(lambda g: g[cells], archive.genomes)
