"""The batched archive insert equals the original's one-child-at-a-time insertion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.search import archive as archive_lib


def sequential_insert(log_prob, genomes, last, takeovers, child_genomes, child_lp, generation):
    """The original `_add_to_archive`, literally: child by child, cell by cell, strict >."""
    log_prob, genomes = log_prob.copy(), genomes.copy()
    last, takeovers = last.copy(), takeovers.copy()
    for b in range(len(child_lp)):
        for k in range(len(log_prob)):
            score = -np.inf if np.isnan(child_lp[b, k]) else child_lp[b, k]
            if score > log_prob[k]:
                log_prob[k] = score
                genomes[k] = child_genomes[b]
                last[k] = generation
                takeovers[k] += 1
    return log_prob, genomes, last, takeovers


@pytest.mark.parametrize("seed", range(8))
def test_insert_matches_sequential_reference(seed):
    rng = np.random.default_rng(seed)
    k, b = 7, 12
    arch = archive_lib.empty(jnp.zeros(3), k)
    ref = (
        np.full(k, -np.inf, np.float32),
        np.zeros((k, 3), np.float32),
        np.full(k, -1, np.int32),
        np.zeros(k, np.int32),
    )
    for generation in range(4):
        # few distinct values force ties; some NaNs must never enter
        lp = rng.choice([-3.0, -2.0, -1.0, -0.5, -1e-7], size=(b, k)).astype(np.float32)
        lp[rng.random((b, k)) < 0.05] = np.nan
        children = rng.random((b, 3)).astype(np.float32)
        arch = archive_lib.insert(arch, jnp.asarray(children), jnp.asarray(lp), generation)
        ref = sequential_insert(*ref, children, lp, generation)
        np.testing.assert_array_equal(np.asarray(arch.log_prob), ref[0])
        np.testing.assert_array_equal(np.asarray(arch.genomes), ref[1])
        np.testing.assert_array_equal(np.asarray(arch.last_improved), ref[2])
        np.testing.assert_array_equal(np.asarray(arch.takeovers), ref[3])


def test_empty_archive_and_first_insert_fills_every_cell():
    arch = archive_lib.empty({"w": jnp.zeros((2, 2))}, 5)
    assert not bool(arch.occupied.any())
    assert arch.genomes["w"].shape == (5, 2, 2)
    lp = jnp.log(jax.random.uniform(jax.random.key(0), (3, 5)))
    arch = archive_lib.insert(arch, {"w": jnp.ones((3, 2, 2))}, lp, 0)
    assert bool(arch.occupied.all())
    np.testing.assert_array_equal(arch.log_prob, lp.max(axis=0))


def test_select_draws_only_occupied_cells_uniformly():
    arch = archive_lib.empty(jnp.zeros(()), 6)
    lp = jnp.array([[-1.0, -jnp.inf, -2.0, -jnp.inf, -0.1, -3.0]])
    arch = archive_lib.insert(arch, jnp.zeros(1), lp, 0)
    cells = np.asarray(archive_lib.select(arch, jax.random.key(1), 40_000))
    counts = np.bincount(cells, minlength=6)
    assert counts[1] == counts[3] == 0
    occupied = counts[[0, 2, 4, 5]] / len(cells)
    np.testing.assert_allclose(occupied, 0.25, atol=0.01)


def test_gather_returns_the_elites_of_the_cells():
    arch = archive_lib.empty(jnp.zeros(2), 4)
    arch = archive_lib.insert(
        arch, jnp.arange(8.0).reshape(4, 2), -jnp.ones((4, 4)) + jnp.eye(4), 0
    )
    np.testing.assert_array_equal(archive_lib.gather(arch, jnp.array([2, 0])), [[4, 5], [0, 1]])
