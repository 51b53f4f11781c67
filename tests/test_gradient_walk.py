"""The `gradient_walk` emitter: one step is `gradient_full`'s child bit for bit; more steps never
end lower than that first step, and climb past it; its params from the emitter text; a run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.runs import emitter_text
from jaxfool.search import archive as archive_lib
from jaxfool.search import map_elites as evolve
from jaxfool.search.emitters import EmitContext, gradient, gradient_full, gradient_walk
from jaxfool.search.encodings.cppn import CppnEncoding
from jaxfool.search.encodings.dense_cppn import DenseCppnEncoding
from jaxfool.search.encodings.direct import DirectEncoding
from tests.test_emitters import config, tiny_classifier


def children_and_scores(lenet, enc, params_of, key=7, n=30, gens=3, generation=0):
    """Children of `gradient_full` and of `gradient_walk` (params from `params_of`) from the same
    archive and key, with each child's real log p of its parent's cell."""
    cfg, clf_params = config(lenet, enc, shares=(("original", n),), population=n), lenet[1]
    state = evolve.init(cfg, clf_params, jax.random.key(0))
    state = evolve.run(cfg, clf_params, state, jax.random.key(1), gens, None)
    context = EmitContext(enc, lenet[0], cfg.classes, clf_params, None)
    full = gradient_full.GradientFull(enc)
    walk = gradient_walk.GradientWalk(enc)
    k = jax.random.key(key)
    emit = jax.jit(
        lambda e, p: e.emit(k, state.archive, p, generation, n, context), static_argnums=0
    )
    a = emit(full, full.default_params())
    b = emit(walk, params_of(walk.default_params()))
    cells = np.asarray(archive_lib.select(state.archive, jax.random.split(k, 4)[0], n))
    rows = np.arange(n)

    def score(children):
        return np.asarray(evolve.evaluate(cfg, clf_params, children)[0])[rows, cells]

    return a, b, score(a), score(b)


@pytest.mark.parametrize(
    "enc",
    [DirectEncoding(), pytest.param(CppnEncoding(coords="normalized"), marks=pytest.mark.slow)],
    ids=["direct", "cppn"],
)
def test_one_step_is_gradient_fulls_child(lenet, enc):
    a, b, _, _ = children_and_scores(lenet, enc, lambda p: p.replace(steps=jnp.float32(1)))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "enc",
    [DirectEncoding(), pytest.param(CppnEncoding(coords="raw"), marks=pytest.mark.slow)],
    ids=["direct", "cppn-raw"],
)
def test_the_walk_ends_at_or_above_its_first_step(lenet, enc):
    """Four steps from the same parents and first lengths: every child's real log p at least
    the one-step child's (the walk keeps the best point it scored, the first step included;
    scored in another batch, so up to float rounding), most strictly higher."""
    first, _, one, walked = children_and_scores(lenet, enc, lambda p: p)
    # raw inputs overflow the backward pass of some of these parents: the genes whose gradient
    # is not finite stay put (they used to become NaN, and the child with them)
    assert np.all(np.isfinite(np.asarray(enc.genes_of(first))))
    assert np.all(walked >= one - 1e-4), (walked - one).min()
    assert np.mean(walked > one + 1e-4) > 0.5, np.mean(walked > one + 1e-4)


@pytest.mark.slow
def test_emitter_text_sets_the_walk_params(lenet):
    enc = CppnEncoding(coords="raw")
    spec = "isoline:0.5,gradient_walk:0.5"
    cfg = evolve.EvolutionConfig(
        encoding=enc,
        classifier=lenet[0],
        classes=tuple(range(10)),
        population=20,
        initial_population=20,
        emitters=emitter_text.build_emitters(spec, enc, 20),
    )
    assert [type(e).__name__ for e, _ in cfg.emitters] == ["Isoline", "GradientWalk"]
    params = emitter_text.runtime_params(
        spec, "gradient_walk.steps=2,gradient_walk.shrink=0.5", cfg
    )
    assert float(params[1].steps) == 2.0 and float(params[1].shrink) == 0.5
    # the raw-coordinate CPPN's tuned first steps, as `gradient`'s
    assert float(params[1].step_max) == np.float32(1e-3)
    state = evolve.init(cfg, lenet[1], jax.random.key(0))
    before = np.asarray(state.archive.log_prob)
    state = evolve.run(cfg, lenet[1], state, jax.random.key(1), 3, params)
    after = np.asarray(state.archive.log_prob)
    assert np.all(after >= before) and np.sum(after > before) >= 3


def test_target_classes_parent_random_and_weakest():
    """Targets: the parents' cells by default; weak_target 1 aims every child at the cell of
    lowest log p (an empty cell before any occupied one); random_target 1 spreads them."""
    arch = archive_lib.empty(jnp.zeros((2,)), 5)
    arch = arch.replace(log_prob=jnp.array([-0.1, -3.0, -0.5, -2.0, -0.2], jnp.float32))
    context = EmitContext(None, None, (10, 11, 12, 13, 14))
    cells = jnp.array([0, 2, 4, 4, 0, 2] * 50, jnp.int32)
    key = jax.random.key(3)
    keys = tuple(jax.random.split(key, 2))

    def targets(**p):
        params = gradient.GradientParams(jnp.float32(1e-3), jnp.float32(1e-2), **p)
        return np.asarray(gradient.target_classes(key, keys, arch, cells, params, context))

    np.testing.assert_array_equal(targets(), np.asarray(cells) + 10)
    assert set(targets(weak_target=jnp.float32(1.0))) == {11}
    assert set(targets(random_target=jnp.float32(1.0))) == {10, 11, 12, 13, 14}
    half = targets(weak_target=jnp.float32(0.5))
    assert 0.35 < np.mean(half == 11) < 0.65 and set(half) == {10, 11, 12, 14}
    emptied = arch.replace(log_prob=arch.log_prob.at[3].set(-jnp.inf))
    params = gradient.GradientParams(jnp.float32(1e-3), jnp.float32(1e-2), weak_target=1.0)
    got = gradient.target_classes(key, keys, emptied, cells, params, context)
    assert set(np.asarray(got)) == {13}


def test_adam_first_step_is_a_sign_step_and_plain_ascent_keeps_its_best():
    """adam = 1: the first step is Adam's from fresh moments, m / sqrt(v) = sign(gradient), at
    RMS `length`. greedy = 0 takes every step, yet the child is the best point it scored: a
    longer walk's child is never lower than a shorter one's."""
    clf, w = tiny_classifier()
    enc = DirectEncoding(image_shape=(4, 4, 1))
    arch = archive_lib.empty(enc.init(jax.random.key(0), 1)[0], 3)
    genomes = enc.init(jax.random.key(1), 3)
    arch = archive_lib.insert(arch, genomes, jnp.full((3, 3), -1.0).at[:, 0].set(-2.0), 0)
    context = EmitContext(enc, clf, (0, 1, 2), w)
    walk = gradient_walk.GradientWalk(enc)
    key = jax.random.key(5)
    params = walk.default_params().replace(
        step_min=jnp.float32(0.02), step_max=jnp.float32(0.02), adam=jnp.float32(1.0)
    )
    child = walk.emit(key, arch, params.replace(steps=jnp.float32(1)), 0, 8, context)
    cells = archive_lib.select(arch, jax.random.split(key, 4)[0], 8)
    parents = archive_lib.gather(arch, cells)
    targets = jnp.asarray(context.classes)[cells]
    grads = walk.log_prob_grads(context, parents, targets)
    moved = enc.gene_mask(parents)
    want = gradient.stepped(enc.genes_of(parents), jnp.sign(grads), moved, jnp.float32(0.02))
    np.testing.assert_allclose(enc.genes_of(child), enc.genes_of(enc.with_genes(parents, want)))

    def walked_log_p(steps):
        p = params.replace(greedy=jnp.float32(0.0), steps=jnp.float32(steps))
        children = walk.emit(key, arch, p, 0, 8, context)
        return np.asarray(walk.log_probs_and_grads(context, children, targets)[0])

    # a walk of k steps visits the first k points of the longer walk (the same draws), so its
    # child is never better than the longer walk's, and the walk climbs
    each = np.stack([walked_log_p(k) for k in range(1, 6)])
    assert np.all(each[1:] >= each[:-1] - 1e-6)
    assert np.all(each[-1] > each[0])


def test_kick_hops_only_parents_of_stale_cells():
    """kick > 0: a parent whose cell last improved `patience` or more generations ago gets
    Gaussian noise of std `kick` on its moved genes (clipped to [0, 1]); a parent of a cell that
    improved since is untouched, and kick 0 leaves every parent as it is."""
    enc = DirectEncoding(image_shape=(16, 16, 1))
    genomes = enc.with_genes(None, jnp.full((4, 16, 16, 1), 0.5, jnp.float32))
    arch = archive_lib.empty(genomes[0], 4)
    own = jnp.full((4, 4), -9.0).at[jnp.arange(4), jnp.arange(4)].set(-1.0)
    arch = archive_lib.insert(arch, genomes, own, 0)
    arch = arch.replace(last_improved=jnp.array([0, 7, 8, 10], jnp.int32))
    cells = jnp.array([0, 1, 2, 3] * 8, jnp.int32)
    parents = archive_lib.gather(arch, cells)
    moved = enc.gene_mask(parents)
    walk = gradient_walk.GradientWalk(enc)
    params = walk.default_params().replace(kick=jnp.float32(0.05), patience=jnp.float32(3.0))
    key = jax.random.key(2)

    def genes(p):
        hop = gradient_walk.kicked(key, enc, arch, parents, cells, moved, p, 10)
        return np.asarray(enc.genes_of(hop)) - np.asarray(enc.genes_of(parents))

    delta = genes(params).reshape(8, 4, -1)  # [repeat, cell, gene]
    # generation 10: cells 0 (10 old), 1 (3) stale; 2 (2) and 3 (0) not
    assert np.all(delta[:, 2:] == 0.0)
    for cell in (0, 1):
        assert abs(np.std(delta[:, cell]) - 0.05) < 0.005, np.std(delta[:, cell])
        assert abs(np.mean(delta[:, cell])) < 0.005
    assert np.all(genes(params.replace(kick=jnp.float32(0.0))) == 0.0)
    assert np.all(genes(params.replace(patience=jnp.float32(11.0))) == 0.0)


def test_kick_zero_or_no_stale_cell_gives_the_plain_walks_children(lenet):
    """The kick changes nothing until a cell is stale: with every cell fresh (patience above
    the generation) the children are the plain walk's bit for bit, and with stale cells they
    differ."""
    enc = DirectEncoding()

    def children(generation, **kick):
        def params_of(p):
            return p.replace(steps=jnp.float32(2), **{k: jnp.float32(v) for k, v in kick.items()})

        return np.asarray(children_and_scores(lenet, enc, params_of, n=12, gens=2,
                                              generation=generation)[1])  # fmt: skip

    plain = children(100)
    np.testing.assert_array_equal(children(100, kick=0.05, patience=1000), plain)
    np.testing.assert_array_equal(children(0, kick=0.05, patience=3), children(0))
    assert np.mean(children(100, kick=0.05, patience=3) != plain) > 0.5


def test_sweep_takes_every_cell_in_turn_and_is_off_by_default():
    """sweep 1: child i of generation g has parent cell (g n + i) mod cells, an empty swept cell
    the random draw instead; sweep 0 (the default) draws exactly `archive.select`'s cells."""
    arch = archive_lib.empty(jnp.zeros((2,)), 7)
    arch = arch.replace(log_prob=jnp.array([-1, -2, -3, -jnp.inf, -5, -6, -7], jnp.float32))
    key = jax.random.key(5)
    on = gradient.GradientParams(jnp.float32(1e-3), jnp.float32(1e-2), sweep=jnp.float32(1.0))
    off = gradient.GradientParams(jnp.float32(1e-3), jnp.float32(1e-2))
    drawn = np.asarray(archive_lib.select(arch, key, 4))
    np.testing.assert_array_equal(gradient.parent_cells(key, arch, off, 2, 4), drawn)
    for g, want in ((0, [0, 1, 2, None]), (1, [4, 5, 6, 0]), (5, [6, 0, 1, 2])):
        got = np.asarray(gradient.parent_cells(key, arch, on, jnp.int32(g), 4))
        expect = [d if w is None else w for w, d in zip(want, drawn, strict=True)]
        np.testing.assert_array_equal(got, expect)
    assert 3 not in drawn  # the random draw never takes an empty cell either


