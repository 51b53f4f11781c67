"""The regularisers of gradient ascent on the input (`jaxfool.search.gradient_ascent`), applied
after each update in the original's order: an L2 decay toward the mean image, a Gaussian blur
every few steps, and zeroing the pixels of smallest value, norm or predicted benefit (the
percentile settings of the original `find_fooling_image.py`). All work on one input x [h, w, c]
of the network's preprocessed space.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter (radius int(4 sigma + .5))."""
    radius = int(truncate * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (taps / sigma) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    """Blurs each channel of x [h, w, c] as scipy's gaussian_filter (mode 'reflect', i.e.
    edge-symmetric padding): separable, so the mean is kept exactly (up to rounding)."""
    kernel = gaussian_kernel(sigma)
    r = len(kernel) // 2
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        padded = jnp.pad(x, pad, mode="symmetric")
        n = x.shape[axis]
        x = sum(
            float(w) * jax.lax.slice_in_dim(padded, j, j + n, axis=axis)
            for j, w in enumerate(kernel)
        )
    return x


def _zero_where(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask, 0.0, x)


def prune_small_values(x: jax.Array, percentile: float) -> jax.Array:
    """Zeroes the entries of x whose |value| is below the given percentile of |x|."""
    return _zero_where(x, jnp.abs(x) < jnp.percentile(jnp.abs(x), percentile))


def prune_small_norm(x: jax.Array, percentile: float) -> jax.Array:
    """Zeroes the pixels of x [h, w, c] whose norm over channels is below the percentile."""
    norms = jnp.linalg.norm(x, axis=-1)
    return _zero_where(x, (norms < jnp.percentile(norms, percentile))[..., None])


def prune_small_benefit(
    x: jax.Array, grad: jax.Array, percentile: float, absolute: bool = False
) -> jax.Array:
    """Zeroes the pixels whose predicted benefit of zeroing, sum_c(-x * grad), (or its absolute
    value) is below the percentile: the original's px_(abs_)benefit_percentile."""
    benefit = jnp.sum(-x * grad, axis=-1)
    if absolute:
        benefit = jnp.abs(benefit)
    return _zero_where(x, (benefit < jnp.percentile(benefit, percentile))[..., None])


def regularise(config: Any, x: jax.Array, grad: jax.Array, step: jax.Array) -> jax.Array:
    """Decay, blur and pruning after an update, in the original's order (`config`: an
    `AscentConfig`)."""
    x = x * (1.0 - config.decay)
    if config.blur_radius > 0:
        blurred = gaussian_blur(x, config.blur_radius)
        x = jnp.where(step % config.blur_every == 0, blurred, x)
    if config.small_val_percentile > 0:
        x = prune_small_values(x, config.small_val_percentile)
    if config.small_norm_percentile > 0:
        x = prune_small_norm(x, config.small_norm_percentile)
    if config.px_benefit_percentile > 0:
        x = prune_small_benefit(x, grad, config.px_benefit_percentile)
    if config.px_abs_benefit_percentile > 0:
        x = prune_small_benefit(x, grad, config.px_abs_benefit_percentile, absolute=True)
    return x
