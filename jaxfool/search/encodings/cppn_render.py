"""Rendering a CPPN genome: every pixel's inputs through the network, in bounded memory.

Rendering evaluates the DAG feed-forward, which equals the original's synchronous stepping for
depth = longest path + 1. Edges are sorted by the longest-path depth of their source, so when
an edge is processed its source is final: acc[dst] += w * act_src(acc[src]). The loop runs
over live edges only, vmapped over genomes and vectorised over pixels, in chunks of at most
`max_genome_pixels` genome-pixels so memory stays bounded.

Two renderers: "sequential" (one genome after another, `lax.switch` per edge: the CPU's) and
"batched" (all genomes of a chunk per edge: the accelerators'). `render_strategy="auto"` takes
the one of the platform the render is lowered for (`backend`, see `jaxfool.base.platforms`).

`surrogate` is the differentiable stand-in a gradient emitter uses: the same arithmetic over all
edge slots with a static trip count (`lax.scan`, which reverse-mode differentiation needs), its
forward values the renderer's exact bytes (straight-through).

Every function takes the encoding (`CppnEncoding`: image shape, capacities, coordinates, colour
and renderer settings) as its first argument.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxfool.base import platforms
from jaxfool.search.encodings.color import hls_bytes_to_rgb, hsv_bytes_to_rgb
from jaxfool.search.encodings.cppn_genome import (
    NUM_INPUTS,
    CppnGenome,
    activate,
    activate_one,
    depths,
)
from jaxfool.search.encodings.surrogate import byte_image, straight_through

SEQUENTIAL_PIXEL_BLOCK = 2**14  # pixels per pass of the CPU renderer (16 K: ~1 MiB of live rows)


def coordinates(enc: Any, size: int) -> jax.Array:
    """float32 [4, size*size] CPPN inputs per pixel (row-major), native range at any size."""
    native = enc.image_shape[0]
    idx = jnp.arange(size, dtype=jnp.float32)
    unit = -1.0 + 2.0 * idx / (size - 1)  # [-1, 1]
    raw = idx * ((native - 1) / (size - 1))  # 0..native-1 at any resolution
    col, row = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="xy")
    xn, yn = unit[col].ravel(), unit[row].ravel()
    if enc.coords == "raw":
        x, y = raw[col].ravel(), raw[row].ravel()
    else:
        x, y = xn, yn
    d = jnp.sqrt(xn * xn + yn * yn)
    return jnp.stack([x, y, d, jnp.ones_like(d)])


def schedule(enc: Any, g: CppnGenome, order: jax.Array | None = None):
    """Edges sorted by source depth (dead ones last), as (src, dst, weight, count); `order`:
    `schedule_order(enc, g)` where the caller has it already."""
    order = schedule_order(enc, g) if order is None else order
    weight = jnp.where(g.edge_alive, 20.0 * g.weight - 10.0, 0.0)[order]
    return g.src[order], g.dst[order], weight, jnp.sum(g.edge_alive, dtype=jnp.int32)


def schedule_order(enc: Any, g: CppnGenome) -> jax.Array:
    """int32 [E]: the edge slots in order of their source's depth (a stable order; dead slots
    last), the order in which each edge's source is final when the edge is applied."""
    e = enc.max_edges
    key = jnp.where(g.edge_alive, depths(g)[g.src], enc.max_nodes) * e + jnp.arange(e)
    # a stable sort by source depth, as one int32 sort (XLA's CPU argsort is ~10x slower)
    return jnp.sort(key) % e


