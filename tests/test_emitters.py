"""Emitters: the original is today's variation bit for bit, iso+line's statistics, the gradient
emitter against finite differences, mixes, ask/tell, run_many, and adding an emitter."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool import classifiers, runs
from jaxfool.classifiers import scoring
from jaxfool.search import archive as archive_lib
from jaxfool.search import emitters
from jaxfool.search import map_elites as evolve
from jaxfool.search.emitters import EmitContext, gradient, isoline
from jaxfool.search.encodings import cppn_render
from jaxfool.search.encodings.cppn import CppnEncoding
from jaxfool.search.encodings.direct import DirectEncoding


def config(lenet, encoding=None, shares=(), population=20):
    """An EvolutionConfig on the shipped LeNet whose emitters are named (name, children)."""
    clf, _ = lenet
    encoding = encoding or DirectEncoding()
    return evolve.EvolutionConfig(
        encoding=encoding,
        classifier=clf,
        classes=tuple(range(10)),
        population=population,
        initial_population=population,
        emitters=tuple((emitters.build(name, encoding), n) for name, n in shares),
    )


def test_original_emitter_is_todays_step(lenet):
    """What `step` did before emitters existed, written out: select, pairs, vary."""
    cfg, params = config(lenet), lenet[1]
    state = evolve.init(cfg, params, jax.random.key(0))
    key = jax.random.key(1)
    k_select, k_vary = jax.random.split(key)
    parents = archive_lib.gather(state.archive, archive_lib.select(state.archive, k_select, 20))
    expected = cfg.encoding.vary(k_vary, parents[0::2], parents[1::2], state.generation)
    children = evolve.emit(cfg, params, state.archive, key, state.generation)
    np.testing.assert_array_equal(children, expected)
    named = config(lenet, shares=(("original", 20),))
    np.testing.assert_array_equal(evolve.emit(named, params, state.archive, key, 0), expected)


def test_iso_line_statistics_on_known_parents():
    n, genes = 4000, 64
    a = jnp.full((n, genes), 0.3)
    b = jnp.full((n, genes), 0.7)
    p = isoline.IsolineParams(iso_sigma=jnp.float32(0.01), line_sigma=jnp.float32(0.1))
    child = np.asarray(isoline.iso_line(jax.random.key(0), a, b, p))
    along = (child.mean(axis=1) - 0.3) / 0.4  # the line coordinate of each child
    assert abs(along.mean()) < 0.01 and abs(along.std() - 0.1) < 0.01
    across = child - child.mean(axis=1, keepdims=True)  # what is left: isotropic noise
    assert abs(across.std() - 0.01) < 0.001
    wide = isoline.IsolineParams(iso_sigma=jnp.float32(1.0), line_sigma=jnp.float32(0.0))
    clipped = np.asarray(isoline.iso_line(jax.random.key(1), a, b, wide))
    assert clipped.min() == 0.0 and clipped.max() == 1.0


def test_isoline_moves_cppn_weights_only_and_keeps_the_genome_valid(lenet):
    enc = CppnEncoding()
    cfg, params = config(lenet, enc, (("isoline", 20),)), lenet[1]
    state = evolve.init(cfg, params, jax.random.key(0))
    children = evolve.emit(cfg, params, state.archive, jax.random.key(3), state.generation)
    w = np.asarray(children.weight)
    assert ((w >= 0) & (w <= 1)).all()
    k_select, _, k_struct = jax.random.split(jax.random.key(3), 3)
    parents = archive_lib.gather(state.archive, archive_lib.select(state.archive, k_select, 40))
    a = jax.tree.map(lambda g: g[0::2], parents)
    mutated = jax.vmap(enc.mutate)(jax.random.split(k_struct, 20), a)
    for field in ("act", "node_alive", "src", "dst", "edge_alive"):  # structure: the original's
        np.testing.assert_array_equal(getattr(children, field), getattr(mutated, field))
    alive = np.asarray(mutated.edge_alive)
    np.testing.assert_array_equal(w[~alive], np.asarray(mutated.weight)[~alive])
    assert np.mean(w[alive] != np.asarray(mutated.weight)[alive]) > 0.99  # weights: iso+line
    images = np.asarray(enc.express(children))
    assert images.shape == (20, 28, 28, 1) and images.dtype == np.uint8


def tiny_classifier():
    """A linear 3-class classifier on 4 x 4 gray images: logits = W . pixels / 255."""
    w = jax.random.normal(jax.random.key(7), (16, 3))

    def logits(params, images):
        return images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0 @ params

    return classifiers.Classifier("tiny", logits, (4, 4, 1), ("a", "b", "c")), w


def test_direct_gradient_equals_finite_differences_of_the_surrogate():
    clf, w = tiny_classifier()
    enc = DirectEncoding(image_shape=(4, 4, 1))
    em = gradient.Gradient(enc)
    genomes = enc.init(jax.random.key(0), 5)
    targets = jnp.array([0, 1, 2, 0, 1], jnp.int32)
    grads = np.asarray(em.log_prob_grads(EmitContext(enc, clf, (0, 1, 2), w), genomes, targets))

    def log_p(images):  # the continuous function the straight-through gradient is of (float64)
        z = images.reshape(5, -1) / 255.0 @ np.asarray(w, np.float64)
        z = z - z.max(axis=1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(5), targets]

    x = np.floor(np.asarray(genomes, np.float64) * 255)  # the forward pass sees the bytes
    eps = 0.5
    for row, col in [(0, 0), (1, 2), (3, 3)]:
        up, down = x.copy(), x.copy()
        up[:, row, col, 0] += eps
        down[:, row, col, 0] -= eps
        fd = (log_p(up) - log_p(down)) / (2 * eps)
        np.testing.assert_allclose(grads[:, row, col, 0] / 255, fd, rtol=1e-3, atol=1e-7)


def test_cppn_surrogate_has_the_real_images_forward_values(lenet):
    enc = CppnEncoding()
    genomes = enc.init(jax.random.key(0), 6)
    surrogate = enc.surrogate(genomes, genomes.weight, 28)
    np.testing.assert_array_equal(np.asarray(surrogate), np.asarray(enc.express(genomes)))
    colour = CppnEncoding(image_shape=(16, 16, 3))
    g3 = colour.init(jax.random.key(1), 3)
    np.testing.assert_array_equal(
        np.asarray(colour.surrogate(g3, g3.weight, 16)), np.asarray(colour.express(g3))
    )


def grown_cppns(enc, n, rounds=30, seed=0):
    """n CPPNs after `rounds` structural mutations: hidden nodes of several activations."""
    genomes = enc.init(jax.random.key(seed), n)
    mutate = jax.jit(enc.mutate_structure)  # the same genomes as eager calls, ~6x sooner
    for r in range(rounds):
        genomes = mutate(jax.random.key(1000 * seed + r), genomes)
    return genomes


def test_the_differentiable_scan_computes_the_renderers_outputs():
    """The gradient's path (the scan over every edge slot) against the real renderer's float
    outputs, on grown networks with hidden nodes of every activation, grey and colour."""
    for shape, coords in [((12, 12, 1), "raw"), ((12, 12, 3), "normalized")]:
        enc = CppnEncoding(image_shape=shape, coords=coords)
        genomes = grown_cppns(enc, 8)
        hidden = np.asarray(genomes.node_alive)[:, enc.first_hidden :]
        assert hidden.sum() >= 8
        acts = np.asarray(genomes.act)[:, enc.first_hidden :][hidden]
        assert len(set(acts.tolist())) >= 3, acts  # several activation functions exercised
        coords = enc.coordinates(12)
        scan = jax.vmap(partial(cppn_render.outputs_scan, enc, coords=coords))(genomes)
        scan = np.asarray(scan).reshape(8, shape[2], 12, 12).transpose(0, 2, 3, 1)
        np.testing.assert_allclose(scan, np.asarray(enc.outputs(genomes)), atol=1e-5)


def test_cppn_gradient_matches_finite_differences_of_the_real_renderer():
    """The directional derivative along the gradient against central differences of the real
    renderer's outputs |o| * 255 scored by the classifier (grown networks, normalized inputs,
    a linear classifier: smooth), and its sign against the real `express`' bytes."""
    clf, w = tiny_classifier()
    enc = CppnEncoding(image_shape=(4, 4, 1), coords="normalized")
    em = gradient.Gradient(enc)
    genomes = grown_cppns(enc, 6, rounds=10)
    targets = jnp.array([0, 1, 2, 0, 1, 2], jnp.int32)
    context = EmitContext(enc, clf, (0, 1, 2), w)
    grads = np.asarray(em.log_prob_grads(context, genomes, targets))
    alive = np.asarray(genomes.edge_alive)
    assert np.all(grads[~alive] == 0)
    rows = np.arange(6)

    def log_p(weight, images_of):
        images = images_of(genomes.replace(weight=jnp.asarray(weight, jnp.float32)))
        return np.asarray(scoring.log_softmax(clf.logits(w, images)), np.float64)[rows, targets]

    def continuous(g):  # the real renderer, before the byte quantisation
        return jnp.abs(enc.outputs(g)) * 255.0

    def real_bytes(g):
        return enc.express(g).astype(jnp.float32)

    direction = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    weight = np.asarray(genomes.weight, np.float64)
    eps = 1e-4
    fd = log_p(weight + eps * direction, continuous) - log_p(weight - eps * direction, continuous)
    slope = np.sum(grads * direction, axis=1)
    np.testing.assert_allclose(slope, fd / (2 * eps), rtol=0.02, atol=1e-3)
    # a step along the gradient raises log p of the real, quantised image (where log p is
    # not flat: a saturated network's slope is ~0)
    gain = log_p(weight + 0.02 * direction, real_bytes) - log_p(weight, real_bytes)
    moving = slope > 1e-3
    assert moving.sum() >= 4 and np.all(gain[moving] > 0), (slope, gain)


