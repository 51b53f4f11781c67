"""The `gradient_walk_relay` emitter: with the relay off its first legs are `gradient_walk`'s
children bit for bit; with it on, a walk hands on only once it has reached the bar, its second
leg walks the highest cell below the bar that no first leg took, and a run with it."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.search import map_elites as evolve
from jaxfool.search.emitters import EmitContext, gradient, gradient_walk
from jaxfool.search.encodings.dense_cppn import DenseCppnEncoding
from tests.test_emitters import config
from tests.test_gradient_walk_stones import dense_cppn_run

KEY, GENERATION = jax.random.key(3), jnp.int32(2)


def relay_setup(lenet, n, **settings):
    enc = DenseCppnEncoding()
    cfg = config(lenet, enc, (("gradient_walk_relay", 16),), population=16)
    state = evolve.init(cfg, lenet[1], jax.random.key(0))
    relay = cfg.emitter_plan[0][0]
    params = relay.default_params().replace(
        **{k: jnp.float32(v) for k, v in {"greedy": 0.0, "adam": 1.0, **settings}.items()}
    )
    context = EmitContext(enc, cfg.classifier, cfg.classes, lenet[1])
    return cfg, state, relay, params, context


def test_relay_off_first_legs_are_the_plain_walks(lenet):
    """relay = 0: 5 first legs (`gradient_walk`'s children, bit for bit) and 4 second legs,
    each its walk's best point again."""
    n = 9
    cfg, state, relay, params, context = relay_setup(lenet, n, relay=0.0, steps=4)
    children = relay.emit(KEY, state.archive, params, GENERATION, n, context)
    walk = gradient_walk.GradientWalk(cfg.encoding)
    plain = walk.emit(KEY, state.archive, params, GENERATION, n - n // 2, context)
    assert children.shape == (n,) + plain.shape[1:]
    np.testing.assert_array_equal(np.asarray(children[:5]), np.asarray(plain))
    np.testing.assert_array_equal(np.asarray(children[5:]), np.asarray(plain[:4]))


def test_a_walk_hands_on_at_the_bar_to_the_highest_cell_not_taken(lenet):
    """Scored for real: every first leg that handed on (its second leg differs from it) is at
    p >= relay for its own class; each second leg is at least its relief cell's elite (its
    first step scores that elite) for the relief cell's class; the relief cells are the
    highest below the bar among the cells no first leg took, taken in child order."""
    n, bar = 8, 0.5
    cfg, state, relay, params, context = relay_setup(lenet, n, relay=bar, steps=12)
    archive = state.archive
    children = relay.emit(KEY, archive, params, GENERATION, n, context)
    firsts, seconds = np.asarray(children[:4]), np.asarray(children[4:])
    handed = np.array([not np.array_equal(a, b) for a, b in zip(firsts, seconds, strict=True)])
    assert 1 <= handed.sum() <= 4, handed  # some hand on, with 12 steps on LeNet
    _, targets, _, _, cells = relay.parents_and_targets(KEY, archive, params, 4, context, 2)
    lp, _ = evolve.evaluate(cfg, lenet[1], children)
    p = np.exp(np.asarray(lp))
    own = np.asarray(targets)
    assert np.all(p[np.arange(4), own][handed] >= bar - 1e-4), p[np.arange(4), own]
    elite_lp = np.asarray(archive.log_prob)
    free = np.where(np.isin(np.arange(10), np.asarray(cells)), -np.inf, elite_lp)
    order = np.asarray(gradient.ranked_cells(jnp.asarray(free), jnp.float32(bar)))
    # walks hand on in the order they reach the bar, so the h that did took the first h
    # cells of the order, in some matching of walks to cells
    relief = order[: handed.sum()]
    assert not np.isin(relief, np.asarray(cells)).any()
    walked = p[4:][handed][:, relief] >= np.exp(elite_lp[relief])[None] * (1 - 1e-3)
    assert any(
        all(walked[i, c] for i, c in enumerate(perm))
        for perm in itertools.permutations(range(len(relief)))
    ), (p[4:][handed][:, relief], np.exp(elite_lp[relief]))
    # the relief order: below the bar, highest first
    below = np.isfinite(free[order]) & (free[order] < np.log(bar))
    assert below.sum() >= 1 and np.all(below[: below.sum()])
    assert np.all(np.diff(free[order][below]) <= 0)


def test_a_run_with_relay(lenet):
    """The emitter text names it with `gradient_walk`'s settings and `relay`; a short run
    improves cells."""
    text = "gradient_walk_relay.sweep=1,gradient_walk_relay.steps=3,gradient_walk_relay.relay=0.5"
    shares, params, before, after = dense_cppn_run(lenet, "gradient_walk_relay", text)
    assert [type(e).__name__ for e, _ in shares] == ["GradientWalkRelay"]
    assert float(params[0].relay) == 0.5 and float(params[0].steps) == 3.0
    assert np.all(after >= before) and np.sum(after > before) >= 5
