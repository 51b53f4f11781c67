"""Precise log-softmax and chunked scoring."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.classifiers import scoring


def test_log_softmax_matches_float64_reference():
    logits = np.asarray(jax.random.normal(jax.random.key(0), (64, 10)) * 5, np.float64)
    ref = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    ref -= logits.max(1, keepdims=True)
    got = np.asarray(scoring.log_softmax(jnp.asarray(logits, jnp.float32)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_log_softmax_keeps_confidences_near_one_ordered():
    logits = jnp.array([[30.0, 0.0, 0.0], [31.0, 0.0, 0.0]])
    assert float(jax.nn.log_softmax(logits)[0, 0]) == 0.0  # the usual one saturates
    got = np.asarray(scoring.log_softmax(logits))[:, 0]
    np.testing.assert_allclose(got, [-2 * np.exp(-30.0), -2 * np.exp(-31.0)], rtol=1e-5)
    assert got[1] > got[0]


def test_chunked_scoring_equals_one_batch():
    w = jax.random.normal(jax.random.key(1), (12, 5))

    def logits(params, images):
        return images.reshape(images.shape[0], -1).astype(jnp.float32) @ params

    images = jax.random.randint(jax.random.key(2), (23, 2, 2, 3), 0, 256).astype(jnp.uint8)
    full = scoring.score(logits, w, images)
    for chunk in (1, 5, 8, 23, 100):
        np.testing.assert_allclose(
            scoring.score(logits, w, images, chunk), full, rtol=1e-5, atol=1e-6
        )