def test_gradient_children_improve_their_target_on_mnist(lenet):
    cfg, params = config(lenet, shares=(("gradient", 20),)), lenet[1]
    state = evolve.init(cfg, params, jax.random.key(0))
    key = jax.random.key(5)
    cells = archive_lib.select(state.archive, jax.random.split(key, 4)[0], 20)
    children = evolve.emit(cfg, params, state.archive, key, state.generation)
    log_probs, _ = evolve.evaluate(cfg, params, children)
    before = np.asarray(state.archive.log_prob)[np.asarray(cells)]
    after = np.asarray(log_probs)[np.arange(20), np.asarray(cells)]
    assert np.mean(after > before) > 0.8  # the real uint8 images, scored as archived


def test_cppn_gradient_children_are_mutated_then_stepped_uphill(lenet):
    enc = CppnEncoding(image_shape=(28, 28, 1), coords="normalized")
    cfg, params = config(lenet, enc, shares=(("gradient", 40),), population=40), lenet[1]
    state = evolve.init(cfg, params, jax.random.key(0))  # parents: the initial elites
    key = jax.random.key(7)
    cells = archive_lib.select(state.archive, jax.random.split(key, 4)[0], 40)
    parents = archive_lib.gather(state.archive, cells)
    # jitted, as a run calls them (eager, the two took 17 s of the test's 37; jitted 8 s)
    mutate = jax.jit(jax.vmap(enc.mutate))
    mutated = mutate(jax.random.split(jax.random.fold_in(key, 1), 40), parents)
    children = jax.jit(evolve.emit, static_argnums=0)(cfg, params, state.archive, key, 0)
    # the structure is the mutation's (some grew or lost nodes/edges), the weights moved
    for leaf in ("src", "dst", "act", "edge_alive", "node_alive"):
        np.testing.assert_array_equal(getattr(children, leaf), getattr(mutated, leaf))
    assert np.any(np.asarray(mutated.edge_alive) != np.asarray(parents.edge_alive))
    assert np.any(np.asarray(children.weight) != np.asarray(mutated.weight))
    rows, targets = np.arange(40), np.asarray(cells)
    stepped = np.asarray(evolve.evaluate(cfg, params, children)[0])[rows, targets]
    unstepped = np.asarray(evolve.evaluate(cfg, params, mutated)[0])[rows, targets]
    assert np.mean(stepped > unstepped) > 0.6, np.mean(stepped > unstepped)


