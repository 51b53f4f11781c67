"""Direct encoding: genes -> bytes, variation order, the optional paper schedule."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.search import operators
from jaxfool.search.encodings.direct import DirectEncoding


def test_express_truncates_gene_times_255():
    enc = DirectEncoding()
    genes = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
    genes = genes.at[0, 0, 0, 0].set(1.0).at[0, 0, 1, 0].set(0.0)
    img = np.asarray(enc.express(genes))
    assert img.dtype == np.uint8 and img.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(img, np.floor(np.asarray(genes, np.float32) * np.float32(255)))
    assert img[0, 0, 0, 0] == 255 and img[0, 0, 1, 0] == 0


def test_init_is_uniform_in_unit_interval():
    genes = np.asarray(DirectEncoding().init(jax.random.key(1), 100))
    assert genes.shape == (100, 28, 28, 1) and genes.min() >= 0 and genes.max() < 1
    assert abs(genes.mean() - 0.5) < 0.01


def test_without_crossover_or_mutation_children_are_the_parent_pairs():
    enc = DirectEncoding(mutation_rate=0.0, crossover_rate=0.0)
    a = jax.random.uniform(jax.random.key(2), (50, 28, 28, 1))
    b = jax.random.uniform(jax.random.key(3), (50, 28, 28, 1))
    kids = np.asarray(enc.vary(jax.random.key(4), a, b, 0)).reshape(50, 2, -1)
    a, b = np.asarray(a).reshape(50, -1), np.asarray(b).reshape(50, -1)
    for i in range(50):
        got = {kids[i, 0].tobytes(), kids[i, 1].tobytes()}
        assert got == {a[i].tobytes(), b[i].tobytes()}
    first_is_a = [np.array_equal(kids[i, 0], a[i]) for i in range(50)]
    assert 10 < sum(first_is_a) < 40  # random order, as the original's coin flip


def test_crossover_rate_is_per_pair():
    enc = DirectEncoding(mutation_rate=0.0, crossover_rate=0.5)
    a = jax.random.uniform(jax.random.key(5), (2000, 4, 4, 1))
    b = jax.random.uniform(jax.random.key(6), (2000, 4, 4, 1))
    kids = np.asarray(enc.vary(jax.random.key(7), a, b, 0)).reshape(2000, 2, -1)
    copied = [
        {kids[i, 0].tobytes(), kids[i, 1].tobytes()}
        == {np.asarray(a[i]).tobytes(), np.asarray(b[i]).tobytes()}
        for i in range(2000)
    ]
    assert abs(np.mean(copied) - 0.5) < 0.04


@pytest.mark.parametrize("genes", ["float32", "uint8"])
def test_vary_mutates_as_the_flat_child_array(genes):
    """vary mutates [pairs, 2, ...] for speed; the draws must be those of mutating the flat
    array of 2n children (the formulation the README's figures were measured with)."""
    enc = DirectEncoding((16, 16, 3), genes=genes, mutation_rate=0.3)
    a, b = enc.init(jax.random.key(8), 6), enc.init(jax.random.key(9), 6)
    key = jax.random.key(10)

    def flat_reference(key, a, b):
        k_cross, k_do, k_order, k_mut = jax.random.split(key, 4)
        fa, fb = enc.decode(a), enc.decode(b)
        x1, x2 = operators.sbx_crossover(k_cross, fa, fb, enc.eta_c)
        flip = jax.random.bernoulli(k_order, 0.5, (6, 1, 1, 1))
        cross = jax.random.uniform(k_do, (6, 1, 1, 1)) < enc.crossover_rate
        c1 = jnp.where(cross, x1, jnp.where(flip, fb, fa))
        c2 = jnp.where(cross, x2, jnp.where(flip, fa, fb))
        flat = jnp.stack([c1, c2], axis=1).reshape(12, 16, 16, 3)
        mutated = operators.polynomial_mutation(k_mut, flat, enc.mutation_rate, enc.eta_m)
        return enc.encode(mutated), enc.encode(flat)

    want, unmutated = jax.jit(flat_reference)(key, a, b)
    got = jax.jit(lambda k, a, b: enc.vary(k, a, b, 0))(key, a, b)
    if genes == "uint8":
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    else:  # the same draws; XLA may round the same formula 1 ulp apart in another fusion
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=3e-7)
    assert np.mean(np.asarray(got) != np.asarray(unmutated)) > 0.1  # mutation acted


