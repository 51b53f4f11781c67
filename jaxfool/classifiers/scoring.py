"""From images to fitness: classifier logits -> precise log-probabilities, in bounded chunks, in
jitted code (`score`) or from the host (`score_images`)."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfool.classifiers.protocol import Classifier


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


def log_probs(logits_fn, params: Any, images: jax.Array) -> jax.Array:
    """log p [B, N] of a classifier's output: `log_softmax` of its logits, or the output itself
    for classifiers that give log-probabilities or a fitness (`returns_log_probs`, ensembles)."""
    out = logits_fn(params, images)
    if getattr(logits_fn, "returns_log_probs", False):
        return out.astype(jnp.float32)
    return log_softmax(out)


def score(
    logits_fn, params: Any, images: jax.Array, chunk: int | None = None, mesh: Mesh | None = None
) -> jax.Array:
    """Log-probabilities [B, N] of uint8 images [B, H, W, C] under `logits_fn(params, images)`.

    With `chunk`, the classifier sees at most `chunk` images at a time (`lax.map`), which bounds
    peak memory for large populations; the result is the same. With a `mesh` (images split in
    equal blocks over its devices along the batch axis), `chunk` is per device: each step of the
    map takes the next `chunk` images of every device's block, so nothing moves between devices.
    """

    def one_batch(x):
        return log_probs(logits_fn, params, x)

    batch = images.shape[0]
    shards = 1 if mesh is None else mesh.size
    per_shard = batch // shards
    if chunk is None or chunk >= per_shard:
        return one_batch(images)
    num_chunks = -(-per_shard // chunk)
    pad = num_chunks * chunk - per_shard
    pixels = images.shape[1:]
    blocks = images.reshape((shards, per_shard) + pixels)
    blocks = jnp.pad(blocks, [(0, 0), (0, pad)] + [(0, 0)] * len(pixels))
    steps = blocks.reshape((shards, num_chunks, chunk) + pixels).swapaxes(0, 1)

    def one_step(x):  # [shards, chunk, ...]: one chunk of every device's block
        x = x.reshape((shards * chunk,) + pixels)
        if mesh is not None:
            spec = PartitionSpec(mesh.axis_names[0], *([None] * len(pixels)))
            x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
        return one_batch(x)

    out = jax.lax.map(one_step, steps)  # [num_chunks, shards * chunk, N]
    out = out.reshape((num_chunks, shards, chunk, -1)).swapaxes(0, 1)
    return out.reshape((shards, num_chunks * chunk, -1))[:, :per_shard].reshape((batch, -1))


@partial(jax.jit, static_argnums=0)
def _score(logits_fn: Any, params: Any, images: jax.Array) -> jax.Array:
    return score(logits_fn, params, images)


def score_images(
    classifier: Classifier, params: Any, images: np.ndarray, chunk: int = 64
) -> np.ndarray:
    """Precise log-probabilities float32 [N, K] of uint8 images [N, H, W, C], from the host.

    The classifier sees min(chunk, N) images per call (the last call zero-padded), so one
    compilation serves every call of the same size and memory stays bounded.
    """
    n = len(images)
    if n == 0:
        return np.zeros((0, classifier.num_classes), np.float32)
    size = min(chunk, n)
    out = []
    for i in range(0, n, size):
        batch = np.asarray(images[i : i + size])
        pad = size - len(batch)
        if pad:
            batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
        out.append(np.asarray(_score(classifier.logits, params, jnp.asarray(batch)))[: size - pad])
    return np.concatenate(out)
