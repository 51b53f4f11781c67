"""The CPPN renderer's two strategies and its chunking give the same images."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxfool.search.encodings.cppn import CppnEncoding


@pytest.fixture(scope="module")
def grown():
    """12 colour genomes after 40 generations of mutation (no selection)."""
    enc = CppnEncoding((20, 20, 3), max_nodes=24, max_edges=64)
    genomes = enc.init(jax.random.key(0), 12)
    vary = jax.jit(enc.vary)
    for g in range(40):
        genomes = vary(
            jax.random.key(g),
            jax.tree.map(lambda a: a[:6], genomes),
            jax.tree.map(lambda a: a[6:], genomes),
            g,
        )
    assert int(genomes.edge_alive.sum(axis=1).max()) > 12  # grown beyond the initial 12 edges
    return enc, genomes


@pytest.mark.parametrize("size", [20, 33, 140])  # 140: two CPU passes of 16 K pixels
def test_batched_and_sequential_strategies_agree(grown, size):
    enc, genomes = grown
    seq = dataclasses.replace(enc, render_strategy="sequential")
    bat = dataclasses.replace(enc, render_strategy="batched")
    a = np.asarray(jax.jit(seq.outputs, static_argnums=1)(genomes, size))
    b = np.asarray(jax.jit(bat.outputs, static_argnums=1)(genomes, size))
    # same arithmetic up to float32 rounding (the batched path selects among all activations,
    # the sequential one switches): 99% of outputs agree to 1e-5, none differs by 1e-3
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    assert np.mean(np.abs(a - b) <= 1e-5) > 0.99
    assert a.shape == (12, size, size, 3) and np.isfinite(a).all()


def test_chunking_over_genomes_and_pixels_changes_nothing(grown):
    enc, genomes = grown
    whole = np.asarray(jax.jit(enc.render, static_argnums=1)(genomes, 33))
    # 100 genome-pixels per step: 1089-pixel blocks are cut into 11 blocks of 100, one genome each
    small = dataclasses.replace(enc, max_genome_pixels=100)
    chunked = np.asarray(jax.jit(small.render, static_argnums=1)(genomes, 33))
    np.testing.assert_array_equal(whole, chunked)