def test_ranked_takes_the_cells_nearest_their_goal_first():
    """ranked r: parents are the cells of highest elite p below r, highest first, then those at
    or above r (never an empty cell: its turn takes the random draw's cell); 0 (the default)
    leaves the random draw's and sweep's cells as they were."""
    p = jnp.array([0.2, 0.95, 0.5, 0.0, 0.01, 0.99, 0.7], jnp.float32)
    arch = archive_lib.empty(jnp.zeros((2,)), 7)
    arch = arch.replace(log_prob=jnp.where(p > 0, jnp.log(p), -jnp.inf))
    np.testing.assert_array_equal(gradient.ranked_cells(arch.log_prob, 0.9), [6, 2, 0, 4, 1, 5, 3])
    np.testing.assert_array_equal(gradient.ranked_cells(arch.log_prob, 1.0), [5, 1, 6, 2, 0, 4, 3])
    key = jax.random.key(5)
    drawn = np.asarray(archive_lib.select(arch, key, 9))
    for sweep in (0.0, 1.0):
        base = gradient.GradientParams(jnp.float32(1e-3), jnp.float32(1e-2), sweep=sweep)
        on = base.replace(ranked=jnp.float32(0.9))
        off = np.asarray(gradient.parent_cells(key, arch, base, jnp.int32(3), 9))
        swept = (3 * 9 + np.arange(9)) % 7
        np.testing.assert_array_equal(off, np.where(p[swept] > 0, swept, drawn) if sweep else drawn)
    on = gradient.GradientParams(jnp.float32(1e-3), jnp.float32(1e-2), ranked=jnp.float32(0.9))
    got = np.asarray(gradient.parent_cells(key, arch, on, jnp.int32(3), 9))
    np.testing.assert_array_equal(got[:6], [6, 2, 0, 4, 1, 5])
    assert got[6] == drawn[6] and p[got[6]] > 0  # the empty cell's turn
    np.testing.assert_array_equal(got[7:], [6, 2])  # the order repeats