def test_mixes_split_the_population_by_fraction():
    assert runs.emitter_text.parse_spec("original", 200) == (("original", 200),)
    assert runs.emitter_text.parse_spec("original:0.5,gradient:0.5", 200) == (
        ("original", 100),
        ("gradient", 100),
    )
    assert runs.emitter_text.parse_spec("original:0.3,isoline:0.7", 64) == (
        ("original", 20),
        ("isoline", 44),
    )
    bad_specs = [("nope", "unknown emitter"), ("original:0.5", "sum to"),
                 ("original:x", "not a number"), ("original:.5,original:.5", "twice")]  # fmt: skip
    for bad, why in bad_specs:
        with pytest.raises(ValueError, match=why):
            runs.emitter_text.parse_spec(bad, 200)


def test_a_mixed_generation_concatenates_each_emitters_children(lenet):
    shares = (("original", 8), ("isoline", 12))
    cfg, params = config(lenet, shares=shares), lenet[1]
    state = evolve.init(cfg, params, jax.random.key(0))
    key = jax.random.key(2)
    mixed = np.asarray(evolve.emit(cfg, params, state.archive, key, state.generation))
    alone = [
        np.asarray(config(lenet, shares=((name, n),), population=n).emitter_plan[0][0].emit(
            jax.random.fold_in(key, i), state.archive, p, state.generation, n, None))
        for i, ((name, n), p) in enumerate(zip(shares, cfg.default_emitter_params(), strict=True))
    ]  # fmt: skip
    np.testing.assert_array_equal(mixed, np.concatenate(alone))


