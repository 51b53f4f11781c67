"""jaxfool.base.rng: the same numbers as jax.random.bits / uniform, for every key and
shape it takes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from jaxfool.base import rng

SHAPES = [(1,), (7,), (3, 5, 2), (2, 1, 4, 3), (33, 17, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_bits_equal_jax_random_bits(shape):
    for key in (jax.random.key(0), jax.random.split(jax.random.key(7), 5)[3],
                jax.random.fold_in(jax.random.key(2**31 - 1), 12345)):  # fmt: skip
        want = jax.random.bits(key, shape, jnp.uint32)
        np.testing.assert_array_equal(rng.bits(key, shape), want)
        np.testing.assert_array_equal(jax.jit(rng.bits, static_argnums=1)(key, shape), want)


def test_uniform_equals_jax_random_uniform_and_raw_keys_work():
    key = jax.random.key(3)
    np.testing.assert_array_equal(rng.uniform(key, (4, 9)), jax.random.uniform(key, (4, 9)))
    raw = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(rng.bits(raw, (50,)), jax.random.bits(key, (50,)))
    u = np.asarray(rng.uniform(key, (100_000,)))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005


def test_vmapped_over_keys():
    keys = jax.random.split(jax.random.key(11), 4)
    got = jax.vmap(lambda k: rng.bits(k, (6, 5)))(keys)
    want = jax.vmap(lambda k: jax.random.bits(k, (6, 5), jnp.uint32))(keys)
    np.testing.assert_array_equal(got, want)


def test_other_generators_fall_back_to_jax_random():
    key = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(rng.bits(key, (3, 4)), jax.random.bits(key, (3, 4), jnp.uint32))
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", not previous)
    try:
        key = jax.random.key(5)
        want = jax.random.bits(key, (3, 4), jnp.uint32)
        np.testing.assert_array_equal(rng.bits(key, (3, 4)), want)
    finally:
        jax.config.update("jax_threefry_partitionable", previous)


def test_offset_draws_a_block_of_the_larger_array():
    key = jax.random.key(21)
    whole = np.asarray(jax.random.bits(key, (12, 5, 3), jnp.uint32))
    block = jax.jit(lambda k, first: rng.bits(k, (4, 5, 3), first * 15))
    for first in (0, 3, 8):
        np.testing.assert_array_equal(block(key, jnp.uint32(first)), whole[first : first + 4])
    np.testing.assert_array_equal(
        rng.uniform(key, (2, 5, 3), 30), jax.random.uniform(key, (12, 5, 3))[2:4]
    )


def test_block_function_is_jax_threefry():
    """The unrolled rounds against JAX's own Threefry-2x32, on random counters and keys."""
    words = np.random.default_rng(0).integers(0, 2**32, (4, 1000), dtype=np.uint32)
    for k1, k2 in [(0, 0), (1, 2), (0xDEADBEEF, 0x12345678)]:
        x1, x2 = jnp.asarray(words[0]), jnp.asarray(words[1])
        keypair = (jnp.uint32(k1), jnp.uint32(k2))
        want = np.asarray(threefry_2x32(keypair, jnp.concatenate([x1, x2])))
        y1, y2 = rng.threefry2x32(keypair[0], keypair[1], x1, x2)
        np.testing.assert_array_equal(np.concatenate([y1, y2]), want)


def test_offsets_past_2_to_the_31():
    """The counter is unsigned: blocks of a draw of 2**31 or more words get the right words."""
    key = jax.random.key(4)
    offset = 2**31 + 12345
    got = jax.jit(lambda o: rng.bits(key, (8,), o))(jnp.uint32(offset))
    count = jnp.arange(offset, offset + 8, dtype=jnp.uint32)
    y = threefry_2x32(jax.random.key_data(key), jnp.concatenate([jnp.zeros(8, jnp.uint32), count]))
    np.testing.assert_array_equal(got, y[:8] ^ y[8:])


def test_offset_needs_the_default_generator():
    with pytest.raises(ValueError, match="offset"):
        rng.bits(jax.random.key(5, impl="rbg"), (3,), jnp.uint32(3))
