"""A gradient emitter (the DQD family: OMG-MEGA / CMA-MEGA, Fontaine & Nikolaidis 2021; PGA-ME):
children = parent + a step along the gradient of log p(target class) of the expressed image.

Parents are drawn uniformly over occupied cells (or, with `sweep`, cell after cell: every cell
gets a child in turn, as a run over many classes with few children each needs); each child's
target is its parent's cell, or
with probability `random_target` a uniformly random cell (a stepping stone into another
class), or with probability `weak_target` the cell of lowest log p (goal switching aimed where
the archive is worst). The step is the gradient normalised to unit RMS per child (over the
genes it moves), times a step length drawn log-uniformly in [step_min, step_max] per child:
log p's gradient spans orders of magnitude between a fresh image and one at 0.9999, so a
normalised step keeps moving at both ends, and without per-child optimiser state (Adam state
would have to live in the archive, where elites change owner; `gradient_walk` keeps it within
one child's walk). The spread of lengths matters for CPPNs: with the original's raw
pixel-index inputs, log p is so rugged in the weights that steps above ~1e-3 overshoot
(measured against finite differences; normalized inputs take 1e-2), while direct pixels take
0.05 in one go; the population tries both ends and the archive keeps what worked.

Children first get the encoding's structural mutation (a CPPN's `DnnFF::mutate`: weights,
activations, and the structural operators; none for pixels), then are stepped: a weight step
alone cannot grow the network, and from the original's initial CPPNs (no hidden nodes) it
stalls (seed 0, MNIST, normalized coordinates: 9 of 10 digits >= 0.9999 at generation 20-50,
one at 0.80; mutated first: all ten by generation 10).

What is differentiated: the encoding's genes (`genes_of`: every pixel gene of a direct genome,
every connection weight gene of a CPPN) through its `surrogate` of `express` (exact bytes
forward, the continuous formula backward; a CPPN's at most `grad_size` pixels a side, resized
to the image size, so ImageNet gradients stay in memory). Children are always scored and
archived through the real `express`, never the surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.classifiers import scoring
from jaxfool.search import archive as archive_lib

# steps for genes an encoding has no measured range for (the pixel genes' step)
FALLBACK_STEPS = {"step_min": 0.05, "step_max": 0.05}


@struct.dataclass
class GradientParams:
    """step_min, step_max: each child's step (the RMS of its gene change, genes in [0, 1]) is
    drawn log-uniformly between them; random_target, weak_target: probabilities of a random
    target cell and of the weakest cell (`target_classes`); sweep: 1 takes parents cell after
    cell instead of at random; ranked: r > 0 takes the cells of highest p below r first
    (`parent_cells`)."""

    step_min: jax.Array
    step_max: jax.Array
    random_target: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    weak_target: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    sweep: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    ranked: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))

    # what `--emitter_params` may set each field to (`emitter_text.LIMITS`)
    limits = {
        "step_min": "positive",
        "step_max": "positive",
        "random_target": "probability",
        "weak_target": "probability",
        "sweep": "switch",
        "ranked": "probability",
    }


@dataclass(frozen=True)
class Gradient:
    encoding: Any
    grad_size: int = 64  # surrogate images at most this many pixels a side (CPPN memory)

    params_type = GradientParams  # a subclass with more params names its own

    def default_params(self):
        steps = {**FALLBACK_STEPS, **self.encoding.tuned("gradient")}
        return self.params_type(**{k: jnp.float32(v) for k, v in steps.items()})

    def log_prob_grads(self, context, genomes, targets: jax.Array) -> jax.Array:
        """d log p(class targets[i]) / d genes of child i, for every child [n, genes...];
        `context.eval_chunk` children at a time (memory bounded as scoring's)."""
        return self.log_probs_and_grads(context, genomes, targets)[1]

    def log_probs_and_grads(self, context, genomes, targets: jax.Array, cells: bool = False):
        """(log p(class targets[i]) of child i's surrogate image [n], `log_prob_grads`): the
        value comes with the gradient's forward pass at no extra cost. cells: also the image's
        log p of every archive cell's class [n, cells] (the same pass), as a third value."""
        enc = self.encoding
        logits = context.classifier.logits
        # the same forward values, differentiated faster where the network offers it (LeNet)
        logits = logits.for_input_grads() if hasattr(logits, "for_input_grads") else logits
        classes = jnp.asarray(context.classes, jnp.int32)

        def grads(args):
            genomes, targets = args

            def total(genes):
                images = enc.surrogate(genomes, genes, self.grad_size)
                lp_all = scoring.log_probs(logits, context.clf_params, images)
                lp = jnp.take_along_axis(lp_all, targets[:, None], axis=1)[:, 0]
                return jnp.sum(lp), ((lp, lp_all[:, classes]) if cells else lp)

            (_, lp), g = jax.value_and_grad(total, has_aux=True)(enc.genes_of(genomes))
            return (lp[0], g, lp[1]) if cells else (lp, g)

        n = targets.shape[0]
        chunk = context.eval_chunk
        if chunk is None or chunk >= n:
            return grads((genomes, targets))
        # log p of child i depends on its own genes only, so the gradient is taken `chunk`
        # children at a time and the classifier's backward pass holds one chunk's activations
        steps = -(-n // chunk)
        pad = steps * chunk - n

        def blocks(x):
            x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]) if pad else x
            return x.reshape((steps, chunk) + x.shape[1:])

        out = jax.lax.map(grads, jax.tree.map(blocks, (genomes, targets)))
        return jax.tree.map(lambda x: x.reshape((steps * chunk,) + x.shape[2:])[:n], out)

    def parents_and_targets(self, key, archive, params, n, context, generation=0):
        """n parents (structurally mutated), their target classes, the genes a step moves,
        each child's step length and its parent's cell: what every gradient emitter draws
        before it steps."""
        enc = self.encoding
        k_select, k_random, k_use, k_step = jax.random.split(key, 4)
        cells = parent_cells(k_select, archive, params, generation, n)
        parents = archive_lib.gather(archive, cells)
        parents = enc.mutate_structure(jax.random.fold_in(key, 1), parents)
        targets = target_classes(key, (k_random, k_use), archive, cells, params, context)
        moved = enc.gene_mask(parents)
        u = jax.random.uniform(k_step, (n,) + (1,) * (moved.ndim - 1))
        length = params.step_min * (params.step_max / params.step_min) ** u
        return parents, targets, moved, length, cells

    def emit(self, key, archive, params, generation, n, context):
        parents, targets, moved, length, _ = self.parents_and_targets(
            key, archive, params, n, context, generation
        )
        grads = self.log_prob_grads(context, parents, targets)
        genes = self.encoding.genes_of(parents)
        return self.encoding.with_genes(parents, stepped(genes, grads, moved, length))


