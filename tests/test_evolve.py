"""Whole generations: determinism, chunking invariance, archive invariants, NaN handling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.classifiers import scoring
from jaxfool.classifiers.nets.lenet import LeNet, lenet_classifier
from jaxfool.search import map_elites as evolve
from jaxfool.search.encodings.direct import DirectEncoding


@pytest.fixture(scope="module")
def small():
    """A randomly initialised LeNet (no files needed) and a small config."""
    variables = LeNet().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    clf, params = lenet_classifier("lenet", variables, None)
    config = evolve.EvolutionConfig(DirectEncoding(), clf, tuple(range(10)), 16, 16)
    return config, params


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_same_seed_same_state_and_chunking_does_not_matter(small):
    config, params = small
    init_key, loop_key = evolve.run_keys(7)
    s0 = evolve.init(config, params, init_key)
    whole = evolve.run(config, params, s0, loop_key, 10)
    parts = evolve.run(config, params, evolve.run(config, params, s0, loop_key, 4), loop_key, 6)
    again = evolve.run(config, params, evolve.init(config, params, init_key), loop_key, 10)
    for a, b, c in zip(leaves(whole), leaves(parts), leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    other = evolve.run(config, params, s0, evolve.run_keys(8)[1], 10)
    assert not np.array_equal(other.archive.genomes, whole.archive.genomes)
    assert int(whole.generation) == 10 and int(whole.evaluations) == 16 + 10 * 16


def test_archive_scores_are_the_scores_of_the_saved_images(small):
    """What is archived is what was scored: re-scoring the elites' images gives their fitness."""
    config, params = small
    init_key, loop_key = evolve.run_keys(0)
    state = evolve.run(config, params, evolve.init(config, params, init_key), loop_key, 15)
    images = config.encoding.express(state.archive.genomes)
    lp = scoring.score(config.classifier.logits, params, images)
    np.testing.assert_allclose(
        np.diagonal(np.asarray(lp)), np.asarray(state.archive.log_prob), rtol=1e-5, atol=1e-6
    )


def test_fitness_never_decreases_and_takeovers_count_improvements(small):
    config, params = small
    init_key, loop_key = evolve.run_keys(1)
    state = evolve.init(config, params, init_key)
    prev_lp, prev_takeovers = (
        np.asarray(state.archive.log_prob),
        np.asarray(state.archive.takeovers),
    )
    for _ in range(5):
        state = evolve.run(config, params, state, loop_key, 3)
        lp, takeovers = np.asarray(state.archive.log_prob), np.asarray(state.archive.takeovers)
        assert (lp >= prev_lp).all()
        assert ((lp > prev_lp) <= (takeovers > prev_takeovers)).all()
        prev_lp, prev_takeovers = lp, takeovers
    assert (np.asarray(state.archive.last_improved) <= int(state.generation)).all()


def test_class_subset_maps_cells_to_classifier_outputs(small):
    config, params = small
    sub = dataclasses.replace(config, classes=(7, 2))
    state = evolve.init(sub, params, jax.random.key(0))
    images = sub.encoding.express(state.archive.genomes)
    lp = np.asarray(scoring.score(sub.classifier.logits, params, images))
    np.testing.assert_allclose([lp[0, 7], lp[1, 2]], np.asarray(state.archive.log_prob), rtol=1e-5)


def test_eval_chunk_gives_the_same_scores(small):
    config, params = small
    genomes = config.encoding.init(jax.random.key(3), 16)
    full, _ = evolve.evaluate(config, params, genomes)
    chunked, _ = evolve.evaluate(dataclasses.replace(config, eval_chunk=5), params, genomes)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6)


def test_nan_scores_are_counted_and_never_archived(small):
    config, params = small

    def nan_on_bright(params, images):
        logits = config.classifier.logits(params, images)
        bright = images.reshape(images.shape[0], -1).mean(axis=1) > 127.5
        return jnp.where(bright[:, None], jnp.nan, logits)

    clf = dataclasses.replace(config.classifier, logits=nan_on_bright)
    cfg = dataclasses.replace(config, classifier=clf)
    init_key, loop_key = evolve.run_keys(0)
    state = evolve.run(cfg, params, evolve.init(cfg, params, init_key), loop_key, 5)
    assert int(state.nan_scores) > 0
    assert np.isfinite(np.asarray(state.archive.log_prob)).all()
    bright = np.asarray(cfg.encoding.express(state.archive.genomes)).mean(axis=(1, 2, 3)) > 127.5
    assert not bright.any()


def test_config_validation(small):
    config, _ = small
    with pytest.raises(ValueError, match="even"):
        dataclasses.replace(config, population=15)
    with pytest.raises(ValueError, match="out of range"):
        dataclasses.replace(config, classes=(3, 10))
    with pytest.raises(ValueError, match="distinct"):
        dataclasses.replace(config, classes=(3, 3))


def test_evolution_fools_the_shipped_lenet(lenet):
    """A short real run raises every digit's confidence well above the random start."""
    clf, params = lenet
    config = evolve.EvolutionConfig(DirectEncoding(), clf, tuple(range(10)), 100, 100)
    init_key, loop_key = evolve.run_keys(0)
    s0 = evolve.init(config, params, init_key)
    s1 = evolve.run(config, params, s0, loop_key, 100)
    p0, p1 = np.exp(np.asarray(s0.archive.log_prob)), np.exp(np.asarray(s1.archive.log_prob))
    assert np.median(p0) < 0.9 and np.median(p1) > 0.99
    assert (p1 > p0).all() and (p1 > 0.99).sum() >= 7