def test_ask_tell_equals_run(lenet):
    cfg, params = config(lenet, shares=(("original", 10), ("gradient", 10))), lenet[1]
    init_key, loop_key = evolve.run_keys(4)
    state = evolve.init(cfg, params, init_key)
    ran = evolve.run(cfg, params, state, loop_key, 3)
    told = state
    for _ in range(3):
        children, images = evolve.ask(cfg, params, told, loop_key)
        log_probs = scoring.score(cfg.classifier.logits, params, images)[:, jnp.arange(10)]
        told = evolve.tell(cfg, told, children, log_probs)
    np.testing.assert_array_equal(
        np.asarray(ran.archive.log_prob), np.asarray(told.archive.log_prob)
    )
    np.testing.assert_array_equal(  # the images; float genes may differ in the last bit, as
        np.asarray(cfg.encoding.express(ran.archive.genomes)),  # XLA fuses them differently
        np.asarray(cfg.encoding.express(told.archive.genomes)),
    )
    np.testing.assert_allclose(
        np.asarray(ran.archive.genomes), np.asarray(told.archive.genomes), rtol=0, atol=1e-6
    )


def test_emitter_params_are_traced_not_static(lenet):
    """A new step size reuses the compiled run (evosax style)."""
    cfg, params = config(lenet, shares=(("gradient", 20),)), lenet[1]
    init_key, loop_key = evolve.run_keys(0)
    state = evolve.init(cfg, params, init_key)
    p0 = cfg.default_emitter_params()
    compiled = evolve.run.lower(cfg, params, state, loop_key, 1, p0).compile()
    small = (p0[0].replace(step_min=jnp.float32(1e-6), step_max=jnp.float32(1e-6)),)
    a, b = compiled(params, state, loop_key, 2, p0), compiled(params, state, loop_key, 2, small)
    assert not np.array_equal(np.asarray(a.archive.log_prob), np.asarray(b.archive.log_prob))


