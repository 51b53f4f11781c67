"""Gradient walks that leave stepping stones: half the children are walks (`gradient_walk`),
the other half the point on each walk's way that would most lift the archive's other cells.

A walk scores every point it passes against all the archive's classes (the forward pass of its
gradient), but only its best point for its own target becomes a child. On 1000 ImageNet classes
that wastes what makes later walks good: cells walked after other walks had filled the archive
ended far higher (median 0.90-0.94) than the first 300, walked from random CPPNs (0.27-0.56).
Here each walk also returns its stone, the point with the largest `stone_gain` (the summed rise
in probability of the other cells over their elites, by the walk's own scores), which the run
scores as any child: one classifier pass, against the walk's `steps + 1` gradients. With an
odd population the walks take the extra child. Settings are `gradient_walk`'s; `sweep` takes
the cells in turn at the walks' pace (n // 2 + n % 2 cells a generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any  # noqa: F401 (the inherited __init__'s annotations resolve here: pdoc)

import jax
import jax.numpy as jnp

from jaxfool.search.emitters.gradient_walk import GradientWalk


@dataclass(frozen=True)
class GradientWalkStones(GradientWalk):
    def emit(self, key, archive, params, generation, n, context):
        walks = n - n // 2
        best, stones = self.walk(key, archive, params, generation, walks, context, stones=True)
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b[: n // 2]]), best, stones)
