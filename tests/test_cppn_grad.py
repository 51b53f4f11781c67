"""The exact, pixel-blocked CPPN weight gradient (`cppn_grad`) and the `gradient_full` emitter:
the hand-written VJP against autodiff of the scan renderer, the surrogate's forward values
against `express`, the gradient against finite differences of the real renderer and taken by
chunks of children, and runs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.classifiers import scoring
from jaxfool.runs import emitter_text
from jaxfool.search import archive as archive_lib
from jaxfool.search import map_elites as evolve
from jaxfool.search.emitters import EmitContext, gradient, gradient_full
from jaxfool.search.encodings import cppn_grad, cppn_render
from jaxfool.search.encodings.cppn import CppnEncoding
from tests.test_emitters import config, grown_cppns, tiny_classifier


@pytest.fixture(scope="module")
def colour():
    """Grown colour CPPNs (hidden nodes of several activations), 20 x 20, normalized inputs."""
    enc = CppnEncoding((20, 20, 3), max_nodes=24, max_edges=64, coords="normalized")
    genomes = grown_cppns(enc, 6, rounds=40)
    assert int(np.asarray(genomes.node_alive)[:, enc.first_hidden :].sum()) >= 6
    return enc, genomes


@pytest.mark.parametrize("backend", ["cpu", "accelerator"])
@pytest.mark.parametrize("block", [64, 400])  # 400: one block; 64: 7 blocks, the last padded
def test_weight_vjp_equals_autodiff_of_the_unchunked_renderer(colour, backend, block):
    enc, genomes = colour
    enc = dataclasses.replace(enc, backend=backend)
    cot = jax.random.normal(jax.random.key(5), (6, 20, 20, 3))
    got = jax.jit(lambda g, c: cppn_grad.weight_vjp(enc, g, c, block))(genomes, cot)
    got = np.asarray(got)
    coords = cppn_render.coordinates(enc, 20)

    def loss(w):  # autodiff through all edge slots (the `gradient` emitter's scan renderer)
        out = jax.vmap(lambda g: cppn_render.outputs_scan(enc, g, coords))(
            genomes.replace(weight=w)
        )
        return jnp.sum(out.reshape(6, 3, 20, 20).transpose(0, 2, 3, 1) * cot)

    want = np.asarray(jax.jit(jax.grad(loss))(genomes.weight))
    alive = np.asarray(genomes.edge_alive)
    assert np.all(got[~alive] == 0) and np.all(want[~alive] == 0)
    # float32 rounding of sums over 400 pixels of terms up to ~1e4: relative to each genome's
    # largest gradient
    scale = np.abs(want).max(axis=1, keepdims=True)
    np.testing.assert_allclose(got / scale, want / scale, atol=2e-3)
    assert np.median(np.abs(got - want)[want != 0] / np.abs(want[want != 0])) < 1e-5


def test_the_exact_surrogate_draws_the_bytes_express_scores():
    """Forward values of `surrogate(..., None)` equal `express` bit for bit (grey raw inputs
    28 x 28; colour normalized inputs), and `max_size` given still takes the scan path.
    Both jitted: the renderer compiled apart from op-by-op may round an output differently
    (a byte at rare pixels), for `express` itself as for the surrogates."""
    for enc in (
        CppnEncoding((28, 28, 1)),
        CppnEncoding((24, 24, 3), coords="normalized"),
    ):
        genomes = grown_cppns(enc, 5, rounds=25)
        exact = jax.jit(lambda g, e=enc: e.surrogate(g, g.weight, None))(genomes)
        want = jax.jit(enc.express)(genomes)
        np.testing.assert_array_equal(np.asarray(exact), np.asarray(want))
    capped = jax.jit(lambda g: enc.surrogate(g, g.weight, 12))(genomes)
    scan = jax.jit(lambda g: cppn_render.surrogate(enc, g, 12))(genomes)
    np.testing.assert_array_equal(np.asarray(capped), np.asarray(scan))


def test_gradient_full_matches_finite_differences_of_the_real_renderer():
    """The directional derivative along `gradient_full`'s gradient against central differences
    of the real renderer's outputs |o| * 255 scored by a linear classifier (grown networks,
    normalized inputs), and the gradient against `gradient`'s at the same (native) size."""
    clf, w = tiny_classifier()
    enc = CppnEncoding(image_shape=(4, 4, 1), coords="normalized")
    genomes = grown_cppns(enc, 6, rounds=10)
    targets = jnp.array([0, 1, 2, 0, 1, 2], jnp.int32)
    context = EmitContext(enc, clf, (0, 1, 2), w)
    full = jax.jit(lambda g: gradient_full.GradientFull(enc).log_prob_grads(context, g, targets))
    grads = np.asarray(full(genomes))
    alive = np.asarray(genomes.edge_alive)
    assert np.all(grads[~alive] == 0)
    rows = np.arange(6)

    @jax.jit
    def scored(weight):
        images = jnp.abs(enc.outputs(genomes.replace(weight=weight)))
        return scoring.log_softmax(clf.logits(w, images * 255.0))

    def log_p(weight):
        return np.asarray(scored(jnp.asarray(weight, jnp.float32)), np.float64)[rows, targets]

    direction = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    weight = np.asarray(genomes.weight, np.float64)
    eps = 1e-4
    fd = (log_p(weight + eps * direction) - log_p(weight - eps * direction)) / (2 * eps)
    slope = np.sum(grads * direction, axis=1)
    assert np.sum(slope > 1e-3) >= 4
    np.testing.assert_allclose(slope, fd, rtol=0.02, atol=1e-3)
    scan = jax.jit(lambda g: gradient.Gradient(enc).log_prob_grads(context, g, targets))
    scan = np.asarray(scan(genomes))
    scale = np.abs(scan).max(axis=1, keepdims=True)
    np.testing.assert_allclose(grads / scale, scan / scale, atol=1e-3)
    # eval_chunk 4 of 6 children: two chunks, the last padded; the same gradient per child
    chunked = dataclasses.replace(context, eval_chunk=4)
    em = gradient_full.GradientFull(enc)
    by_chunk = jax.jit(lambda g: em.log_prob_grads(chunked, g, targets))(genomes)
    np.testing.assert_allclose(np.asarray(by_chunk), grads, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_gradient_full_children_are_mutated_then_stepped_uphill(lenet):
    enc = CppnEncoding(image_shape=(28, 28, 1), coords="normalized")
    cfg, params = config(lenet, enc, shares=(("gradient_full", 40),), population=40), lenet[1]
    state = evolve.run(cfg, params, evolve.init(cfg, params, jax.random.key(0)),
                       jax.random.key(1), 3, None)  # fmt: skip
    key = jax.random.key(7)
    cells = archive_lib.select(state.archive, jax.random.split(key, 4)[0], 40)
    parents = archive_lib.gather(state.archive, cells)
    mutated = jax.vmap(enc.mutate)(jax.random.split(jax.random.fold_in(key, 1), 40), parents)
    children = evolve.emit(cfg, params, state.archive, key, state.generation)
    for leaf in ("src", "dst", "act", "edge_alive", "node_alive"):
        np.testing.assert_array_equal(getattr(children, leaf), getattr(mutated, leaf))
    assert np.any(np.asarray(children.weight) != np.asarray(mutated.weight))
    rows, targets = np.arange(40), np.asarray(cells)
    stepped = np.asarray(evolve.evaluate(cfg, params, children)[0])[rows, targets]
    unstepped = np.asarray(evolve.evaluate(cfg, params, mutated)[0])[rows, targets]
    assert np.mean(stepped > unstepped) > 0.6, np.mean(stepped > unstepped)


@pytest.mark.slow
def test_a_run_with_gradient_full_in_the_emitter_text(lenet):
    """'original:0.5,gradient_full:0.5' with a gradient_full step set in the params text: a
    few generations of `map_elites.run` on MNIST CPPNs fill the archive and raise its log p."""
    clf, params = lenet
    enc = CppnEncoding(coords="normalized")
    spec = "original:0.5,gradient_full:0.5"
    cfg = evolve.EvolutionConfig(
        encoding=enc,
        classifier=clf,
        classes=tuple(range(10)),
        population=20,
        initial_population=20,
        emitters=emitter_text.build_emitters(spec, enc, 20),
    )
    assert [type(e).__name__ for e, _ in cfg.emitters] == ["Original", "GradientFull"]
    emitter_params = emitter_text.runtime_params(spec, "gradient_full.step_min=0.0002", cfg)
    assert float(emitter_params[1].step_min) == np.float32(0.0002)
    state = evolve.init(cfg, params, jax.random.key(0))
    before = np.asarray(state.archive.log_prob)
    state = evolve.run(cfg, params, state, jax.random.key(1), 4, emitter_params)
    after = np.asarray(state.archive.log_prob)
    assert int(state.generation) == 4
    assert np.all(after >= before) and np.sum(after > before) >= 3