def outputs_sequential(enc: Any, act: jax.Array, table, coords: jax.Array) -> jax.Array:
    """float32 [G, C, P], one genome after another: each edge costs one activation of its
    source (`lax.switch`) and an in-place row update. Fastest on CPUs."""

    unroll = 2  # edges per loop iteration: amortises the loop's fixed cost

    def one(args):
        act, (src, dst, weight, count) = args
        # dead edges (weight 0) pad the table so the last iteration may overrun `count`
        src, dst = (jnp.pad(a, (0, unroll)) for a in (src, dst))
        weight = jnp.pad(weight, (0, unroll))
        acc = jnp.zeros((enc.max_nodes, coords.shape[1]), jnp.float32)
        acc = acc.at[:NUM_INPUTS].set(coords)

        def edges(i, acc):
            for j in range(unroll):
                k = unroll * i + j
                s = src[k]
                acc = acc.at[dst[k]].add(weight[k] * activate_one(act[s], acc[s]))
            return acc

        acc = jax.lax.fori_loop(0, (count + unroll - 1) // unroll, edges, acc)
        outs = [activate_one(act[o], acc[o]) for o in range(NUM_INPUTS, enc.first_hidden)]
        return jnp.stack(outs)

    return jax.lax.map(one, (act, table))


def outputs_batched(enc: Any, act: jax.Array, table, coords: jax.Array) -> jax.Array:
    """float32 [G, C, P]: G genomes (act [G, N], schedules) on pixel inputs [4, P].

    The loop runs to the largest live-edge count of the chunk; shorter genomes run on
    dead edges of weight 0, which add nothing.
    """
    src, dst, weight, count = table
    num = act.shape[0]
    rows = jnp.arange(num)
    acc = jnp.zeros((num, enc.max_nodes, coords.shape[1]), jnp.float32)
    acc = acc.at[:, :NUM_INPUTS].set(coords)

    def edge(k, acc):
        s = src[:, k]
        value = activate(act[rows, s][:, None], acc[rows, s])
        return acc.at[rows, dst[:, k]].add(weight[:, k, None] * value)

    acc = jax.lax.fori_loop(0, jnp.max(count), edge, acc)
    outs = slice(NUM_INPUTS, enc.first_hidden)
    return activate(act[:, outs, None], acc[:, outs])


def outputs(enc: Any, genomes: CppnGenome, size: int | None = None) -> jax.Array:
    """float32 [B, size, size, C]: raw CPPN outputs in [-1, 1] (default size: native)."""
    size = size or enc.image_shape[0]
    if enc.render_strategy != "auto":
        return outputs_by(enc, enc.render_strategy, size, genomes)
    sequential = partial(outputs_by, enc, "sequential", size)
    batched = partial(outputs_by, enc, "batched", size)
    return platforms.select(enc.backend, sequential, batched, genomes)


def outputs_by(enc: Any, strategy: str, size: int, genomes: CppnGenome) -> jax.Array:
    """`outputs` by one renderer ("sequential" or "batched")."""
    pixels = size * size
    block = min(pixels, enc.max_genome_pixels)
    if strategy == "sequential":  # a genome's node rows then stay in a CPU core's cache
        block = min(block, SEQUENTIAL_PIXEL_BLOCK)
    num_blocks = -(-pixels // block)
    coords = coordinates(enc, size)
    coords = jnp.pad(coords, ((0, 0), (0, num_blocks * block - pixels)))
    coords = coords.reshape(NUM_INPUTS, num_blocks, block).transpose(1, 0, 2)
    batch = genomes.act.shape[0]
    chunk = max(1, min(batch, enc.max_genome_pixels // block))
    num_chunks = -(-batch // chunk)
    padded = jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[:1], num_chunks * chunk - batch, 0)]),
        genomes,
    )
    chunks = jax.tree.map(lambda a: a.reshape((num_chunks, chunk) + a.shape[1:]), padded)

    evaluate = outputs_sequential if strategy == "sequential" else outputs_batched

    def render_chunk(gs):
        schedules = jax.vmap(partial(schedule, enc))(gs)
        per_block = jax.lax.map(
            lambda c: evaluate(enc, gs.act, schedules, c), coords
        )  # [blocks, chunk, C, block]
        return per_block.transpose(1, 2, 0, 3).reshape(chunk, -1, num_blocks * block)

    out = jax.lax.map(render_chunk, chunks).reshape(num_chunks * chunk, enc.num_outputs, -1)
    out = out[:batch, :, :pixels].reshape(batch, enc.num_outputs, size, size)
    return out.transpose(0, 2, 3, 1)


def render(enc: Any, genomes: CppnGenome, size: int | None = None) -> jax.Array:
    """uint8 [B, size, size, C]: bytes |trunc(o * 255)|; colour bytes are HLS (or HSV)."""
    raw = jnp.abs(jnp.trunc(outputs(enc, genomes, size) * 255.0)).astype(jnp.uint8)
    if enc.num_outputs == 1:
        return raw
    return hls_bytes_to_rgb(raw) if enc.color == "hls" else hsv_bytes_to_rgb(raw)


def outputs_scan(enc: Any, genome: CppnGenome, coords: jax.Array) -> jax.Array:
    """One CPPN's outputs [C, P] on pixel inputs [4, P], over all edge slots in schedule
    order (dead edges have weight 0): the renderer's arithmetic with a static trip count."""
    src, dst, weight, _ = schedule(enc, genome)
    acc = jnp.zeros((enc.max_nodes, coords.shape[1]), jnp.float32).at[:NUM_INPUTS].set(coords)

    def edge(acc, k):
        s = src[k]
        return acc.at[dst[k]].add(weight[k] * activate_one(genome.act[s], acc[s])), None

    acc, _ = jax.lax.scan(edge, acc, jnp.arange(enc.max_edges))
    outs = range(NUM_INPUTS, enc.first_hidden)
    return jnp.stack([activate_one(genome.act[o], acc[o]) for o in outs])


def surrogate(enc: Any, genomes: CppnGenome, size: int) -> jax.Array:
    """CPPN genomes -> images [n, S, S, C] with |trunc(o * 255)|'s forward values at `size`
    pixels a side, resized to the image size S when smaller."""
    coords = coordinates(enc, size)
    out = jax.vmap(lambda g: outputs_scan(enc, g, coords))(genomes)  # [n, C, P]
    n, c = out.shape[:2]
    x = jnp.abs(out.reshape(n, c, size, size).transpose(0, 2, 3, 1)) * 255.0
    # forward values from the renderer itself: the scan's float rounding differs from it by a
    # byte at rare pixels
    exact = jnp.abs(jnp.trunc(jax.lax.stop_gradient(outputs(enc, genomes, size)) * 255.0))
    images = byte_image(straight_through(x, exact), enc.color)
    native = enc.image_shape[0]
    if size == native:
        return images
    return jax.image.resize(images, (n, native, native, c), method="linear")
