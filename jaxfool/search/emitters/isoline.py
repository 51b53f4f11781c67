"""Iso+line variation (Vassiliades & Mouret, GECCO 2018; QDax's `isoline_variation`) on real
genes: child = a + iso_sigma * N(0, I) + line_sigma * N(0, 1) * (b - a) for parents a, b drawn
uniformly over occupied cells, clipped to the genes' range [0, 1].

The genes are the encoding's (`genes_of`): every pixel gene of a direct genome (uint8 genomes
decoded to the centre of their byte and encoded again), the connection weight genes of a CPPN
(weight 20 g - 10). Parent a first gets the encoding's own structural mutation (a CPPN's
original mutations; none for pixels), and b's genes enter the line term as the encoding aligns
them with a's (`partner_genes`: for a CPPN, b's weight where b has the same connection in the
same slot, else none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.search import archive as archive_lib


@struct.dataclass
class IsolineParams:
    """iso_sigma: isotropic noise per gene; line_sigma: spread along b - a (QDax's defaults
    are 0.005 / 0.05 for genes in [0, 1]; each encoding gives its measured ones, `tuned`)."""

    iso_sigma: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.01))
    line_sigma: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.1))

    limits = {"iso_sigma": "nonnegative", "line_sigma": "nonnegative"}


def iso_line(key: jax.Array, a: jax.Array, b: jax.Array, params: IsolineParams) -> jax.Array:
    """Iso+line children of parent arrays a, b [n, ...] (one line draw per child), in [0, 1]."""
    k_iso, k_line = jax.random.split(key)
    iso = params.iso_sigma * jax.random.normal(k_iso, a.shape)
    line = params.line_sigma * jax.random.normal(k_line, (a.shape[0],) + (1,) * (a.ndim - 1))
    return jnp.clip(a + iso + line * (b - a), 0.0, 1.0)


@dataclass(frozen=True)
class Isoline:
    encoding: Any

    def default_params(self) -> IsolineParams:
        tuned = self.encoding.tuned("isoline")
        return IsolineParams().replace(**{k: jnp.float32(v) for k, v in tuned.items()})

    def emit(self, key, archive, params, generation, n, context=None):
        del context
        enc = self.encoding
        k_select, k_vary, k_struct = jax.random.split(key, 3)
        parents = archive_lib.gather(archive, archive_lib.select(archive, k_select, 2 * n))
        a = jax.tree.map(lambda g: g[0::2], parents)
        b = jax.tree.map(lambda g: g[1::2], parents)
        a = enc.mutate_structure(k_struct, a)
        child = iso_line(k_vary, enc.genes_of(a), enc.partner_genes(a, b), params)
        return enc.with_genes(a, child)
