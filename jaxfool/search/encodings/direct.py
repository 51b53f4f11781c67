"""Direct encoding: one gene in [0, 1] per pixel channel (`gen/evo_float_image.hpp`).

Faithful to the original code by default: genes start U[0, 1), a pixel byte is
floor(gene * 255), each pair of parents is crossed by SBX (eta_c 10) with probability 0.5 or
else copied in random order, and every child gene is then mutated with probability 0.1 by
polynomial mutation (eta_m 15). Options: the paper's schedule (the mutation rate halves every
1000 generations) and mutation-only variation (crossover_rate 0).

Colour images (C = 3) are read as the original does: the three bytes of a pixel are OpenCV HLS
(H, L, S), converted to RGB before the classifier (`phen_image_direct.hpp`).

Genes are float32 by default (exactly the original). `genes="uint8"` stores each gene as its
pixel byte floor(g * 255) instead: 4x smaller (a 1000-class archive of 256 x 256 x 3 genomes
is 197 MB instead of 786 MB) and the stored genome *is* the image. Variation decodes a byte b
to the gene (b + 0.5) / 255 (clipped to 1), the centre of the genes that make that byte, so
expressing an undecoded child gives the same bytes; what is lost is the sub-byte remainder a
float gene would carry into the next generation.

Variation has a CPU form (children varied in blocks looped over, random words unrolled) and an
accelerator form (one pass, JAX's Threefry), chosen by `backend` (`jaxfool.base.platforms`); both
give the same children.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.base import platforms
from jaxfool.search import operators
from jaxfool.search.encodings.color import hls_bytes_to_rgb, hsv_bytes_to_rgb
from jaxfool.search.encodings.surrogate import byte_image, straight_through

SCHEDULES = ("constant", "halving")
GENE_FORMATS = ("float32", "uint8")
COLORS = ("hls", "hsv")
# Emitter defaults measured on pixel genes (MNIST, shipped LeNet):
# - isoline (iso_sigma, line_sigma) = (0.05, 0.01): seeds 0-1, 300 generations, all ten digits
#   >= 0.9999 by ~190-220 (the original's pace); the line term between unrelated classes'
#   elites hurts: (0.01, 0.1) 1 of 10 at 200, (0.02, 0.05) 2, (0.05, 0) 9;
# - gradient step 0.05 (RMS of the gene change): every digit >= 0.9999 in ~9 generations.
TUNED = {
    "isoline": {"iso_sigma": 0.05, "line_sigma": 0.01},
    "gradient": {"step_min": 0.05, "step_max": 0.05},
}


@struct.dataclass
class DirectRates:
    """The direct variation's numbers as a runtime pytree (the original emitter's Params): a
    new value does not recompile. Defaults: the encoding's fields."""

    mutation_rate: Any
    eta_m: Any
    crossover_rate: Any
    eta_c: Any

    limits = {
        "mutation_rate": "probability",
        "eta_m": "nonnegative",
        "crossover_rate": "probability",
        "eta_c": "nonnegative",
    }


