"""A gradient emitter (the DQD family: OMG-MEGA / CMA-MEGA, Fontaine & Nikolaidis 2021; PGA-ME):
children = parent + a step along the gradient of log p(target class) of the expressed image.

Parents are drawn uniformly over occupied cells; each child's target is its parent's cell, or
with probability `random_target` a uniformly random cell (a stepping stone into another
class). The step is the gradient normalised to unit RMS per child (over the genes it moves), times a
step length drawn log-uniformly in [step_min, step_max] per child: log p's gradient spans
orders of magnitude between a fresh image and one at 0.9999, so a normalised step keeps
moving at both ends, and without per-child optimiser state (Adam state would have to live in
the archive, where elites change owner). The spread of lengths matters for CPPNs: with the
original's raw pixel-index inputs, log p is so rugged in the weights that steps above ~1e-3
overshoot (measured against finite differences; normalized inputs take 1e-2), while direct
pixels take 0.05 in one go;
the population tries both ends and the archive keeps what worked.

CPPN children are first mutated as the original mutates them (`DnnFF::mutate`: weights,
activations, and the structural operators), then stepped: a weight step alone cannot grow the
network, and from the original's initial CPPNs (no hidden nodes) it stalls (seed 0, MNIST,
normalized coordinates: 9 of 10 digits >= 0.9999 at generation 20-50, one at 0.80; mutated
first: all ten by generation 10).

What is differentiated: direct genomes, every pixel gene; CPPN genomes, every connection weight
gene (through the renderer, evaluated over all edge slots with `lax.scan`, which reverse-mode
differentiation needs; at most `cppn_grad_size` pixels a side, bilinearly resized to the image
size, so ImageNet gradients stay in memory). The byte quantisation (floor(g * 255), |trunc(o *
255)|, HLS bytes -> RGB) is not differentiable: the forward pass uses the exact bytes and the
backward pass the continuous formula (straight-through). Children are always scored and
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
from jaxfool.search.emitters import register
from jaxfool.search.encodings import color


@struct.dataclass
class GradientParams:
    """step_min, step_max: each child's step (the RMS of its gene change, genes in [0, 1]) is
    drawn log-uniformly between them; random_target: probability of a random target cell."""

    step_min: jax.Array
    step_max: jax.Array
    random_target: jax.Array = struct.field(default_factory=lambda: jnp.float32(0.0))


def straight_through(continuous: jax.Array, exact: jax.Array) -> jax.Array:
    """`exact`'s values with `continuous`'s gradient."""
    return continuous + jax.lax.stop_gradient(exact.astype(jnp.float32) - continuous)


def byte_image(byte_values: jax.Array, color_space: str) -> jax.Array:
    """Float pixel bytes [..., C] (exact integers in the forward pass) -> the image the
    classifier sees, float32 0..255 RGB (or gray), with a continuous colour conversion's
    gradient: the HLS/HSV byte conventions of `color` (H in 2-degree units)."""
    if byte_values.shape[-1] == 1:
        return byte_values
    exact_bytes = jax.lax.stop_gradient(byte_values).astype(jnp.uint8)
    three = jnp.stack(
        [2.0 * byte_values[..., 0], byte_values[..., 1] / 255.0, byte_values[..., 2] / 255.0],
        axis=-1,
    )
    if color_space == "hls":
        return straight_through(
            255.0 * color.hls_to_rgb(three), color.hls_bytes_to_rgb(exact_bytes)
        )
    return straight_through(255.0 * color.hsv_to_rgb(three), color.hsv_bytes_to_rgb(exact_bytes))


def direct_surrogate(encoding, genes: jax.Array) -> jax.Array:
    """Float genes [n, H, W, C] in [0, 1] -> images with floor(g * 255)'s forward values."""
    x = genes * 255.0
    return byte_image(straight_through(x, jnp.floor(x)), encoding.color)


def cppn_outputs_scan(encoding, genome, coords: jax.Array) -> jax.Array:
    """One CPPN's outputs [C, P] on pixel inputs [4, P], over all edge slots in schedule
    order (dead edges have weight 0): the renderer's arithmetic with a static trip count."""
    from jaxfool.search.encodings.cppn import NUM_INPUTS, activate_one

    src, dst, weight, _ = encoding._schedule(genome)
    acc = jnp.zeros((encoding.max_nodes, coords.shape[1]), jnp.float32).at[:NUM_INPUTS].set(coords)

    def edge(acc, k):
        s = src[k]
        return acc.at[dst[k]].add(weight[k] * activate_one(genome.act[s], acc[s])), None

    acc, _ = jax.lax.scan(edge, acc, jnp.arange(encoding.max_edges))
    outs = range(NUM_INPUTS, encoding.first_hidden)
    return jnp.stack([activate_one(genome.act[o], acc[o]) for o in outs])