def parent_cells(key, archive, params, generation, n: int) -> jax.Array:
    """The n parents' cells: drawn uniformly over occupied cells, or with `sweep` cell after
    cell, child i of generation g taking cell (g n + i) mod cells (a run of n = cells children
    gives every cell one; an empty swept cell gets the random draw instead), or with `ranked`
    (r > 0) the n cells of highest elite p below r, highest first (cells at or above r after
    them, then the order repeats; an empty cell gets the random draw).

    `ranked` with `sweep`: cells in turn from the second generation on (child i of generation
    g >= 1 takes cell ((g - 1) n + i) mod cells if its elite is below r), and every other turn
    (the whole first generation, a cell already at r) goes to the rank order over the cells
    not walked in turn this generation: walks start where the random start looks most like
    the class, and no walk is spent on a class at r."""
    drawn = archive_lib.select(archive, key, n)
    generation = jnp.asarray(generation, jnp.int32)
    swept = (generation * n + jnp.arange(n, dtype=jnp.int32)) % archive.num_cells
    use_sweep = (params.sweep > 0.5) & archive.occupied[swept]
    cells = jnp.where(use_sweep, swept, drawn)
    turn = (swept - n) % archive.num_cells  # sweep's cells one generation later
    in_turn = (
        (params.sweep > 0.5)
        & (generation >= 1)
        & archive.occupied[turn]
        & (archive.log_prob[turn] < jnp.log(params.ranked))
    )
    # the cells walked in turn leave the rank order (as if empty: last), so none gets two walks
    taken = jnp.zeros(archive.num_cells, bool).at[turn].max(in_turn)
    order = ranked_cells(jnp.where(taken, -jnp.inf, archive.log_prob), params.ranked)
    by_rank = order[(jnp.cumsum(~in_turn) - 1) % archive.num_cells]
    chosen = jnp.where(in_turn, turn, by_rank)
    use_ranked = (params.ranked > 0) & archive.occupied[chosen]
    return jnp.where(use_ranked, chosen, cells)


def ranked_cells(log_prob: jax.Array, below: jax.Array) -> jax.Array:
    """All cells: those whose elite's p is below `below` first, from the highest p down, then
    the rest (at or above it), then empty cells; ties by cell index. A run
    of walks that takes them in this order goes first where other walks' images already lifted
    a class part of the way, and stops walking a class once it reaches `below`."""
    occupied = log_prob > -jnp.inf
    under = occupied & (log_prob < jnp.log(below))
    # one sort key: below the bar its log p, at or above it below every such value, empty last
    rank = jnp.where(under, log_prob, jnp.where(occupied, -1e30, -jnp.inf))
    return jnp.argsort(-rank, stable=True).astype(jnp.int32)


def target_classes(key, keys, archive, cells: jax.Array, params, context) -> jax.Array:
    """Each child's target class: its parent's cell's, or with probability `random_target` a
    uniformly random cell's, or with probability `weak_target` the weakest cell's (lowest log p,
    an empty one first: goal switching aimed where the archive is worst)."""
    k_random, k_use = keys
    n = cells.shape[0]
    random_cells = jax.random.randint(k_random, (n,), 0, archive.num_cells)
    use_random = jax.random.uniform(k_use, (n,)) < params.random_target
    cells = jnp.where(use_random, random_cells, cells)
    # its own key, so that weak_target = 0 keeps the draws (and children) of before it existed
    use_weak = jax.random.uniform(jax.random.fold_in(key, 2), (n,)) < params.weak_target
    cells = jnp.where(use_weak, jnp.argmin(archive.log_prob), cells)
    return jnp.asarray(context.classes, jnp.int32)[cells]


def stepped(genes: jax.Array, grads: jax.Array, moved: jax.Array, length: jax.Array) -> jax.Array:
    """genes + a step along grads of RMS `length` per child over the `moved` genes, in [0, 1].
    A gene whose gradient is not finite (a CPPN with raw inputs can overflow in the backward
    pass) is not moved, so a child never inherits NaN genes."""
    grads = jnp.where(jnp.isfinite(grads), grads, 0.0)
    axes = tuple(range(1, grads.ndim))
    count = jnp.maximum(jnp.sum(moved, axis=axes, keepdims=True), 1.0)
    rms = jnp.sqrt(jnp.sum(moved * grads * grads, axis=axes, keepdims=True) / count)
    step = moved * length * grads / jnp.maximum(rms, 1e-30)
    return jnp.clip(genes + step, 0.0, 1.0)
