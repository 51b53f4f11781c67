"""The exact gradient of a CPPN's outputs in its weight genes, at full resolution, in bounded
memory: what the `gradient_full` emitter differentiates through.

`cppn_render.surrogate` differentiates a `lax.scan` over every edge slot (reverse-mode autodiff
needs a static trip count), so a gradient costs all `max_edges` slots on every pixel and keeps
a node table per slot; it is therefore taken at most 64 pixels a side and resized. Here the
vector-Jacobian product is written out instead. For a loss L(outputs) the weight gradient is a
sum over pixels, so it is computed block of pixels by block; each block re-runs the renderer's
live-edge loop (edges in order of their source's depth, so each node row ends holding that
node's final pre-activation), then walks the same live edges in reverse (a `fori_loop` with the
genome's own edge count):

    forward   acc[dst] += w * f_src(acc[src])                 for each live edge, in order
    outputs   out_c = f_c(acc[c])
    backward  bar[c] = dL/dout_c * f_c'(acc[c])
              dL/dw = sum_pixels bar[dst] * f_src(acc[src])   for each live edge, reversed
              bar[src] += w * bar[dst] * f_src'(acc[src])

When an edge is reached in reverse every edge out of its destination (whose sources are deeper)
has been, so bar[dst] is final; acc[src] was final when the edge ran forward. Memory: two node
tables [max_nodes, pixel_block] per genome in flight, whatever the image size.

`outputs_exact` wraps it as a `jax.custom_vjp`: forward, the real renderer's float outputs at
native size (so the bytes are exactly those `express` scores), backward, `weight_vjp`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxfool.base import platforms
from jaxfool.search.encodings import cppn_render
from jaxfool.search.encodings.cppn_genome import NUM_INPUTS, CppnGenome, activate_one
from jaxfool.search.encodings.surrogate import byte_image, straight_through

DEFAULT_PIXEL_BLOCK = 2**14  # pixels of one genome's node tables at a time (4 MiB at 64 nodes)


def _value_and_slope(act_id: jax.Array, p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """f(p) and f'(p) of activation `act_id` (the renderer's own functions, by jvp)."""
    return jax.jvp(lambda q: activate_one(act_id, q), (p,), (jnp.ones_like(p),))


def node_table(enc: Any, act: jax.Array, sched, coords: jax.Array) -> jax.Array:
    """float32 [N, P]: every node's final pre-activation for one genome on pixel inputs
    [4, P], by the renderer's live-edge loop (`sched`: `cppn_render.schedule`)."""
    src, dst, weight, count = sched
    acc = jnp.zeros((enc.max_nodes, coords.shape[1]), jnp.float32).at[:NUM_INPUTS].set(coords)

    def edge(k, acc):
        s = src[k]
        return acc.at[dst[k]].add(weight[k] * activate_one(act[s], acc[s]))

    return jax.lax.fori_loop(0, count, edge, acc)


def block_vjp(enc: Any, act: jax.Array, sched, coords: jax.Array, cot: jax.Array) -> jax.Array:
    """d(sum cot * outputs) / d(weights in schedule order) [E] of one genome on one pixel block
    (coords [4, P], cot [C, P]); zero past the live edges."""
    src, dst, weight, count = sched
    acc = node_table(enc, act, sched, coords)
    bar = jnp.zeros_like(acc)
    for c, o in enumerate(range(NUM_INPUTS, enc.first_hidden)):
        bar = bar.at[o].set(cot[c] * _value_and_slope(act[o], acc[o])[1])

    def edge(i, carry):
        bar, grad = carry
        k = count - 1 - i
        s, d = src[k], dst[k]
        value, slope = _value_and_slope(act[s], acc[s])
        grad = grad.at[k].set(jnp.sum(bar[d] * value))
        return bar.at[s].add(weight[k] * bar[d] * slope), grad

    grad = jnp.zeros(weight.shape, jnp.float32)
    return jax.lax.fori_loop(0, count, edge, (bar, grad))[1]


def weight_vjp(
    enc: Any, genomes: CppnGenome, cotangent: jax.Array, pixel_block: int = DEFAULT_PIXEL_BLOCK
) -> jax.Array:
    """d(sum cotangent * outputs(genomes)) / d weight genes: float32 [B, E], zero on dead edges.
    cotangent: [B, S, S, C] at any size S (outputs rendered at S, as `cppn_render.outputs`)."""
    size = cotangent.shape[1]
    pixels = size * size
    block = min(pixels, pixel_block)
    num_blocks = -(-pixels // block)
    pad = num_blocks * block - pixels
    coords = jnp.pad(cppn_render.coordinates(enc, size), ((0, 0), (0, pad)))
    coords = coords.reshape(NUM_INPUTS, num_blocks, block).transpose(1, 0, 2)
    batch = cotangent.shape[0]
    cot = cotangent.reshape(batch, pixels, -1).transpose(0, 2, 1)  # [B, C, P]
    cot = jnp.pad(cot, ((0, 0), (0, 0), (0, pad)))  # padded pixels: cotangent 0
    cot = cot.reshape(batch, -1, num_blocks, block).transpose(0, 2, 1, 3)  # [B, blocks, C, blk]

    def one(args):
        g, cot_blocks = args
        order = cppn_render.schedule_order(enc, g)
        sched = cppn_render.schedule(enc, g, order)

        def add_block(total, xs):
            return total + block_vjp(enc, g.act, sched, *xs), None

        zero = jnp.zeros((enc.max_edges,), jnp.float32)
        in_order, _ = jax.lax.scan(add_block, zero, (coords, cot_blocks))
        grad = jnp.zeros_like(in_order).at[order].set(in_order)
        # weight = 20 g - 10 on live edges (`cppn_render.schedule`), so d/dg = 20 d/dw
        return jnp.where(g.edge_alive, 20.0 * grad, 0.0)

    # CPU: one genome at a time (its node rows stay in cache); accelerators: all at once
    return platforms.select(
        enc.backend,
        lambda g, c: jax.lax.map(one, (g, c)),
        lambda g, c: jax.vmap(lambda *a: one(a))(g, c),
        genomes,
        cot,
    )


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def outputs_exact(enc: Any, genomes: CppnGenome, weight: jax.Array) -> jax.Array:
    """float32 [B, S, S, C]: the real renderer's outputs of `genomes` with weight genes
    `weight`, at native size; differentiable in `weight` only (by `weight_vjp`)."""
    return cppn_render.outputs(enc, genomes.replace(weight=weight))


def _outputs_fwd(enc, genomes, weight):
    return outputs_exact(enc, genomes, weight), genomes.replace(weight=weight)


def _outputs_bwd(enc, genomes, cotangent):
    return None, weight_vjp(enc, genomes, cotangent)  # no cotangent for the structure


outputs_exact.defvjp(_outputs_fwd, _outputs_bwd)


def surrogate(enc: Any, genomes: CppnGenome, genes: jax.Array) -> jax.Array:
    """CPPN genomes -> images [n, S, S, C] at native size: `express`'s exact bytes forward,
    the exact gradient of |o| * 255 (then the continuous colour conversion) backward."""
    out = outputs_exact(enc, genomes, genes)
    exact = jnp.abs(jnp.trunc(jax.lax.stop_gradient(out) * 255.0))
    return byte_image(straight_through(jnp.abs(out) * 255.0, exact), enc.color)