def cppn_surrogate(encoding, genomes, size: int) -> jax.Array:
    """CPPN genomes -> images [n, S, S, C] with |trunc(o * 255)|'s forward values at `size`
    pixels a side, resized to the image size S when smaller."""
    coords = encoding.coordinates(size)
    out = jax.vmap(lambda g: cppn_outputs_scan(encoding, g, coords))(genomes)  # [n, C, P]
    n, c = out.shape[:2]
    x = jnp.abs(out.reshape(n, c, size, size).transpose(0, 2, 3, 1)) * 255.0
    # forward values from the encoding's own renderer: the scan's float rounding differs
    # from it by a byte at rare pixels
    exact = jnp.abs(jnp.trunc(jax.lax.stop_gradient(encoding.outputs(genomes, size)) * 255.0))
    images = byte_image(straight_through(x, exact), encoding.color)
    native = encoding.image_shape[0]
    if size == native:
        return images
    return jax.image.resize(images, (n, native, native, c), method="linear")


@register("gradient")
@dataclass(frozen=True)
class Gradient:
    encoding: Any
    cppn_grad_size: int = 64  # CPPN gradients at most this many pixels a side

    def default_params(self) -> GradientParams:
        # measured on MNIST, seed 0 (README): direct 0.05 reaches every digit >= 0.9999 in
        # ~9 generations; CPPN weights with normalized inputs 1e-4..1e-2 (all ten by
        # generation 10), with the original's raw pixel-index inputs 1e-6..1e-3 (8 of 10 at
        # generation 50, against 5 with 1e-4..1e-2, 6 with 1e-5..1e-1, 7 with 1e-7..1e-4)
        if self._direct:
            lo, hi = 0.05, 0.05
        elif getattr(self.encoding, "coords", "raw") == "raw":  # None: only the fields asked
            lo, hi = 1e-6, 1e-3
        else:
            lo, hi = 1e-4, 1e-2
        return GradientParams(step_min=jnp.float32(lo), step_max=jnp.float32(hi))

    def genes(self, genomes) -> jax.Array:
        """The differentiated genes: direct pixel genes, or CPPN weight genes."""
        return self.encoding.decode(genomes) if self._direct else genomes.weight

    @property
    def _direct(self) -> bool:
        return hasattr(self.encoding, "decode")

    def surrogate(self, genomes, genes: jax.Array) -> jax.Array:
        if self._direct:
            return direct_surrogate(self.encoding, genes)
        size = min(self.cppn_grad_size, self.encoding.image_shape[0])
        return cppn_surrogate(self.encoding, genomes.replace(weight=genes), size)

    def log_prob_grads(self, context, genomes, targets: jax.Array) -> jax.Array:
        """d log p(class targets[i]) / d genes of child i, for every child [n, genes...]."""

        def total(genes):
            images = self.surrogate(genomes, genes)
            lp = scoring.log_probs(context.classifier.logits, context.clf_params, images)
            return jnp.sum(jnp.take_along_axis(lp, targets[:, None], axis=1))

        return jax.grad(total)(self.genes(genomes))

    def emit(self, key, archive, params, generation, n, context):
        del generation
        k_select, k_random, k_use, k_step = jax.random.split(key, 4)
        cells = archive_lib.select(archive, k_select, n)
        parents = archive_lib.gather(archive, cells)
        if not self._direct:  # structure grows as the original's: mutate, then step
            mutate_keys = jax.random.split(jax.random.fold_in(key, 1), n)
            parents = jax.vmap(self.encoding.mutate)(mutate_keys, parents)
        random_cells = jax.random.randint(k_random, (n,), 0, archive.num_cells)
        use_random = jax.random.uniform(k_use, (n,)) < params.random_target
        targets = jnp.asarray(context.classes, jnp.int32)[
            jnp.where(use_random, random_cells, cells)
        ]
        genes = self.genes(parents)
        grads = self.log_prob_grads(context, parents, targets)
        moved = jnp.ones_like(grads) if self._direct else parents.edge_alive.astype(jnp.float32)
        axes = tuple(range(1, grads.ndim))
        count = jnp.maximum(jnp.sum(moved, axis=axes, keepdims=True), 1.0)
        rms = jnp.sqrt(jnp.sum(moved * grads * grads, axis=axes, keepdims=True) / count)
        u = jax.random.uniform(k_step, (n,) + (1,) * len(axes))
        length = params.step_min * (params.step_max / params.step_min) ** u
        step = moved * length * grads / jnp.maximum(rms, 1e-30)
        child = jnp.clip(genes + step, 0.0, 1.0)
        if self._direct:
            return self.encoding.encode(child)
        return parents.replace(weight=jnp.where(parents.edge_alive, child, genes))
