"""Gradient walks that hand on what they do not need: a walk whose best point reaches p >= `relay`
for its target stops there and spends the rest of its steps on a second walk, from the elite of
the cell of highest p below `relay` that no walk of this generation has taken yet.

With one walk per class and a budget of one walk a class, what counts is how many classes a
walk lifts past a bar (0.8811, the paper's median). A `gradient_walk` walk that passes the bar
after 15 of its 37 steps spends the other 22 making a fooling image more certain. Here those
steps go to a class that is already most of the way (the highest p below `relay` not walked
this generation: on 1000 ImageNet classes such walks crossed 0.8811 86% of the time, walks from
the cells in turn 47%). Half the children are the first legs (`gradient_walk`'s children bit
for bit while none reaches `relay`), the other half the second legs (a walk that never reached
`relay` gives its best point again, which costs one classifier pass and changes nothing). A
generation costs what `gradient_walk`'s costs with n // 2 + n % 2 children (a second leg's
first step evaluates its parent, in the walk's own step count) plus one pass per child.
Settings are `gradient_walk`'s and `relay`; `sweep` and `ranked` choose the first legs' cells
at the walks' pace (n // 2 + n % 2 cells a generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any  # noqa: F401 (the inherited __init__'s annotations resolve here: pdoc)

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.search import archive as archive_lib
from jaxfool.search.emitters.gradient import ranked_cells, stepped
from jaxfool.search.emitters.gradient_walk import (
    GradientWalk,
    GradientWalkParams,
    adam_update,
    kicked,
    per_child,
)


@struct.dataclass
class GradientWalkRelayParams(GradientWalkParams):
    """`gradient_walk`'s settings; relay: a walk whose best point reaches p >= relay hands its
    remaining steps to a second walk (0: never, the first legs are `gradient_walk`'s walks)."""

    relay: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.9))

    limits = {**GradientWalkParams.limits, "relay": "probability"}


@dataclass(frozen=True)
class GradientWalkRelay(GradientWalk):
    params_type = GradientWalkRelayParams

    def emit(self, key, archive, params, generation, n, context):
        first, second = self.relay_walk(key, archive, params, generation, n - n // 2, context)
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b[: n // 2]]), first, second)

    def relay_walk(self, key, archive, params, generation, n, context):
        """n walks of `steps` steps each, as (first legs' best points, second legs' best
        points); a walk that never reached `relay` gives its first leg's best point twice."""
        enc = self.encoding
        parents, targets, moved, length, cells = self.parents_and_targets(
            key, archive, params, n, context, generation
        )
        parents = kicked(jax.random.fold_in(key, 6), enc, archive, parents, cells, moved,
                         params, generation)  # fmt: skip
        # the second legs' cells, in the order walks hand on: highest p below relay first,
        # none a first leg's cell (a handed-on walk never repeats this generation's walk)
        taken = jnp.zeros(archive.num_cells, bool).at[cells].set(True)
        order = ranked_cells(jnp.where(taken, -jnp.inf, archive.log_prob), params.relay)[:n]
        relief = enc.mutate_structure(
            jax.random.fold_in(key, 7), archive_lib.gather(archive, order)
        )
        relief_targets = jnp.asarray(context.classes, jnp.int32)[order]
        relief_moved = enc.gene_mask(relief)
        relief_genes = enc.genes_of(relief)
        bar = jnp.where(params.relay > 0, jnp.log(params.relay), jnp.inf)

        def walk(t, state):
            (parents, targets, moved, length, genes, lp, grads, best, best_lp, m, v, k,
             fresh, second, first, handed) = state  # fmt: skip
            # Adam's step count is per child: a second leg starts its own from 1
            k_new = k + 1.0
            kk = k_new.reshape(k.shape + (1,) * (grads.ndim - 1))
            m_new, v_new, adam = adam_update(grads, m, v, kk)
            step = stepped(genes, jnp.where(params.adam > 0.5, adam, grads), moved, length)
            # a second leg's first step scores its parent (the gradient the walk goes on from)
            cand = per_child(fresh, genes, step)
            cand_lp, cand_grads = self.log_probs_and_grads(
                context, enc.with_genes(parents, cand), targets
            )
            cand_lp = jnp.where(jnp.isnan(cand_lp), -jnp.inf, cand_lp)
            rose = (cand_lp > lp) | (params.greedy < 0.5) | fresh
            better = cand_lp > best_lp
            grown = jnp.where(
                rose.reshape(length.shape), length * params.grow, length * params.shrink
            )
            length = per_child(fresh, length, grown)
            m, v = per_child(fresh, m, m_new), per_child(fresh, v, v_new)
            k = jnp.where(fresh, k, k_new)
            genes, lp = per_child(rose, cand, genes), jnp.where(rose, cand_lp, lp)
            grads = per_child(rose, cand_grads, grads)
            best, best_lp = per_child(better, cand, best), jnp.where(better, cand_lp, best_lp)
            # first legs at the bar hand on, in child order, to the next cells of the order
            hands = ~second & (best_lp >= bar)
            j = jnp.clip(handed + jnp.cumsum(hands) - 1, 0, n - 1)
            first = per_child(hands, best, first)
            parents = jax.tree.map(lambda r, p: per_child(hands, r[j], p), relief, parents)
            targets = jnp.where(hands, relief_targets[j], targets)
            moved = per_child(hands, relief_moved[j], moved)
            best = per_child(hands, relief_genes[j], best)
            genes = per_child(hands, relief_genes[j], genes)
            length = per_child(hands, length0, length)
            zeros = jnp.zeros_like(m)
            lp = jnp.where(hands, -jnp.inf, lp)
            best_lp = jnp.where(hands, -jnp.inf, best_lp)
            grads, m, v = (per_child(hands, zeros, x) for x in (grads, m, v))
            k = jnp.where(hands, 0.0, k)
            return (parents, targets, moved, length, genes, lp, grads, best, best_lp, m, v, k,
                    hands, second | hands, first, handed + jnp.sum(hands))  # fmt: skip

        genes = enc.genes_of(parents)
        lp, grads = self.log_probs_and_grads(context, parents, targets)
        lp = jnp.where(jnp.isnan(lp), -jnp.inf, lp)
        zeros = jnp.zeros_like(grads)
        length0 = length  # a second leg starts at its slot's first length
        no = jnp.zeros((n,), bool)
        state = (parents, targets, moved, length, genes, lp, grads, genes,
                 jnp.full((n,), -jnp.inf), zeros, zeros, jnp.zeros((n,)), no, no, genes,
                 jnp.int32(0))  # fmt: skip
        steps = jnp.maximum(params.steps.astype(jnp.int32), 1)
        state = jax.lax.fori_loop(0, steps, walk, state)
        legs, best, second, first = state[0], state[7], state[13], state[14]
        return (
            enc.with_genes(parents, per_child(second, first, best)),
            enc.with_genes(legs, best),
        )