@pytest.mark.parametrize("genes", ["float32", "uint8"])
def test_vary_in_blocks_equals_vary_at_once(genes):
    """Large populations are varied in a loop over blocks of pairs (memory, and XLA's CPU
    fusion); every block must draw its pairs' own random numbers, padding pairs dropped."""
    enc = DirectEncoding((8, 8, 3), genes=genes, mutation_rate=0.3)
    a, b = enc.init(jax.random.key(12), 7), enc.init(jax.random.key(13), 7)
    key = jax.random.key(14)
    at_once = np.asarray(jax.jit(lambda k, a, b: enc.vary(k, a, b, 0))(key, a, b))
    small = dataclasses.replace(enc, vary_block_genes=2 * 2 * 8 * 8 * 3)  # 2 pairs: 4 blocks
    blocked = np.asarray(jax.jit(lambda k, a, b: small.vary(k, a, b, 0))(key, a, b))
    assert blocked.shape == at_once.shape == (14, 8, 8, 3)
    if genes == "uint8":
        np.testing.assert_array_equal(blocked, at_once)
    else:
        np.testing.assert_allclose(blocked, at_once, rtol=0, atol=3e-7)


@pytest.mark.parametrize("gen,rate", [(0, 0.1), (999, 0.1), (1000, 0.05), (2500, 0.025)])
def test_halving_schedule(gen, rate):
    assert float(DirectEncoding(mutation_schedule="halving").rate(jnp.int32(gen))) == pytest.approx(
        rate
    )
    assert float(DirectEncoding().rate(jnp.int32(gen))) == pytest.approx(0.1)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mutation_schedule"):
        DirectEncoding(mutation_schedule="cosine")
    with pytest.raises(ValueError, match="genes"):
        DirectEncoding(genes="float16")
    with pytest.raises(ValueError, match="channels"):
        DirectEncoding(image_shape=(8, 8, 2))
    with pytest.raises(ValueError, match="vary_block_genes"):
        DirectEncoding(vary_block_genes=0)


def test_colour_genes_are_opencv_hls_bytes():
    """C = 3: floor(g * 255) are OpenCV HLS bytes, shown as RGB (checked against colorsys)."""
    import colorsys

    enc = DirectEncoding(image_shape=(6, 7, 3))
    genes = enc.init(jax.random.key(8), 3)
    rgb = np.asarray(enc.express(genes))
    hls = np.floor(np.asarray(genes, np.float32) * np.float32(255)).astype(np.int64)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 6, 7, 3)
    for idx in np.ndindex(*hls.shape[:3]):
        h, light, s = hls[idx]
        want = colorsys.hls_to_rgb(((2 * h) % 360) / 360, light / 255, s / 255)
        np.testing.assert_allclose(rgb[idx], np.array(want) * 255, atol=1.0)


def test_uint8_genes_store_the_bytes_and_express_like_float_genes():
    """The compact format keeps genomes as their pixel bytes: same images, 4x less memory."""
    f32 = DirectEncoding(image_shape=(16, 16, 3))
    u8 = DirectEncoding(image_shape=(16, 16, 3), genes="uint8")
    genes = f32.init(jax.random.key(9), 5)
    stored = u8.init(jax.random.key(9), 5)
    assert stored.dtype == jnp.uint8 and stored.nbytes * 4 == genes.nbytes
    np.testing.assert_array_equal(u8.express(stored), f32.express(genes))
    # every byte decodes to a gene that re-encodes to the same byte
    every = jnp.arange(256, dtype=jnp.uint8)
    np.testing.assert_array_equal(u8.encode(u8.decode(every)), every)


def test_uint8_genes_vary_like_float_genes_from_the_byte_centres():
    """Varying byte genomes = varying the decoded genes, then storing their bytes."""
    f32 = DirectEncoding(image_shape=(8, 8, 3))
    u8 = DirectEncoding(image_shape=(8, 8, 3), genes="uint8")
    a = u8.init(jax.random.key(10), 40)
    b = u8.init(jax.random.key(11), 40)
    key = jax.random.key(12)
    want = f32.to_bytes(f32.vary(key, u8.decode(a), u8.decode(b), 0))
    got = u8.vary(key, a, b, 0)
    assert got.dtype == jnp.uint8
    np.testing.assert_array_equal(got, want)
    changed = np.mean(np.asarray(got) != np.repeat(np.asarray(a), 2, axis=0))
    assert changed > 0.1  # variation happened (crossover and mutation)
