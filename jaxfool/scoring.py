"""From images to fitness: classifier logits -> precise log-probabilities, in bounded chunks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def log_softmax(logits: jax.Array) -> jax.Array:
    """Log-softmax over the last axis that stays precise for probabilities near 1.

    The usual x - logsumexp(x) rounds log(1 + 1e-9) to 0 in float32, so every confidence above
    ~0.99999994 ties. Here the sum excludes the top class and goes through log1p, which keeps
    log p_top = -log1p(sum of the others) distinct down to float32's smallest numbers.
    """
    logits = logits.astype(jnp.float32)
    top = jnp.argmax(logits, axis=-1, keepdims=True)
    shifted = logits - jnp.take_along_axis(logits, top, axis=-1)
    is_top = jnp.arange(logits.shape[-1]) == top
    rest = jnp.sum(jnp.where(is_top, 0.0, jnp.exp(shifted)), axis=-1, keepdims=True)
    return shifted - jnp.log1p(rest)


def score(logits_fn, params: Any, images: jax.Array, chunk: int | None = None) -> jax.Array:
    """Log-probabilities [B, N] of uint8 images [B, H, W, C] under `logits_fn(params, images)`.

    With `chunk`, the classifier sees at most `chunk` images at a time (`lax.map`), which bounds
    peak memory for large populations; the result is the same.
    """

    def one_batch(x):
        return log_softmax(logits_fn(params, x))

    batch = images.shape[0]
    if chunk is None or chunk >= batch:
        return one_batch(images)
    num_chunks = -(-batch // chunk)
    pad = num_chunks * chunk - batch
    padded = jnp.concatenate([images, jnp.zeros((pad,) + images.shape[1:], images.dtype)])
    out = jax.lax.map(one_batch, padded.reshape((num_chunks, chunk) + images.shape[1:]))
    return out.reshape((num_chunks * chunk,) + out.shape[2:])[:batch]
