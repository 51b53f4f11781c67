"""Iso+line variation (Vassiliades & Mouret, GECCO 2018; QDax's `isoline_variation`) on real
genes: child = a + iso_sigma * N(0, I) + line_sigma * N(0, 1) * (b - a) for parents a, b drawn
uniformly over occupied cells, clipped to the genes' range [0, 1].

Direct genomes: every pixel gene (uint8 genomes are decoded to the centre of their byte and
encoded again). CPPN genomes: the connection weight genes (the weight is 20 g - 10); the
structure still varies by the original's mutations (parent a is mutated first), and the line
term uses b's weight where b has the same connection (src, dst) in the same slot, else none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.search import archive as archive_lib
from jaxfool.search.emitters import register


@struct.dataclass
class IsolineParams:
    """iso_sigma: isotropic noise per gene; line_sigma: spread along b - a (QDax's defaults
    are 0.005 / 0.05 for genes in [0, 1]; ours from MNIST runs, see README; these field
    defaults are the CPPN weights', `Isoline.default_params` gives direct pixels their own)."""

    iso_sigma: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.01))
    line_sigma: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.1))


def iso_line(key: jax.Array, a: jax.Array, b: jax.Array, params: IsolineParams) -> jax.Array:
    """Iso+line children of parent arrays a, b [n, ...] (one line draw per child), in [0, 1]."""
    k_iso, k_line = jax.random.split(key)
    iso = params.iso_sigma * jax.random.normal(k_iso, a.shape)
    line = params.line_sigma * jax.random.normal(k_line, (a.shape[0],) + (1,) * (a.ndim - 1))
    return jnp.clip(a + iso + line * (b - a), 0.0, 1.0)


@register("isoline")
@dataclass(frozen=True)
class Isoline:
    encoding: Any

    def default_params(self) -> IsolineParams:
        if hasattr(self.encoding, "decode"):
            # direct pixels, MNIST seeds 0-1, 300 generations: (0.05, 0.01) all ten digits
            # >= 0.9999 by ~190-220 (the original's pace); the line term between unrelated
            # classes' elites hurts: (0.01, 0.1) 1 of 10 at 200, (0.02, 0.05) 2, (0.05, 0) 9
            return IsolineParams(iso_sigma=jnp.float32(0.05), line_sigma=jnp.float32(0.01))
        return IsolineParams()

    def emit(self, key, archive, params, generation, n, context=None):
        del context
        k_select, k_vary, k_struct = jax.random.split(key, 3)
        parents = archive_lib.gather(archive, archive_lib.select(archive, k_select, 2 * n))
        a = jax.tree.map(lambda g: g[0::2], parents)
        b = jax.tree.map(lambda g: g[1::2], parents)
        if hasattr(self.encoding, "decode"):  # direct: pixel genes
            enc = self.encoding
            return enc.encode(iso_line(k_vary, enc.decode(a), enc.decode(b), params))
        # CPPN: structure (and the original's weight mutation) from a, then iso+line weights
        mutated = jax.vmap(self.encoding.mutate)(jax.random.split(k_struct, n), a)
        same = mutated.edge_alive & b.edge_alive & (mutated.src == b.src) & (mutated.dst == b.dst)
        partner = jnp.where(same, b.weight, mutated.weight)
        weight = iso_line(k_vary, mutated.weight, partner, params)
        return mutated.replace(weight=jnp.where(mutated.edge_alive, weight, mutated.weight))