def test_ranked_with_sweep_walks_in_turn_and_gives_the_other_turns_to_rank():
    """ranked r with sweep: the first generation by rank alone; from the second, child i of
    generation g takes cell ((g - 1) n + i) mod cells if its elite is below r, and the turns of
    cells at r or empty go to the rank order over the cells not walked in turn."""
    p = jnp.array([0.2, 0.95, 0.5, 0.0, 0.01, 0.99, 0.7], jnp.float32)
    arch = archive_lib.empty(jnp.zeros((2,)), 7)
    arch = arch.replace(log_prob=jnp.where(p > 0, jnp.log(p), -jnp.inf))
    on = gradient.GradientParams(
        jnp.float32(1e-3), jnp.float32(1e-2), sweep=jnp.float32(1.0), ranked=jnp.float32(0.9)
    )
    key = jax.random.key(5)
    for g, want in ((0, [6, 2, 0]), (1, [0, 6, 2]), (2, [6, 4, 2]), (3, [6, 0, 2])):
        got = gradient.parent_cells(key, arch, on, jnp.int32(g), 3)
        np.testing.assert_array_equal(got, want, err_msg=f"generation {g}")


@pytest.mark.parametrize("seed", range(4))
def test_ranked_with_sweep_never_walks_a_cell_twice_or_one_at_r_before_those_below(seed):
    """Over random archives (some cells empty, some at r) and generations, n <= occupied cells:
    the n cells are distinct, every turn's cell below r is among them, and a cell at r is taken only
    when fewer than n occupied cells are below r."""
    rng = np.random.default_rng(seed)
    cells, r = 40, 0.9
    for _ in range(5):
        p = rng.uniform(0, 1, cells) ** rng.uniform(0.2, 3)
        p[rng.uniform(size=cells) < 0.1] = 0.0
        arch = archive_lib.empty(jnp.zeros((2,)), cells)
        arch = arch.replace(
            log_prob=jnp.where(p > 0, jnp.log(jnp.asarray(p, jnp.float32)), -jnp.inf)
        )
        on = gradient.GradientParams(
            jnp.float32(1e-3), jnp.float32(1e-2), sweep=jnp.float32(1.0), ranked=jnp.float32(r)
        )
        n, g = int(rng.integers(1, np.sum(p > 0) + 1)), int(rng.integers(0, 30))
        got = np.asarray(gradient.parent_cells(jax.random.key(seed), arch, on, jnp.int32(g), n))
        pf = np.asarray(jnp.exp(arch.log_prob))
        assert len(set(got.tolist())) == n and np.all(pf[got] > 0)
        if g >= 1:
            turn = ((g - 1) * n + np.arange(n)) % cells
            walked = turn[(pf[turn] > 0) & (pf[turn] < r)]
            assert set(walked.tolist()) <= set(got.tolist())
        below = int(np.sum((pf > 0) & (pf < r)))
        assert np.sum(pf[got] >= r) == max(0, n - below)


