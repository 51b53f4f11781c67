"""Polynomial mutation and SBX against scalar ports of Sferes' C++ code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.search import operators


def poly_delta_ref(r, eta):
    # sferes gen/evo_float.hpp Mutation_f<polynomial>
    if r < 0.5:
        return (2.0 * r) ** (1.0 / (eta + 1.0)) - 1.0
    return 1 - (2.0 * (1.0 - r)) ** (1.0 / (eta + 1.0))


def sbx_ref(f1, f2, rand, flip, eta_c):
    # sferes gen/evo_float.hpp CrossOver_f<sbx>, one gene; returns (child1, child2) or None
    y1, y2 = min(f1, f2), max(f1, f2)
    yl, yu = 0.0, 1.0
    if not abs(y1 - y2) > np.finfo(np.float32).eps:
        return None
    beta = 1.0 + (2.0 * (y1 - yl) / (y2 - y1))
    alpha = 2.0 - beta ** (-(eta_c + 1.0))
    if rand <= 1.0 / alpha:
        betaq = (rand * alpha) ** (1.0 / (eta_c + 1.0))
    else:
        betaq = (1.0 / (2.0 - rand * alpha)) ** (1.0 / (eta_c + 1.0))
    c1 = 0.5 * ((y1 + y2) - betaq * (y2 - y1))
    beta = 1.0 + (2.0 * (yu - y2) / (y2 - y1))
    alpha = 2.0 - beta ** (-(eta_c + 1.0))
    if rand <= 1.0 / alpha:
        betaq = (rand * alpha) ** (1.0 / (eta_c + 1.0))
    else:
        betaq = (1.0 / (2.0 - rand * alpha)) ** (1.0 / (eta_c + 1.0))
    c2 = 0.5 * ((y1 + y2) + betaq * (y2 - y1))
    c1, c2 = min(max(c1, yl), yu), min(max(c2, yl), yu)
    return (c2, c1) if flip else (c1, c2)


def test_polynomial_delta_matches_reference():
    u = np.linspace(0, 1, 1001, endpoint=False, dtype=np.float32)
    got = np.asarray(operators.polynomial_delta(jnp.asarray(u), 15.0))
    want = np.array([poly_delta_ref(float(r), 15.0) for r in u])
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_polynomial_mutation_statistics():
    genes = jnp.full((400_000,), 0.5, jnp.float32)
    out = np.asarray(operators.polynomial_mutation(jax.random.key(0), genes, 0.1, 15.0))
    moved = out != 0.5
    assert abs(moved.mean() - 0.1) < 0.003
    assert out.min() >= 0.0 and out.max() <= 1.0
    # E|delta| = 1/(eta + 2) for an unclipped gene (docs/faithfulness.md, direct encoding)
    assert abs(np.abs(out[moved] - 0.5).mean() - 1 / 17) < 0.002
    # median |delta| = 1 - 0.5^(1/16)
    assert abs(np.median(np.abs(out[moved] - 0.5)) - (1 - 0.5 ** (1 / 16))) < 0.002


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_polynomial_mutation_rate_extremes(rate):
    genes = jax.random.uniform(jax.random.key(1), (1000,))
    out = operators.polynomial_mutation(jax.random.key(2), genes, rate, 15.0)
    changed = np.mean(np.asarray(out) != np.asarray(genes))
    assert changed == 0.0 if rate == 0.0 else changed > 0.99


def test_sbx_matches_reference_gene_by_gene():
    key = jax.random.key(3)
    a = jax.random.uniform(jax.random.key(4), (2000,))
    b = jax.random.uniform(jax.random.key(5), (2000,))
    b = b.at[:50].set(a[:50])  # equal genes
    c1, c2 = operators.sbx_crossover(key, a, b, 10.0, equal_genes="half")
    bits = np.asarray(jax.random.bits(key, a.shape, jnp.uint32))
    rand = ((bits >> 9).astype(np.float64)) / 2**23
    flip = (bits & 1) == 1
    a, b, c1, c2 = (np.asarray(x, np.float64) for x in (a, b, c1, c2))
    for i in range(len(bits)):
        ref = sbx_ref(a[i], b[i], rand[i], flip[i], 10.0)
        want = (0.5, 0.5) if ref is None else ref
        np.testing.assert_allclose([c1[i], c2[i]], want, atol=3e-6, err_msg=str(i))


def test_sbx_equal_genes_copy_keeps_parents():
    """equal_genes="copy": genes within FLT_EPSILON are copied (a to the first child, b to the
    second, bit for bit); the other genes are Sferes' SBX children (`sbx_ref`)."""
    tiny = float(np.nextafter(np.float32(0.7), np.float32(1)))  # 0.7 and its neighbour: "equal"
    a = jnp.array([0.2, 0.7, 0.7, 0.9, 0.05, 0.7, 0.3, 0.6], jnp.float32)
    b = jnp.array([0.2, 0.1, 0.7, 0.2, 0.95, tiny, 0.35, 0.6], jnp.float32)
    equal = np.array([True, False, True, False, False, True, False, True])
    coins = set()
    for seed in range(4):
        key = jax.random.key(seed)
        c1, c2 = (np.asarray(c) for c in operators.sbx_crossover(key, a, b, 10.0))
        np.testing.assert_array_equal(c1[equal], np.asarray(a)[equal])
        np.testing.assert_array_equal(c2[equal], np.asarray(b)[equal])
        bits = np.asarray(jax.random.bits(key, a.shape, jnp.uint32))
        rand = ((bits >> 9).astype(np.float64)) / 2**23
        for i in np.flatnonzero(~equal):
            coins.add(bool(bits[i] & 1))
            want = sbx_ref(float(a[i]), float(b[i]), rand[i], bits[i] & 1 == 1, 10.0)
            np.testing.assert_allclose([c1[i], c2[i]], want, rtol=0, atol=3e-6, err_msg=str(i))
    assert coins == {False, True}  # both orders of the children were checked


def test_sbx_children_stay_in_bounds():
    a = jax.random.uniform(jax.random.key(6), (100_000,))
    b = jax.random.uniform(jax.random.key(7), (100_000,))
    c1, c2 = operators.sbx_crossover(jax.random.key(8), a, b, 10.0)
    for c in (c1, c2):
        assert float(c.min()) >= 0.0 and float(c.max()) <= 1.0
    assert not np.isnan(np.asarray(c1)).any()
