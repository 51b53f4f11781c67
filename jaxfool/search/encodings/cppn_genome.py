"""A CPPN genome as fixed-capacity arrays, its activation functions and its graph.

The original code's genome is a Sferes `DnnFF` network (Nguyen et al. 2015 evolved it with the
Sferes2 framework). Node slots 0..3 are the inputs (x, y, d, bias), the next C slots the outputs
(1 gray, or 3 for H, L, S), the rest hidden slots. Connections are an edge table (src, dst,
weight gene, alive) rather than a weight matrix: the original allows parallel edges, and
mutations act on individual edges (delete one, split one), which a summed matrix cannot
represent. Weight genes g lie in [0, 1]; the weight is 20 g - 10.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")
IDENTITY = len(ACTIVATIONS)  # activation id of the input nodes
NUM_INPUTS = 4  # x, y, d, bias


@struct.dataclass
class CppnGenome:
    """One CPPN (a population has a leading batch axis on every field).

    act: int32 [N] activation id per node slot (inputs: IDENTITY).
    node_alive: bool [N]; inputs and outputs are always alive.
    src, dst: int32 [E] edge endpoints; weight: float32 [E] weight gene in [0, 1].
    edge_alive: bool [E].
    capacity_hits: int32 [], structural mutations skipped for lack of room along the lineage.
    """

    act: jax.Array
    node_alive: jax.Array
    src: jax.Array
    dst: jax.Array
    weight: jax.Array
    edge_alive: jax.Array
    capacity_hits: jax.Array


def _sine(p):
    return jnp.sin(p)


def _sigmoid(p):
    return 2.0 / (1.0 + jnp.exp(-p)) - 1.0


def _gaussian(p):
    return jnp.exp(-p * p)


def _linear(p):
    return jnp.clip(p, -3.0, 3.0) / 3.0


def _identity(p):
    return p


_FUNCTIONS = (_sine, _sigmoid, _gaussian, _linear, _identity)


def activate(act_id: jax.Array, p: jax.Array) -> jax.Array:
    """The original's activation functions (`af_cppn.hpp`) by id, elementwise (id 4: identity).

    All five are computed and one is selected, which suits batched (vmapped) ids.
    """
    return jnp.select([act_id == i for i in range(4)], [f(p) for f in _FUNCTIONS[:4]], p)


def activate_one(act_id: jax.Array, p: jax.Array) -> jax.Array:
    """Like `activate` for one scalar id: only the chosen function runs (`lax.switch`)."""
    return jax.lax.switch(act_id, _FUNCTIONS, p)


def pick(key: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A uniformly random index where mask is True, and whether there was any."""
    index = jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf))
    return index.astype(jnp.int32), jnp.any(mask)


def first_free(alive: jax.Array, start: int = 0) -> tuple[jax.Array, jax.Array]:
    """The first slot >= start that is not alive, and whether there is one."""
    free = ~alive & (jnp.arange(alive.shape[0]) >= start)
    return jnp.argmax(free).astype(jnp.int32), jnp.any(free)


def _fixed_point(step, init: jax.Array, max_steps: int) -> jax.Array:
    """Iterates `step` from `init` until nothing changes (at most `max_steps` times)."""

    def cond(carry):
        i, _, changed = carry
        return changed & (i < max_steps)

    def body(carry):
        i, x, _ = carry
        new = step(x)
        return i + 1, new, jnp.any(new != x)

    return jax.lax.while_loop(cond, body, (0, init, True))[1]


def ancestors(genome: CppnGenome, node: jax.Array) -> jax.Array:
    """bool [N]: `node` and every node with a path of alive edges to it."""
    n = genome.act.shape[0]

    def grow(anc):
        return anc.at[genome.src].max(anc[genome.dst] & genome.edge_alive)

    return _fixed_point(grow, jnp.arange(n) == node, n)


def depths(genome: CppnGenome) -> jax.Array:
    """int32 [N]: the longest path of alive edges into each node (0 for sources)."""
    n = genome.act.shape[0]

    def relax(depth):
        return depth.at[genome.dst].max(jnp.where(genome.edge_alive, depth[genome.src] + 1, 0))

    return _fixed_point(relax, jnp.zeros(n, jnp.int32), n)