@dataclass(frozen=True)
class DirectEncoding:
    """Genomes are [H, W, C] genes in [0, 1] (float32, or their bytes with genes="uint8");
    images are their bytes: grayscale for C = 1, HLS (or HSV) bytes -> RGB for C = 3."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    mutation_rate: float = 0.1
    eta_m: float = 15.0
    crossover_rate: float = 0.5
    eta_c: float = 10.0
    mutation_schedule: str = "constant"  # or "halving": the paper's rate / 2 every 1000 gens
    halving_period: int = 1000
    sbx_equal_genes: str = "copy"  # "half" reproduces the original's 0.5-fill quirk
    genes: str = "float32"  # or "uint8": store each gene as its pixel byte (compact archive)
    color: str = "hls"  # colour bytes are OpenCV HLS (original) or HSV (the paper's wording)
    vary_block_genes: int = 2**22  # children's genes varied per loop step (CPU form)
    backend: str = "auto"  # variation's CPU or accelerator form, or auto (jaxfool.base.platforms)

    def __post_init__(self):
        if self.mutation_schedule not in SCHEDULES:
            raise ValueError(f"mutation_schedule must be one of {SCHEDULES}")
        if self.genes not in GENE_FORMATS:
            raise ValueError(f"genes must be one of {GENE_FORMATS}, got {self.genes!r}")
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {self.color!r}")
        if self.image_shape[-1] not in (1, 3):
            raise ValueError(f"images need 1 or 3 channels, got shape {self.image_shape}")
        if self.vary_block_genes < 1:
            raise ValueError(f"vary_block_genes must be >= 1, got {self.vary_block_genes}")
        platforms.check_backend(self.backend)

    @classmethod
    def from_settings(cls, image_shape: tuple[int, int, int], settings) -> DirectEncoding:
        """The encoding of a run's settings (`direct_genes` "auto": uint8 for colour images,
        float32 for gray; the variation's rates and options)."""
        genes = settings.get("direct_genes", "auto")
        if genes == "auto":
            genes = "uint8" if image_shape[-1] == 3 else "float32"
        names = ("mutation_rate", "crossover_rate", "mutation_schedule", "sbx_equal_genes")
        options = {name: settings[name] for name in names if name in settings}
        return cls(image_shape=tuple(image_shape), genes=genes, **options)

    def init(self, key: jax.Array, n: int) -> jax.Array:
        return self.encode(jax.random.uniform(key, (n, *self.image_shape), jnp.float32))

    def encode(self, genes: jax.Array) -> jax.Array:
        """float32 genes in [0, 1] -> the stored genome (the same, or its bytes)."""
        return genes if self.genes == "float32" else self.to_bytes(genes)

    def decode(self, genomes: jax.Array) -> jax.Array:
        """Stored genome -> float32 genes in [0, 1] (a byte b -> the centre of its gene range)."""
        if self.genes == "float32":
            return genomes
        return jnp.minimum((genomes.astype(jnp.float32) + 0.5) / 255.0, 1.0)

    @staticmethod
    def to_bytes(genes: jax.Array) -> jax.Array:
        """Pixel bytes floor(g * 255) of float genes (`int(gene * 255)` in the original)."""
        return jnp.floor(genes * 255.0).astype(jnp.uint8)

    def default_rates(self) -> DirectRates:
        """This encoding's variation numbers, as float32 scalars."""
        return DirectRates(
            *(jnp.float32(getattr(self, f)) for f in DirectRates.__dataclass_fields__)
        )

    def rate(self, generation: jax.Array, mutation_rate: Any = None) -> jax.Array:
        """The per-gene mutation probability at `generation` (0-based)."""
        base = self.mutation_rate if mutation_rate is None else mutation_rate
        if self.mutation_schedule == "constant":
            return jnp.float32(base)
        halvings = jnp.asarray(generation, jnp.int32) // self.halving_period
        return jnp.float32(base) * 0.5 ** halvings.astype(jnp.float32)

    def vary(
        self,
        key: jax.Array,
        parents_a: jax.Array,
        parents_b: jax.Array,
        generation: jax.Array,
        rates: DirectRates | None = None,
    ) -> jax.Array:
        """Children [2n, ...] of n parent pairs: SBX with probability crossover_rate, then
        polynomial mutation. `rates`: runtime numbers (None: this encoding's fields)."""
        rates = self.default_rates() if rates is None else rates
        k_cross, k_do, k_order, k_mut = jax.random.split(key, 4)
        n = parents_a.shape[0]
        genes = math.prod(parents_a.shape[1:])
        flip = jax.random.bernoulli(k_order, 0.5, (n, 1))  # copy as (b, a) rather than (a, b)
        cross = jax.random.uniform(k_do, (n, 1)) < rates.crossover_rate
        rate = self.rate(generation, rates.mutation_rate)
        a, b = parents_a.reshape(n, genes), parents_b.reshape(n, genes)
        etas = (rates.eta_c, rates.eta_m)

        cpu = partial(self._children, "cpu", (k_cross, k_mut), rate, etas)
        accelerator = partial(self._children, "accelerator", (k_cross, k_mut), rate, etas)
        children = platforms.select(self.backend, cpu, accelerator, a, b, flip, cross)
        return children.reshape((2 * n,) + parents_a.shape[1:])

    def _children(self, backend, keys, rate, etas, a, b, flip, cross) -> jax.Array:
        """Children [2n, genes] of flat parent rows [n, genes], by the CPU form (blocks of
        pairs looped over) or the accelerator form (all pairs at once): the same numbers."""
        k_cross, k_mut = keys
        eta_c, eta_m = etas
        n, genes = a.shape

        def pairs_block(first, a, b, flip, cross):
            """Children [pairs, 2, genes] of flat parent rows [pairs, genes]; pair 0 of the
            block is pair `first` of the population (its random draws are that pair's)."""
            a, b = self.decode(a), self.decode(b)
            crossed = operators.sbx_children(
                k_cross, a, b, eta_c, self.sbx_equal_genes, first * genes, backend
            )
            second = jax.lax.broadcasted_iota(jnp.int32, (1, 2, 1), 1) == 1
            copies = jnp.where(second != flip[:, None], b[:, None], a[:, None])
            children = jnp.where(cross[:, None], crossed, copies)
            mutated = operators.polynomial_mutation(
                k_mut, children, rate, eta_m, first * 2 * genes, backend
            )
            return self.encode(mutated)

        # CPU: flat rows, in blocks of pairs looped over: XLA's CPU loops over [..., 3] colour
        # genomes run 3 elements long (4x slower), and without the loop XLA fused the variation
        # into each consumer of the children, recomputing it (2-3x slower generations).
        per_block = max(1, self.vary_block_genes // (2 * genes))
        num_blocks = -(-n // per_block)
        if backend == "accelerator" or num_blocks == 1 or 2 * n * genes >= 2**32:
            return pairs_block(0, a, b, flip, cross).reshape(2 * n, genes)
        per_block = -(-n // num_blocks)  # equal blocks; the padding pairs are dropped

        def blocked(x):
            x = jnp.pad(x, [(0, num_blocks * per_block - n)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape((num_blocks, per_block) + x.shape[1:])

        firsts = jnp.arange(num_blocks, dtype=jnp.uint32) * per_block  # < 2**32
        children = jax.lax.map(
            lambda xs: pairs_block(*xs), (firsts, *map(blocked, (a, b, flip, cross)))
        )
        return children.reshape(-1, genes)[: 2 * n]

    def express(self, genomes: jax.Array) -> jax.Array:
        raw = genomes if self.genes == "uint8" else self.to_bytes(genomes)
        if self.image_shape[-1] == 1:
            return raw
        return hls_bytes_to_rgb(raw) if self.color == "hls" else hsv_bytes_to_rgb(raw)

    # --- what emitters move: every pixel gene -------------------------------------------------
    def genes_of(self, genomes: jax.Array) -> jax.Array:
        return self.decode(genomes)

    def with_genes(self, genomes: jax.Array, genes: jax.Array) -> jax.Array:
        del genomes
        return self.encode(genes)

    def gene_mask(self, genomes: jax.Array) -> jax.Array:
        return jnp.ones(genomes.shape, jnp.float32)

    def partner_genes(self, a: jax.Array, b: jax.Array) -> jax.Array:
        del a
        return self.decode(b)

    def mutate_structure(self, key: jax.Array, genomes: jax.Array) -> jax.Array:
        del key  # a pixel genome has no structure
        return genomes

    def surrogate(self, genomes: jax.Array, genes: jax.Array, max_size: int | None) -> jax.Array:
        """Float genes [n, H, W, C] in [0, 1] -> images with floor(g * 255)'s forward values."""
        del genomes, max_size
        x = genes * 255.0
        return byte_image(straight_through(x, jnp.floor(x)), self.color)

    def tuned(self, emitter: str) -> dict[str, float]:
        return dict(TUNED.get(emitter, {}))
