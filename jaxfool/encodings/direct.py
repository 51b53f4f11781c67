"""Direct encoding: one gene in [0, 1] per pixel channel (`gen/evo_float_image.hpp`).

Faithful to the original code by default: genes start U[0, 1), a pixel byte is
floor(gene * 255), each pair of parents is crossed by SBX (eta_c 10) with probability 0.5 or
else copied in random order, and every child gene is then mutated with probability 0.1 by
polynomial mutation (eta_m 15). Options: the paper's schedule (the mutation rate halves every
1000 generations) and mutation-only variation (crossover_rate 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxfool import operators

SCHEDULES = ("constant", "halving")


@dataclass(frozen=True)
class DirectEncoding:
    """Genomes are float32 [H, W, C] in [0, 1]; images are their bytes (grayscale for C = 1)."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    mutation_rate: float = 0.1
    eta_m: float = 15.0
    crossover_rate: float = 0.5
    eta_c: float = 10.0
    mutation_schedule: str = "constant"  # or "halving": the paper's rate / 2 every 1000 gens
    halving_period: int = 1000
    sbx_equal_genes: str = "copy"  # "half" reproduces the original's 0.5-fill quirk

    def __post_init__(self):
        if self.mutation_schedule not in SCHEDULES:
            raise ValueError(f"mutation_schedule must be one of {SCHEDULES}")
        if self.image_shape[-1] != 1:
            raise ValueError("colour (HLS) direct genomes are not implemented yet: use cppn")

    def init(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.uniform(key, (n, *self.image_shape), jnp.float32)

    def rate(self, generation: jax.Array) -> jax.Array:
        """The per-gene mutation probability at `generation` (0-based)."""
        if self.mutation_schedule == "constant":
            return jnp.float32(self.mutation_rate)
        halvings = jnp.asarray(generation, jnp.int32) // self.halving_period
        return jnp.float32(self.mutation_rate) * 0.5 ** halvings.astype(jnp.float32)

    def vary(
        self, key: jax.Array, parents_a: jax.Array, parents_b: jax.Array, generation: jax.Array
    ) -> jax.Array:
        k_cross, k_do, k_order, k_mut = jax.random.split(key, 4)
        n = parents_a.shape[0]
        pair = (n,) + (1,) * (parents_a.ndim - 1)
        x1, x2 = operators.sbx_crossover(
            k_cross, parents_a, parents_b, self.eta_c, self.sbx_equal_genes
        )
        flip = jax.random.bernoulli(k_order, 0.5, pair)
        copy1 = jnp.where(flip, parents_b, parents_a)
        copy2 = jnp.where(flip, parents_a, parents_b)
        cross = jax.random.uniform(k_do, pair) < self.crossover_rate
        c1 = jnp.where(cross, x1, copy1)
        c2 = jnp.where(cross, x2, copy2)
        children = jnp.stack([c1, c2], axis=1).reshape((2 * n,) + parents_a.shape[1:])
        return operators.polynomial_mutation(k_mut, children, self.rate(generation), self.eta_m)

    def express(self, genomes: jax.Array) -> jax.Array:
        return jnp.floor(genomes * 255.0).astype(jnp.uint8)
