"""Dense CPPN encoding: a fixed-topology CPPN whose genes are all its weights, an option beside
the original's evolving topology (`cppn`), built for gradient and evolution-strategy steps.

The network is the one of differentiable image parameterizations (Mordvintsev et al.,
"Differentiable Image Parameterizations", Distill 2018, and lucid's `cppn`): per pixel, the
inputs x, y (scaled to unit variance over the image, times `input_scale`) and the distance r
from the centre go through `layers` dense layers of `width` units with the composite activation
[atan(z) / 0.67, atan(z)^2 / 0.6] (each roughly unit variance for unit-variance z), then a
dense layer to C outputs and a sigmoid: bytes floor(255 sigmoid(o)), read as gray (C = 1) or
RGB (C = 3, no colour space conversion: a gradient passes straight through).

Why: the original CPPN's weights act on raw pixel indices (0..S-1) through a few sine,
Gaussian and sigmoid nodes, so log p is rugged in them (useful gradient steps are 1e-6..1e-3 of
the gene range on MNIST). Here every weight gene g in [0, 1] maps to w = (2 g - 1) L / sqrt(fan_in)
(L = `weight_limit`), so one gene step moves every layer's pre-activations by the same scale,
and the topology never changes, so an emitter's step on the genes is the whole search.
Biases are weights from a constant input (in fan_in). Initial genes are 0.5 + N(0, 1) / (2 L):
weights N(0, 1 / fan_in), as lucid's initialiser (except the output layer, random here rather
than zero, so the first images differ).

`input_scale` (default 4; Distill's is 1) sets how many stripes and rings fit across the image.
Measured (2026-12-06, 2-core CPU): 60 Adam steps (learning rate 0.003 on the genes) on the
10 Fig. 8 classes against EfficientNet-Lite0 reach a median p of 0.78 at scale 4 and 0.010 at
scale 1; on MNIST both scales get all ten digits >= 0.9999 within 50 generations for 5 of 5
seeds with `isoline:0.5,gradient:0.5` (docs/emitters.md, "Dense CPPNs").

Variation (`original` emitter): no crossover, each child a copy of a parent with every gene
mutated with probability `mutation_rate` by polynomial mutation (eta `eta_m`). The emitters
that fit it are `isoline` and `gradient` (exact, at native size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.search import operators
from jaxfool.search.encodings.surrogate import straight_through

# atan on [0, 1] as an odd minimax polynomial in t (|error| < 2e-6 over the reals, measured on
# 200,001 points in [-50, 50]): XLA's CPU atan took 70 ms for 10M values where this takes 12,
# and it was 80% of rendering a population of 200 MNIST images
ATAN_COEFFS = (0.99997726, -0.33262347, 0.19354346, -0.11643287, 0.05265332, -0.01172120)
NUM_INPUTS = 3  # x, y, r (the bias is each layer's constant input)
# Emitter defaults measured on MNIST, shipped LeNet, `isoline:0.5,gradient:0.5`, population 200,
# seeds 0-4, digits >= 0.9999 at generation 50, input_scale 1 (docs/emitters.md, "Dense CPPNs"):
# gradient steps 1e-4..1e-2: 10, 10, 10, 10, 10 (1e-3..3e-2: 9, 9, 9, 9, 10); isoline
# iso_sigma 0.005 (0.01: 9, 9, 10, 9, 10 with the 1e-3..3e-2 steps)
TUNED = {
    "isoline": {"iso_sigma": 0.005, "line_sigma": 0.1},
    "gradient": {"step_min": 1e-4, "step_max": 1e-2},
}


def fast_atan(x: jax.Array) -> jax.Array:
    """atan(x) to < 2e-6: the polynomial on |x| <= 1, pi / 2 - atan(1 / |x|) beyond."""
    a = jnp.abs(x)
    big = a > 1.0
    t = jnp.where(big, 1.0 / jnp.maximum(a, 1.0), a)
    t2 = t * t
    p = jnp.float32(ATAN_COEFFS[-1])
    for c in ATAN_COEFFS[-2::-1]:
        p = c + t2 * p
    p = t * p
    return jnp.sign(x) * jnp.where(big, jnp.pi / 2 - p, p)


@struct.dataclass
class DenseCppnRates:
    """The original emitter's numbers for this genome as a runtime pytree."""

    mutation_rate: Any
    eta_m: Any

    limits = {"mutation_rate": "probability", "eta_m": "nonnegative"}


