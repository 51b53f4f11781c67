"""Bulk random numbers for the hot path: the values of jax.random.bits / uniform, computed faster.

JAX's default generator is Threefry-2x32 (20 rounds) on the 64-bit flat index of each element.
On CPU, JAX lowers it as a rolled loop that XLA cannot fuse, about 14 ns per 32-bit word on
this project's 2-core machine: drawing the 19 M words one ImageNet-size direct generation needs
cost more than the rest of its variation. Written out here as plain unrolled array operations,
XLA fuses the 20 rounds into one elementwise loop, 8x faster, with bit-identical results, so
switching to it changes no run. Keys of other generators, jax_threefry_partitionable=False
(a different counter layout) and arrays of 2**32 or more elements fall back to jax.random.

The unrolled form is the CPU's: lowered for an accelerator (`backend="auto"`, see
`jaxfool.base.platforms`), or with `backend="accelerator"`, the words come from JAX's own Threefry
primitive on the same counters (jax.random.bits' op: a CUDA kernel or XLA's unrolled rounds).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.extend.random import threefry2x32_p

from jaxfool.base import platforms

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA  # Threefish's key-schedule constant


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array):
    """The Threefry-2x32 block function, 20 rounds (Salmon et al., SC 2011), unrolled."""
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(_PARITY))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = ((x2 << jnp.uint32(r)) | (x2 >> jnp.uint32(32 - r))) ^ x1
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x1, x2


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
    """Each element's row-major position, built from per-axis iotas (partitionable)."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride *= shape[axis]
    return index


def _threefry_words(key: jax.Array) -> jax.Array | None:
    """The key's two uint32 words if it is a key of JAX's default (partitionable) threefry
    generator, typed or raw; else None."""
    if not jax.config.jax_threefry_partitionable:
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        threefry = str(jax.random.key_impl(key)) == "threefry2x32"
        return jax.random.key_data(key) if threefry else None
    return key if key.dtype == jnp.uint32 and key.shape == (2,) else None  # a raw PRNGKey


def _unrolled_bits(words: jax.Array, high: jax.Array, low: jax.Array) -> jax.Array:
    """The CPU form: `threefry2x32` as fused elementwise operations."""
    b1, b2 = threefry2x32(words[0], words[1], high, low)
    return b1 ^ b2


def _primitive_bits(words: jax.Array, high: jax.Array, low: jax.Array) -> jax.Array:
    """The accelerator form: JAX's threefry2x32 primitive, as jax.random.bits binds it."""
    b1, b2 = threefry2x32_p.bind(words[0], words[1], high, low)
    return b1 ^ b2


def bits(
    key: jax.Array,
    shape: tuple[int, ...],
    offset: jax.Array | int = 0,
    backend: str = "auto",
) -> jax.Array:
    """uint32 words equal to jax.random.bits(key, shape).

    With `offset`, the words are elements [offset, offset + size) of a larger draw from the same
    key (flattened): a block of a big array computed on its own, with the same numbers. Offsets
    need the larger draw to be under 2**32 elements. `backend` picks the unrolled (CPU) or the
    primitive (accelerator) form (`jaxfool.base.platforms`); both give the same words.
    """
    shape = tuple(int(d) for d in shape)
    words = _threefry_words(key)
    if words is None or not shape or math.prod(shape) >= 2**32:
        if isinstance(offset, int) and offset == 0:
            return jax.random.bits(key, shape, jnp.uint32)
        raise ValueError("rng.bits: offsets need the default threefry key and under 2**32 words")
    # the 64-bit counter is (high word, low word) = (0, flat index) below 2**32 elements
    count = _flat_index(shape) + jnp.asarray(offset).astype(jnp.uint32)
    high = jnp.zeros(shape, jnp.uint32)
    return platforms.select(backend, _unrolled_bits, _primitive_bits, words, high, count)


def unit_float(words: jax.Array) -> jax.Array:
    """Uniform [0, 1) float32 from the top 23 bits of uint32 words (as jax.random.uniform)."""
    mantissa = (words >> 9) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def uniform(
    key: jax.Array,
    shape: tuple[int, ...],
    offset: jax.Array | int = 0,
    backend: str = "auto",
) -> jax.Array:
    """float32 values equal to jax.random.uniform(key, shape) (on [0, 1)); `offset` and
    `backend` as in bits."""
    return unit_float(bits(key, shape, offset, backend))
