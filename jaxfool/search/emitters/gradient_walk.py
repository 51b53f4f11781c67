"""A gradient walk emitter: each child is the best point of a short adaptive ascent from its
parent, `steps` normalised gradient steps on log p(target class), the step length adapted per
child as it goes (a backtracking line search without stored state).

`gradient` takes one step of a length drawn at random and leaves the archive to keep what
worked. Where log p is rugged in the genes (a CPPN with the original's raw pixel-index inputs:
useful steps span 1e-6..1e-3 of the gene range) most of those single steps overshoot or barely
move. Here each child starts with a length drawn as `gradient` draws it, then walks: a step
that raises log p is taken and the next is `grow` times longer; one that lowers it is refused
and the length multiplied by `shrink`. The child is the highest point the walk reached (if no
step rose, the best of the refused ones, so it is never a copy of its parent).

Every step scores the candidate with the same forward pass that gives its gradient (the
encoding's `surrogate`, whose forward values are the real image bytes), so a child costs
`steps + 1` gradient evaluations: at the exact native-size surrogate (`gradient_full`'s),
measured in classifier passes by `benchmark.py --suite=emitters`. Parent and target selection,
the structural mutation first, and the step normalisation are `gradient`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any  # noqa: F401 (the inherited __init__'s annotations resolve here: pdoc)

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.search.emitters.gradient import GradientParams, stepped
from jaxfool.search.emitters.gradient_full import GradientFull

ADAM_B1, ADAM_B2 = 0.9, 0.999  # Adam's defaults (Kingma & Ba 2015)


@struct.dataclass
class GradientWalkParams:
    """step_min, step_max: each child's first step (RMS of the gene change) drawn log-uniformly
    between them; steps: gradient steps per child (a child costs steps + 1 gradients); grow,
    shrink: the length's factor after a step that rose / fell; greedy: 1 refuses a step that
    fell, 0 takes every step (plain ascent, the best point still kept); adam: 1 steps along
    Adam's direction over the walk (fresh moments per child) instead of the gradient;
    random_target, weak_target: probabilities of a random target cell and of the weakest
    (`gradient.target_classes`); kick, patience: a basin hop, Gaussian noise of std `kick` on
    the genes of a parent whose cell has not improved for `patience` generations, before its
    walk (kick 0, the default: off); sweep: 1 takes parents cell after cell; ranked: r > 0 the
    cells of highest p below r first (`gradient.parent_cells`)."""

    step_min: jax.Array
    step_max: jax.Array
    steps: jax.Array = struct.field(default_factory=lambda: jnp.float32(4.0))
    grow: jax.Array = struct.field(default_factory=lambda: jnp.float32(2.0))
    shrink: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.25))
    greedy: jax.Array = struct.field(default_factory=lambda: jnp.float32(1.0))
    adam: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    random_target: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    weak_target: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    kick: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    patience: jax.Array = struct.field(default_factory=lambda: jnp.float32(5.0))
    sweep: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))
    ranked: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))

    limits = {
        **GradientParams.limits,
        "steps": "count",
        "grow": "positive",
        "shrink": "positive",
        "greedy": "switch",
        "adam": "switch",
        "kick": "nonnegative",
        "patience": "nonnegative",
    }


@dataclass(frozen=True)
class GradientWalk(GradientFull):
    params_type = GradientWalkParams

    def emit(self, key, archive, params, generation, n, context):
        return self.walk(key, archive, params, generation, n, context)

    def walk(self, key, archive, params, generation, n, context, stones: bool = False):
        """n walks' best points; with `stones`, also each walk's stepping stone: the point on
        its way that would most lift the other cells (`stone_gain`), as (best, stones)."""
        enc = self.encoding
        parents, targets, moved, length, cells = self.parents_and_targets(
            key, archive, params, n, context, generation
        )
        parents = kicked(jax.random.fold_in(key, 6), enc, archive, parents, cells, moved,
                         params, generation)  # fmt: skip
        is_target = jnp.asarray(context.classes, jnp.int32)[None, :] == targets[:, None]

        def walk(t, state):
            genes, lp, grads, length, best, best_lp, m, v = state[:8]
            m, v, adam = adam_update(grads, m, v, (t + 1).astype(jnp.float32))
            cand = stepped(genes, jnp.where(params.adam > 0.5, adam, grads), moved, length)
            out = self.log_probs_and_grads(
                context, enc.with_genes(parents, cand), targets, cells=stones
            )
            cand_lp, cand_grads = out[:2]
            cand_lp = jnp.where(jnp.isnan(cand_lp), -jnp.inf, cand_lp)
            rose = (cand_lp > lp) | (params.greedy < 0.5)
            better = cand_lp > best_lp
            new = (
                per_child(rose, cand, genes),
                jnp.where(rose, cand_lp, lp),
                per_child(rose, cand_grads, grads),
                jnp.where(
                    rose.reshape(length.shape), length * params.grow, length * params.shrink
                ),  # fmt: skip
                per_child(better, cand, best),
                jnp.where(better, cand_lp, best_lp),
                m,
                v,
            )
            if not stones:
                return new
            stone, stone_lift = state[8:]
            lift = stone_gain(out[2], archive.log_prob, is_target)
            higher = lift > stone_lift
            return new + (per_child(higher, cand, stone), jnp.where(higher, lift, stone_lift))

        genes = enc.genes_of(parents)
        lp, grads = self.log_probs_and_grads(context, parents, targets)
        lp = jnp.where(jnp.isnan(lp), -jnp.inf, lp)
        zeros = jnp.zeros_like(grads)
        state = (genes, lp, grads, length, genes, jnp.full((n,), -jnp.inf), zeros, zeros)
        if stones:
            state = state + (genes, jnp.full((n,), -jnp.inf))
        steps = jnp.maximum(params.steps.astype(jnp.int32), 1)
        state = jax.lax.fori_loop(0, steps, walk, state)
        best = enc.with_genes(parents, state[4])
        return (best, enc.with_genes(parents, state[8])) if stones else best


def per_child(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """jnp.where over a child's leading axis, for genes of any shape."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def adam_update(grads, m, v, t):
    """Adam's moments after one more gradient (NaN or inf entries as 0) and its direction
    m / sqrt(v), bias-corrected for step t (a scalar, or one per child broadcast over the genes):
    a walk normalises that direction as it would a gradient (fresh moments per child)."""
    g = jnp.where(jnp.isfinite(grads), grads, 0.0)
    m = ADAM_B1 * m + (1 - ADAM_B1) * g
    v = ADAM_B2 * v + (1 - ADAM_B2) * g * g
    m_hat, v_hat = m / (1 - ADAM_B1**t), v / (1 - ADAM_B2**t)
    return m, v, m_hat / (jnp.sqrt(v_hat) + 1e-30)