@pytest.mark.parametrize("encoding", ["direct", "cppn"])
def test_original_rates_are_runtime_params(lenet, encoding):
    """The original emitter's rates are its Params: passed at run time they give the bits of
    the same rates compiled in (the encoding's fields), and a new rate reuses the compiled run."""
    import dataclasses

    enc = DirectEncoding() if encoding == "direct" else CppnEncoding()
    field, value = ("mutation_rate", 0.3) if encoding == "direct" else ("add_neuron_rate", 0.9)
    cfg, params = config(lenet, enc), lenet[1]
    init_key, loop_key = evolve.run_keys(0)
    state = evolve.init(cfg, params, init_key)
    (rates,) = cfg.default_emitter_params()
    assert float(getattr(rates, field)) == pytest.approx(getattr(enc, field))
    compiled = evolve.run.lower(cfg, params, state, loop_key, 1, (rates,)).compile()
    builtin = evolve.run(cfg, params, state, loop_key, 3)  # rates as constants
    given = compiled(params, state, loop_key, 3, (rates,))
    for a, b in zip(jax.tree.leaves(builtin), jax.tree.leaves(given), strict=True):
        np.testing.assert_array_equal(a, b)
    # another rate, same executable: the run of an encoding built with that rate
    other = (rates.replace(**{field: jnp.float32(value)}),)
    changed = compiled(params, state, loop_key, 3, other)
    cfg2 = dataclasses.replace(cfg, encoding=dataclasses.replace(enc, **{field: value}))
    want = evolve.run(cfg2, params, state, loop_key, 3)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(changed), strict=True):
        np.testing.assert_array_equal(a, b)
    genomes = zip(jax.tree.leaves(changed.archive.genomes),
                  jax.tree.leaves(builtin.archive.genomes), strict=True)  # fmt: skip
    assert any(not np.array_equal(x, y) for x, y in genomes)  # the rate did change the run


def test_emitter_param_names_follow_the_encoding():
    direct = runs.emitter_text.param_names("original", DirectEncoding())
    cppn = runs.emitter_text.param_names("original", CppnEncoding())
    assert direct == ("mutation_rate", "eta_m", "crossover_rate", "eta_c")
    assert "add_neuron_rate" in cppn and "crossover_rate" not in cppn
    assert set(runs.emitter_text.param_names("original")) == set(direct) | set(cppn)
    assert runs.emitter_text.param_names("isoline") == ("iso_sigma", "line_sigma")


@pytest.mark.parametrize("batch", ["map", "vmap"])
def test_run_many_equals_separate_runs(lenet, batch):
    cfg, params = config(lenet), lenet[1]
    seeds = jnp.arange(3)
    many = evolve.run_many(cfg, params, seeds, 4, None, batch)
    for r, seed in enumerate(seeds):
        init_key, loop_key = evolve.run_keys(int(seed))
        one = evolve.run(cfg, params, evolve.init(cfg, params, init_key), loop_key, 4)
        if batch == "map":  # each run's classifier batch as in `run`: bit for bit
            for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one), strict=True):
                np.testing.assert_array_equal(np.asarray(a[r]), np.asarray(b))
            continue
        np.testing.assert_allclose(
            np.asarray(many.archive.log_prob[r]), np.asarray(one.archive.log_prob), rtol=1e-5
        )  # vmapped LeNet batches round differently from one run's
        np.testing.assert_array_equal(
            np.asarray(many.archive.takeovers[r]), np.asarray(one.archive.takeovers)
        )


def test_run_many_rejects_unknown_batch(lenet):
    with pytest.raises(ValueError, match="batch must be"):
        evolve.run_many(config(lenet), lenet[1], jnp.arange(2), 1, None, "loop")
