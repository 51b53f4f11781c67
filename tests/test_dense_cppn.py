"""Dense CPPNs (fixed topology): the renderer against a NumPy network, its atan, the gene
layout, the straight-through gradient against finite differences, variation, and a short run
that fools LeNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.search import emitters, encodings
from jaxfool.search import map_elites as evolve
from jaxfool.search.emitters import EmitContext, gradient
from jaxfool.search.encodings.dense_cppn import DenseCppnEncoding, fast_atan

from .test_emitters import config, tiny_classifier


def numpy_render(enc: DenseCppnEncoding, genes: np.ndarray) -> np.ndarray:
    """The network of the module docstring, written out in float64 NumPy, one genome at a time:
    255 sigmoid(o) per pixel, [n, S, S, C]."""
    s, _, c = enc.image_shape
    unit = np.linspace(-1.0, 1.0, s)
    scale = enc.input_scale / np.sqrt(np.mean(unit * unit))
    images = []
    for g in np.asarray(genes, np.float64):
        out = np.empty((s, s, c))
        for row in range(s):
            for col in range(s):
                x, y = unit[col], unit[row]
                h = np.array([x * scale, y * scale, np.hypot(x, y) * scale / 2])
                start = 0
                for i, (fan_in, fan_out) in enumerate(enc.layer_shapes()):
                    w = g[start : start + fan_in * fan_out].reshape(fan_in, fan_out)
                    w = (2 * w - 1) * enc.weight_limit / np.sqrt(fan_in)
                    start += fan_in * fan_out
                    z = h @ w[:-1] + w[-1]
                    if i < enc.layers:
                        a = np.arctan(z)
                        h = np.concatenate([a / 0.67, a * a / 0.6])
                out[row, col] = 255 / (1 + np.exp(-z))
        images.append(out)
    return np.stack(images)


@pytest.mark.parametrize(
    "shape,layers,width,scale", [((6, 6, 1), 2, 5, 1.0), ((5, 5, 3), 3, 4, 4.0)]
)
def test_render_equals_a_numpy_network(shape, layers, width, scale):
    enc = DenseCppnEncoding(image_shape=shape, layers=layers, width=width, input_scale=scale)
    genes = enc.init(jax.random.key(1), 3)
    assert genes.shape == (3, enc.num_genes)
    assert enc.num_genes == sum(i * o for i, o in enc.layer_shapes())
    expected = numpy_render(enc, np.asarray(genes))
    values = np.asarray(enc._image_values(genes))
    np.testing.assert_allclose(values, expected, atol=2e-3)  # float32 and atan to 2e-6
    images = np.asarray(enc.express(genes))
    assert images.dtype == np.uint8 and images.shape == (3, *shape)
    np.testing.assert_array_equal(images, np.floor(values).astype(np.uint8))
    assert np.ptp(images) > 0  # random output layers: the first images are not flat


def test_fast_atan_is_atan_and_its_derivative():
    x = jnp.concatenate([jnp.linspace(-50, 50, 200_001), jnp.array([0.0, 1.0, -1.0, 1e6])])
    np.testing.assert_allclose(fast_atan(x), np.arctan(np.asarray(x, np.float64)), atol=2e-6)
    d = jax.vmap(jax.grad(fast_atan))(jnp.linspace(-5, 5, 1001))
    np.testing.assert_allclose(d, 1 / (1 + np.linspace(-5, 5, 1001) ** 2), atol=5e-4)


def test_initial_weights_have_unit_fan_in_variance():
    enc = DenseCppnEncoding(image_shape=(8, 8, 3), layers=4, width=16)
    ws = enc.weights(enc.init(jax.random.key(0), 64))
    for w, (fan_in, _) in zip(ws, enc.layer_shapes(), strict=True):
        np.testing.assert_allclose(np.std(np.asarray(w)) * np.sqrt(fan_in), 1.0, rtol=0.1)


def test_straight_through_gradient_equals_finite_differences():
    clf, w = tiny_classifier()
    enc = DenseCppnEncoding(image_shape=(4, 4, 1), layers=2, width=4)
    em = gradient.Gradient(enc)
    genes = enc.init(jax.random.key(0), 3)
    targets = jnp.array([0, 1, 2], jnp.int32)
    grads = np.asarray(em.log_prob_grads(EmitContext(enc, clf, (0, 1, 2), w), genes, targets))

    surrogate_forward = np.asarray(enc.surrogate(genes, genes, None))
    np.testing.assert_array_equal(surrogate_forward, np.asarray(enc.express(genes), np.float32))

    def log_p(g):  # the continuous function the straight-through gradient is of (float64)
        z = numpy_render(enc, g).reshape(3, -1) / 255.0 @ np.asarray(w, np.float64)
        z = z - z.max(axis=1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(3), targets]

    g0, eps = np.asarray(genes, np.float64), 1e-4
    for gene in [0, 7, enc.num_genes - 1]:
        up, down = g0.copy(), g0.copy()
        up[:, gene] += eps
        down[:, gene] -= eps
        fd = (log_p(up) - log_p(down)) / (2 * eps)
        # atol: the gradient sums terms of either sign (cancellation); float32 and the
        # polynomial atan's derivative (to 5e-4) leave ~1e-3 of the terms' scale
        np.testing.assert_allclose(grads[:, gene], fd, rtol=2e-2, atol=2e-3 * np.abs(fd).max())


def test_variation_mutates_at_the_rate_and_copies_otherwise():
    enc = DenseCppnEncoding(image_shape=(8, 8, 1))
    a, b = enc.init(jax.random.key(0), 50), enc.init(jax.random.key(1), 50)
    children = np.asarray(enc.vary(jax.random.key(2), a, b, jnp.int32(0)))
    assert children.shape == (100, enc.num_genes)
    assert children.min() >= 0 and children.max() <= 1
    pairs = children.reshape(50, 2, -1)
    a, b = np.asarray(a), np.asarray(b)
    # each child is one parent's copy, mutated at ~mutation_rate of its genes
    from_a = np.mean(pairs[:, 0] == a, axis=1) > 0.5
    parent_of_first = np.where(from_a[:, None], a, b)
    parent_of_second = np.where(from_a[:, None], b, a)
    changed = np.concatenate([pairs[:, 0] != parent_of_first, pairs[:, 1] != parent_of_second])
    assert 0.1 < np.mean(from_a) < 0.9  # both orders occur
    np.testing.assert_allclose(np.mean(changed), enc.mutation_rate, rtol=0.15)


def test_registered_and_built_from_settings():
    settings = {"dense_layers": 3, "dense_width": 8, "dense_input_scale": 2.5}
    enc = encodings.build("dense_cppn", (28, 28, 1), settings)
    assert (enc.layers, enc.width, enc.input_scale) == (3, 8, 2.5)
    assert encodings.from_spec(encodings.to_spec(enc)) == enc
    with pytest.raises(ValueError, match="layers"):
        DenseCppnEncoding(layers=0)


@pytest.mark.parametrize("emitter", ["original", "isoline", "gradient"])
def test_each_emitter_improves_lenet_cells(lenet, emitter):
    """20 generations of population 40 from the same start: every emitter raises the archive's
    mean log-probability, and the gradient's children are valid genomes in [0, 1]."""
    enc = DenseCppnEncoding()
    cfg = config(lenet, enc, shares=((emitter, 40),), population=40)
    params = lenet[1]
    state = evolve.init(cfg, params, jax.random.key(0))
    start = float(jnp.mean(state.archive.log_prob))
    state = evolve.run(cfg, params, state, jax.random.key(1), 20)
    assert float(jnp.mean(state.archive.log_prob)) > start + 1.0
    genomes = np.asarray(state.archive.genomes)
    assert genomes.min() >= 0 and genomes.max() <= 1
    assert emitters.build(emitter, enc).default_params() is not None


def test_render_at_any_size_in_blocks_equals_express_at_that_size():
    small, large = DenseCppnEncoding(image_shape=(5, 5, 3)), DenseCppnEncoding((11, 11, 3))
    genes = small.init(jax.random.key(3), 2)
    np.testing.assert_array_equal(small.render(genes, block=7), small.express(genes))
    np.testing.assert_array_equal(small.render(genes, 11, block=16), large.express(genes))