@dataclass(frozen=True)
class DenseCppnEncoding:
    """Genomes are float32 genes [n, num_genes] in [0, 1]: every weight and bias of a fixed
    `layers` x `width` CPPN (see the module docstring); images S x S x C."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    layers: int = 4
    width: int = 16
    weight_limit: float = 4.0  # |w| <= weight_limit / sqrt(fan_in)
    input_scale: float = 4.0  # coordinates times this (higher: finer patterns)
    mutation_rate: float = 0.02
    eta_m: float = 30.0

    def __post_init__(self):
        s, s2, c = self.image_shape
        if s != s2 or c not in (1, 3) or s < 2:
            raise ValueError(
                f"image_shape must be (S, S, 1 or 3) with S >= 2, got {self.image_shape}"
            )
        if self.layers < 1 or self.width < 1:
            raise ValueError(f"layers and width must be >= 1, got {self.layers}, {self.width}")
        if not (self.weight_limit > 0 and self.input_scale > 0):
            raise ValueError(
                f"weight_limit and input_scale must be > 0, got {self.weight_limit}, "
                f"{self.input_scale}"
            )

    @classmethod
    def from_settings(cls, image_shape: tuple[int, int, int], settings) -> DenseCppnEncoding:
        """The encoding of a run's settings (`dense_layers`, `dense_width`, `dense_input_scale`)."""
        names = {"layers": "dense_layers", "width": "dense_width",
                 "input_scale": "dense_input_scale"}  # fmt: skip
        options = {k: settings[v] for k, v in names.items() if settings.get(v) is not None}
        return cls(image_shape=tuple(image_shape), **options)

    # --- the network's shape ------------------------------------------------------------------
    def layer_shapes(self) -> list[tuple[int, int]]:
        """(fan_in including the bias, fan_out) of each dense layer, input to output."""
        shapes, fan_in = [], NUM_INPUTS
        for _ in range(self.layers):
            shapes.append((fan_in + 1, self.width))
            fan_in = 2 * self.width  # the composite activation doubles the units
        shapes.append((fan_in + 1, self.image_shape[2]))
        return shapes

    @property
    def num_genes(self) -> int:
        return sum(i * o for i, o in self.layer_shapes())

    def weights(self, genes: jax.Array) -> list[jax.Array]:
        """Genes [n, num_genes] -> each layer's weights [n, fan_in, fan_out] (bias row last)."""
        out, start = [], 0
        for fan_in, fan_out in self.layer_shapes():
            g = genes[:, start : start + fan_in * fan_out].reshape(-1, fan_in, fan_out)
            out.append((2.0 * g - 1.0) * (self.weight_limit / math.sqrt(fan_in)))
            start += fan_in * fan_out
        return out

    def init(self, key: jax.Array, n: int) -> jax.Array:
        z = jax.random.normal(key, (n, self.num_genes), jnp.float32)
        return jnp.clip(0.5 + z / (2.0 * self.weight_limit), 0.0, 1.0)

    # --- rendering ----------------------------------------------------------------------------
    def coordinates(self, size: int | None = None) -> jax.Array:
        """float32 [size*size, 3]: x, y at unit variance over the grid, r = sqrt(x^2 + y^2) / 2
        of [-1, 1] coordinates (row-major pixels)."""
        size = self.image_shape[0] if size is None else size
        unit = jnp.linspace(-1.0, 1.0, size, dtype=jnp.float32)
        y, x = jnp.meshgrid(unit, unit, indexing="ij")
        scale = self.input_scale / jnp.sqrt(jnp.mean(unit * unit))
        r = jnp.sqrt(x * x + y * y)
        return jnp.stack([x.ravel() * scale, y.ravel() * scale, r.ravel() * scale / 2], axis=-1)

    def logits(self, genes: jax.Array, coords: jax.Array) -> jax.Array:
        """The network's pre-sigmoid outputs [n, P, C] at coordinates [P, 3]."""
        ws = self.weights(genes)
        # the first layer reads the shared coordinates (not broadcast per genome: 2x faster)
        z = jnp.einsum("pi,nio->npo", coords, ws[0][:, :-1]) + ws[0][:, None, -1]
        for w in ws[1:]:
            a = fast_atan(z)
            h = jnp.concatenate([a / 0.67, a * a / 0.6], axis=-1)
            z = jnp.einsum("npi,nio->npo", h, w[:, :-1]) + w[:, None, -1]
        return z

    def _image_values(self, genes: jax.Array) -> jax.Array:
        """255 sigmoid(o), float32 [n, S, S, C]."""
        s, _, c = self.image_shape
        out = self.logits(genes, self.coordinates())
        return (255.0 * jax.nn.sigmoid(out)).reshape(genes.shape[0], s, s, c)

    def express(self, genomes: jax.Array) -> jax.Array:
        return jnp.floor(self._image_values(genomes)).astype(jnp.uint8)

    def render(self, genomes: jax.Array, size: int | None = None, block: int = 2**16) -> jax.Array:
        """uint8 [n, size, size, C] at any resolution (`express`'s bytes at the native size),
        `block` pixels at a time so a poster's activations stay small."""
        size = self.image_shape[0] if size is None else size
        coords = self.coordinates(size)
        steps = -(-coords.shape[0] // block)
        padded = jnp.pad(coords, ((0, steps * block - coords.shape[0]), (0, 0)))
        out = jax.lax.map(lambda c: self.logits(genomes, c), padded.reshape(steps, block, 3))
        out = jnp.moveaxis(out, 0, 1).reshape(genomes.shape[0], steps * block, -1)
        values = 255.0 * jax.nn.sigmoid(out[:, : size * size])
        return jnp.floor(values).reshape(genomes.shape[0], size, size, -1).astype(jnp.uint8)

    # --- variation ----------------------------------------------------------------------------
    def default_rates(self) -> DenseCppnRates:
        return DenseCppnRates(jnp.float32(self.mutation_rate), jnp.float32(self.eta_m))

    def vary(self, key, parents_a, parents_b, generation, rates=None) -> jax.Array:
        """Each pair copied in random order (no crossover), every gene mutated with
        probability mutation_rate by polynomial mutation; children [2n, genes]."""
        del generation
        rates = self.default_rates() if rates is None else rates
        k_order, k_mut = jax.random.split(key)
        flip = jax.random.bernoulli(k_order, 0.5, (parents_a.shape[0], 1))
        first = jnp.where(flip, parents_b, parents_a)
        second = jnp.where(flip, parents_a, parents_b)
        children = jnp.stack([first, second], axis=1).reshape(-1, parents_a.shape[1])
        return operators.polynomial_mutation(k_mut, children, rates.mutation_rate, rates.eta_m)

    # --- what emitters move: every gene -------------------------------------------------------
    def genes_of(self, genomes: jax.Array) -> jax.Array:
        return genomes

    def with_genes(self, genomes: jax.Array, genes: jax.Array) -> jax.Array:
        del genomes
        return genes

    def gene_mask(self, genomes: jax.Array) -> jax.Array:
        return jnp.ones(genomes.shape, jnp.float32)

    def partner_genes(self, a: jax.Array, b: jax.Array) -> jax.Array:
        del a
        return b

    def mutate_structure(self, key: jax.Array, genomes: jax.Array) -> jax.Array:
        del key  # a fixed topology has no structure to mutate
        return genomes

    def surrogate(self, genomes: jax.Array, genes: jax.Array, max_size: int | None) -> jax.Array:
        """The exact bytes forward, 255 sigmoid(o)'s gradient backward, at native size (a
        dense CPPN is cheap to differentiate; `max_size` is not needed)."""
        del genomes, max_size
        values = jax.checkpoint(self._image_values)(genes)
        return straight_through(values, jnp.floor(values))

    def tuned(self, emitter: str) -> dict[str, float]:
        return dict(TUNED.get(emitter, {}))
