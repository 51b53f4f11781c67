"""Differentiable stand-ins for `express`: exact bytes forward, a continuous formula backward.

The byte quantisation of an image (floor(g * 255), |trunc(o * 255)|, HLS bytes -> RGB) has no
useful gradient. A surrogate keeps the exact bytes in the forward pass and differentiates the
continuous formula in the backward pass (straight-through), so a gradient step is taken on
exactly the image that is scored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxfool.search.encodings.color import (
    hls_bytes_to_rgb,
    hls_to_rgb,
    hsv_bytes_to_rgb,
    hsv_to_rgb,
)


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
        return straight_through(255.0 * hls_to_rgb(three), hls_bytes_to_rgb(exact_bytes))
    return straight_through(255.0 * hsv_to_rgb(three), hsv_bytes_to_rgb(exact_bytes))
