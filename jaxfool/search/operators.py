"""Variation operators on genes in [0, 1], as Sferes2 implements them (`gen/evo_float.hpp`).

Both operators work elementwise on arrays of any shape (crossover: [pairs, ...]), so a whole
population is varied with one call. Randomness comes only from the key argument. They are on
the hot path, so each draws one 32-bit random word per gene (through `jaxfool.base.rng`: the values
of jax.random, computed fused) and evaluates one power per branch point.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxfool.base import (
    rng,  # Sferes compares parent genes with float epsilon before crossing them.
)

FLT_EPSILON = float(jnp.finfo(jnp.float32).eps)


def _pow(x: jax.Array, exponent: float) -> jax.Array:
    """x ** exponent for x >= 0 as exp(exponent * log x): 2.6x faster than XLA's CPU pow."""
    return jnp.exp(exponent * jnp.log(x))


def polynomial_delta(u: jax.Array, eta: float) -> jax.Array:
    """Deb's polynomial mutation step for uniform draws u in [0, 1): a value in [-1, 1].

    delta = (2u)^(1/(eta+1)) - 1 if u < 0.5 else 1 - (2(1-u))^(1/(eta+1)).
    """
    low = u < 0.5
    p = _pow(jnp.where(low, 2.0 * u, 2.0 * (1.0 - u)), 1.0 / (eta + 1.0))
    return jnp.where(low, p - 1.0, 1.0 - p)


def polynomial_mutation(
    key: jax.Array,
    genes: jax.Array,
    rate: float | jax.Array,
    eta: float,
    offset: jax.Array | int = 0,
    backend: str = "auto",
) -> jax.Array:
    """Each gene, with probability `rate`, moves by a polynomial step and is clipped to [0, 1].

    One uniform u per gene decides both: the gene mutates if u < rate, and then u / rate is
    itself uniform on [0, 1) and drives the step. `offset` (see `rng.bits`) mutates a block of a
    larger array with that array's draws; `backend` is the random words' (same values).
    """
    u = rng.uniform(key, genes.shape, offset, backend)
    rate = jnp.asarray(rate, jnp.float32)
    picked = u < rate
    # u * (1 / rate), not u / rate: XLA rewrites a division by a constant into this product,
    # so writing it out gives the same bits whether `rate` is a constant or a runtime value.
    delta = polynomial_delta(jnp.where(picked, u * (1.0 / rate), 0.5), eta)
    return jnp.where(picked, jnp.clip(genes + delta, 0.0, 1.0), genes)


def _sbx_beta_q(u: jax.Array, beta: jax.Array, eta: float) -> jax.Array:
    alpha = 2.0 - _pow(beta, -(eta + 1.0))
    inside = u <= 1.0 / alpha
    return _pow(jnp.where(inside, u * alpha, 1.0 / (2.0 - u * alpha)), 1.0 / (eta + 1.0))


def sbx_children(
    key: jax.Array,
    a: jax.Array,
    b: jax.Array,
    eta: float,
    equal_genes: str = "copy",
    offset: jax.Array | int = 0,
    backend: str = "auto",
) -> jax.Array:
    """Simulated binary crossover, bounded to [0, 1], per gene (Deb's code, as in Sferes).

    `a` and `b` are [pairs, ...]; returns the children as [pairs, 2, ...]. Each gene pair
    (y1 <= y2) gets a child below and a child above their mean, the first child taking the
    lower one unless a coin (the random word's low bit) swaps them. Where |y1 - y2| <=
    FLT_EPSILON Sferes skips the gene and the child keeps its default-constructed value 0.5
    (`equal_genes="half"`, bug-compatible); the default `"copy"` keeps the parents' values
    instead (a to the first child, b to the second), which is what the operator intends.

    Both children are computed in one elementwise pass over [pairs, 2, ...], choosing each
    child's side before the powers (2 per child, not 4), with no stacking afterwards. `offset`
    (see `rng.bits`) crosses a block of larger parent arrays with those arrays' draws;
    `backend` is the random words' (same values).
    """
    if equal_genes not in ("copy", "half"):
        raise ValueError(f"equal_genes must be 'copy' or 'half', got {equal_genes!r}")
    # one random word per gene pair, shared by its two children
    bits = rng.bits(key, a.shape, offset, backend)[:, None]
    a, b = a[:, None], b[:, None]
    u = rng.unit_float(bits)
    swap = (bits & 1) == 1  # the low bit is unused by u
    second = jax.lax.broadcasted_iota(jnp.int32, (a.shape[0], 2) + a.shape[2:], 1) == 1
    low = second == swap  # the first child is the lower one unless swapped
    y1, y2 = jnp.minimum(a, b), jnp.maximum(a, b)
    differ = jnp.abs(y1 - y2) > FLT_EPSILON
    span = jnp.where(differ, y2 - y1, 1.0)
    bq = _sbx_beta_q(u, 1.0 + 2.0 * jnp.where(low, y1, 1.0 - y2) / span, eta)
    child = jnp.clip(0.5 * ((y1 + y2) + jnp.where(low, -bq, bq) * (y2 - y1)), 0.0, 1.0)
    fill = jnp.full_like(child, 0.5) if equal_genes == "half" else jnp.where(second, b, a)
    return jnp.where(differ, child, fill)


def sbx_crossover(
    key: jax.Array,
    a: jax.Array,
    b: jax.Array,
    eta: float,
    equal_genes: str = "copy",
) -> tuple[jax.Array, jax.Array]:
    """`sbx_children` as two arrays shaped like `a`: (first children, second children)."""
    children = sbx_children(key, a, b, eta, equal_genes)
    return children[:, 0], children[:, 1]