def stone_gain(lp_cells: jax.Array, elite_lp: jax.Array, is_target: jax.Array) -> jax.Array:
    """How much an image would lift the archive's other cells [n]: the sum over cells other
    than its walk's target of max(p - p of the cell's elite, 0), in probability (a cell raised
    from 1e-6 to 1e-4 counts little, one raised to 0.5 much). NaN scores lift nothing."""
    lift = jnp.maximum(jnp.exp(lp_cells) - jnp.exp(elite_lp)[None, :], 0.0)
    lift = jnp.where(is_target | ~jnp.isfinite(lift), 0.0, lift)
    return jnp.sum(lift, axis=-1)


def kicked(key, enc, archive, parents, cells, moved, params, generation):
    """Parents whose cell has not improved for `patience` generations, with Gaussian noise of
    std `kick` on their moved genes (a basin hop before the walk); the others as they are."""
    genes = enc.genes_of(parents)
    stale = generation - archive.last_improved[cells] >= params.patience
    shape = (cells.shape[0],) + (1,) * (genes.ndim - 1)
    noise = params.kick * jax.random.normal(key, genes.shape) * moved
    hop = jnp.clip(genes + noise, 0.0, 1.0)
    return enc.with_genes(parents, jnp.where(stale.reshape(shape) & (params.kick > 0), hop, genes))