def test_walk_with_sweep_aims_each_child_at_its_swept_cell(lenet):
    """A gradient_walk generation with sweep over as many children as cells: each cell is the
    parent and target of one child, which climbs that cell's log p (a dense CPPN: no
    structural mutation before the walk)."""
    enc = DenseCppnEncoding()
    cfg = config(lenet, enc, (("gradient_walk", 10),), population=10)
    state = evolve.init(cfg, lenet[1], jax.random.key(0))
    walk = cfg.emitter_plan[0][0]
    params = walk.default_params().replace(sweep=jnp.float32(1.0), steps=jnp.float32(2.0))
    context = EmitContext(enc, cfg.classifier, cfg.classes, lenet[1])
    key = jax.random.key(4)
    _, targets, _, _, cells = walk.parents_and_targets(key, state.archive, params, 10, context, 3)
    np.testing.assert_array_equal(cells, np.arange(10))
    np.testing.assert_array_equal(targets, np.asarray(cfg.classes))
    children = walk.emit(key, state.archive, params, jnp.int32(3), 10, context)
    lp, _ = evolve.evaluate(cfg, lenet[1], children)
    parent_lp = np.asarray(state.archive.log_prob)
    assert np.all(np.diag(np.asarray(lp)) > parent_lp), (np.diag(np.asarray(lp)), parent_lp)
