"""CPPN encoding: variable-topology networks in fixed-capacity arrays, as the original code's
Sferes `DnnFF` genome (PAPER.md 4.5), mutated and rendered inside jit.

Genome layout. Node slots 0..3 are the inputs (x, y, d, bias), the next C slots the outputs
(1 gray, or 3 for H, L, S), the rest hidden slots. Connections are an edge table (src, dst,
weight gene, alive) rather than a weight matrix: the original allows parallel edges, and
mutations act on individual edges (delete one, split one), which a summed matrix cannot
represent. Weight genes g lie in [0, 1]; the weight is 20 g - 10.

Rendering evaluates the DAG feed-forward, which equals the original's synchronous stepping for
depth = longest path + 1. Edges are sorted by the longest-path depth of their source, so when
an edge is processed its source is final: acc[dst] += w * act_src(acc[src]). The loop runs
over live edges only, vmapped over genomes and vectorised over pixels, in chunks of at most
`max_genome_pixels` genome-pixels so memory stays bounded.

Two renderers: "sequential" (one genome after another, `lax.switch` per edge: the CPU's) and
"batched" (all genomes of a chunk per edge: the accelerators'). `render_strategy="auto"` takes
the one of the platform the render is lowered for (`backend`, see `jaxfool.base.platforms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.base import platforms
from jaxfool.search import operators
from jaxfool.search.encodings import color

ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")
IDENTITY = len(ACTIVATIONS)  # activation id of the input nodes
NUM_INPUTS = 4  # x, y, d, bias
COORDS = ("raw", "normalized")
COLORS = ("hls", "hsv")
SEQUENTIAL_PIXEL_BLOCK = 2**14  # pixels per pass of the CPU renderer (16 K: ~1 MiB of live rows)


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


def _pick(key: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A uniformly random index where mask is True, and whether there was any."""
    index = jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf))
    return index.astype(jnp.int32), jnp.any(mask)


def _first_free(alive: jax.Array, start: int = 0) -> tuple[jax.Array, jax.Array]:
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


@struct.dataclass
class CppnRates:
    """The CPPN mutations' numbers as a runtime pytree (the original emitter's Params): a new
    value does not recompile. Defaults: the encoding's fields (the original's rates)."""

    weight_mutation_rate: Any
    eta_m: Any
    activation_mutation_rate: Any
    add_connection_rate: Any
    delete_connection_rate: Any
    add_neuron_rate: Any
    delete_neuron_rate: Any


@dataclass(frozen=True)
class CppnEncoding:
    """CPPN genomes for S x S images with C = 1 (gray) or 3 (HLS -> RGB) outputs.

    Mutation rates are the original's (`dl_map_elites_images*.cpp`). `coords="raw"` feeds pixel
    indices 0..S-1 as x and y, as the original does; "normalized" feeds [-1, 1] instead.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    max_nodes: int = 64
    max_edges: int = 256
    coords: str = "raw"
    color: str = "hls"
    weight_mutation_rate: float = 0.1
    eta_m: float = 15.0
    activation_mutation_rate: float = 0.1
    add_connection_rate: float = 0.5
    delete_connection_rate: float = 0.3
    add_neuron_rate: float = 0.5
    delete_neuron_rate: float = 0.2
    max_genome_pixels: int = 2**20
    render_strategy: str = "auto"  # "sequential" (a genome at a time), "batched", auto: by backend
    backend: str = "auto"  # auto: by lowering platform; or "cpu" / "accelerator" forms

    def __post_init__(self):
        s, s2, c = self.image_shape
        if s != s2 or c not in (1, 3) or s < 2:
            raise ValueError(
                f"image_shape must be (S, S, 1 or 3) with S >= 2, got {self.image_shape}"
            )
        if self.coords not in COORDS:
            raise ValueError(f"coords must be one of {COORDS}, got {self.coords!r}")
        if self.color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {self.color!r}")
        if self.max_nodes < NUM_INPUTS + c:
            raise ValueError(f"max_nodes must be >= {NUM_INPUTS + c} (inputs + outputs)")
        if self.render_strategy not in ("auto", "sequential", "batched"):
            raise ValueError("render_strategy must be auto, sequential or batched")
        platforms.check_backend(self.backend)
        if (self.max_nodes + 1) * self.max_edges >= 2**31:
            raise ValueError("(max_nodes + 1) * max_edges must stay below 2**31")
        if self.max_edges < NUM_INPUTS * c:
            raise ValueError(f"max_edges must be >= {NUM_INPUTS * c} (the initial edges)")

    @property
    def num_outputs(self) -> int:
        return self.image_shape[2]

    @property
    def first_hidden(self) -> int:
        return NUM_INPUTS + self.num_outputs

    # ----------------------------------------------------------------------------- genomes
    def init_one(self, key: jax.Array) -> CppnGenome:
        """No hidden nodes, each input wired to each output, weights U[-10, 10], random acts."""
        k_act, k_w = jax.random.split(key)
        n, e, c = self.max_nodes, self.max_edges, self.num_outputs
        slots = jnp.arange(n)
        act = jnp.where(
            slots < NUM_INPUTS, IDENTITY, jax.random.randint(k_act, (n,), 0, len(ACTIVATIONS))
        )
        act = jnp.where(slots < self.first_hidden, act, 0).astype(jnp.int32)
        k = jnp.arange(e)
        initial = k < NUM_INPUTS * c
        return CppnGenome(
            act=act,
            node_alive=slots < self.first_hidden,
            src=jnp.where(initial, k // c, 0).astype(jnp.int32),
            dst=jnp.where(initial, NUM_INPUTS + k % c, 0).astype(jnp.int32),
            weight=jnp.where(initial, jax.random.uniform(k_w, (e,)), 0.0),
            edge_alive=initial,
            capacity_hits=jnp.int32(0),
        )

    def init(self, key: jax.Array, n: int) -> CppnGenome:
        return jax.vmap(self.init_one)(jax.random.split(key, n))

    def default_rates(self) -> CppnRates:
        """This encoding's mutation numbers, as float32 scalars."""
        return CppnRates(*(jnp.float32(getattr(self, f)) for f in CppnRates.__dataclass_fields__))

    def mutate(self, key: jax.Array, g: CppnGenome, rates: CppnRates | None = None) -> CppnGenome:
        """`DnnFF::mutate` on one genome: weights, activations, then the four structural ops.
        `rates`: runtime numbers (None: this encoding's fields)."""
        r = self.default_rates() if rates is None else rates
        keys = jax.random.split(key, 16)
        n_slots = jnp.arange(self.max_nodes)
        is_input = n_slots < NUM_INPUTS
        is_output = (n_slots >= NUM_INPUTS) & (n_slots < self.first_hidden)
        hits = g.capacity_hits

        # 1. every weight gene: polynomial mutation with probability 0.1
        weight = operators.polynomial_mutation(
            keys[0], g.weight, r.weight_mutation_rate, r.eta_m, backend=self.backend
        )
        g = g.replace(weight=jnp.where(g.edge_alive, weight, g.weight))

        # 2. every node's activation: resampled with probability 0.1
        resample = jax.random.uniform(keys[1], (self.max_nodes,)) < r.activation_mutation_rate
        new_act = jax.random.randint(keys[2], (self.max_nodes,), 0, len(ACTIVATIONS))
        g = g.replace(act=jnp.where(resample & g.node_alive & ~is_input, new_act, g.act))

        # 3. add a connection: source not an output, target neither an input nor an ancestor
        do = jax.random.uniform(keys[3]) < r.add_connection_rate
        source, _ = _pick(keys[4], g.node_alive & ~is_output)
        target, has_target = _pick(keys[5], g.node_alive & ~is_input & ~ancestors(g, source))
        slot, has_slot = _first_free(g.edge_alive)
        add = do & has_target & has_slot
        hits = hits + (do & has_target & ~has_slot)
        g = g.replace(
            src=g.src.at[slot].set(jnp.where(add, source, g.src[slot])),
            dst=g.dst.at[slot].set(jnp.where(add, target, g.dst[slot])),
            weight=g.weight.at[slot].set(
                jnp.where(add, jax.random.uniform(keys[6]), g.weight[slot])
            ),
            edge_alive=g.edge_alive.at[slot].set(g.edge_alive[slot] | add),
        )

        # 4. delete a random connection
        do = jax.random.uniform(keys[7]) < r.delete_connection_rate
        edge, has_edge = _pick(keys[8], g.edge_alive)
        g = g.replace(edge_alive=g.edge_alive.at[edge].set(g.edge_alive[edge] & ~(do & has_edge)))

        # 5. add a neuron on a random connection: src->new and new->dst keep the old weight
        do = jax.random.uniform(keys[9]) < r.add_neuron_rate
        edge, has_edge = _pick(keys[10], g.edge_alive)
        node, has_node = _first_free(g.node_alive, self.first_hidden)
        slot, has_slot = _first_free(g.edge_alive)
        add = do & has_edge & has_node & has_slot
        hits = hits + (do & has_edge & ~(has_node & has_slot))
        old_dst = g.dst[edge]
        dst = g.dst.at[edge].set(jnp.where(add, node, old_dst))
        g = g.replace(
            act=g.act.at[node].set(
                jnp.where(add, jax.random.randint(keys[11], (), 0, len(ACTIVATIONS)), g.act[node])
            ),
            node_alive=g.node_alive.at[node].set(g.node_alive[node] | add),
            src=g.src.at[slot].set(jnp.where(add, node, g.src[slot])),
            dst=dst.at[slot].set(jnp.where(add, old_dst, dst[slot])),
            weight=g.weight.at[slot].set(jnp.where(add, g.weight[edge], g.weight[slot])),
            edge_alive=g.edge_alive.at[slot].set(g.edge_alive[slot] | add),
        )

        # 6. delete a random hidden neuron and its connections
        do = jax.random.uniform(keys[12]) < r.delete_neuron_rate
        node, has_node = _pick(keys[13], g.node_alive & (n_slots >= self.first_hidden))
        kill = do & has_node
        touching = (g.src == node) | (g.dst == node)
        g = g.replace(
            node_alive=g.node_alive.at[node].set(g.node_alive[node] & ~kill),
            edge_alive=g.edge_alive & ~(kill & touching),
        )
        return g.replace(capacity_hits=hits.astype(jnp.int32))

    def vary(
        self,
        key: jax.Array,
        parents_a: CppnGenome,
        parents_b: CppnGenome,
        generation: jax.Array,
        rates: CppnRates | None = None,
    ) -> CppnGenome:
        """No crossover (`DnnFF::cross` copies): each pair is copied in random order, mutated."""
        del generation
        k_order, k_mut = jax.random.split(key)
        n = parents_a.act.shape[0]
        flip = jax.random.bernoulli(k_order, 0.5, (n,))

        def order(a, b):
            f = flip.reshape((n,) + (1,) * (a.ndim - 1))
            first, second = jnp.where(f, b, a), jnp.where(f, a, b)
            return jnp.stack([first, second], axis=1).reshape((2 * n,) + a.shape[1:])

        children = jax.tree.map(order, parents_a, parents_b)
        rates = self.default_rates() if rates is None else rates
        mutate = jax.vmap(self.mutate, in_axes=(0, 0, None))
        return mutate(jax.random.split(k_mut, 2 * n), children, rates)

    # ----------------------------------------------------------------------------- rendering
    def coordinates(self, size: int) -> jax.Array:
        """float32 [4, size*size] CPPN inputs per pixel (row-major), native range at any size."""
        native = self.image_shape[0]
        idx = jnp.arange(size, dtype=jnp.float32)
        unit = -1.0 + 2.0 * idx / (size - 1)  # [-1, 1]
        raw = idx * ((native - 1) / (size - 1))  # 0..native-1 at any resolution
        col, row = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="xy")
        xn, yn = unit[col].ravel(), unit[row].ravel()
        if self.coords == "raw":
            x, y = raw[col].ravel(), raw[row].ravel()
        else:
            x, y = xn, yn
        d = jnp.sqrt(xn * xn + yn * yn)
        return jnp.stack([x, y, d, jnp.ones_like(d)])

    def _schedule(self, g: CppnGenome):
        """Edges sorted by source depth (dead ones last), as (src, dst, weight, count)."""
        depth = depths(g)
        e = self.max_edges
        # a stable sort by source depth, as one int32 sort (XLA's CPU argsort is ~10x slower)
        key = jnp.where(g.edge_alive, depth[g.src], self.max_nodes) * e + jnp.arange(e)
        order = jnp.sort(key) % e
        weight = jnp.where(g.edge_alive, 20.0 * g.weight - 10.0, 0.0)[order]
        return g.src[order], g.dst[order], weight, jnp.sum(g.edge_alive, dtype=jnp.int32)

    def _outputs_sequential(self, act: jax.Array, schedule, coords: jax.Array) -> jax.Array:
        """float32 [G, C, P], one genome after another: each edge costs one activation of its
        source (`lax.switch`) and an in-place row update. Fastest on CPUs."""

        unroll = 2  # edges per loop iteration: amortises the loop's fixed cost

        def one(args):
            act, (src, dst, weight, count) = args
            # dead edges (weight 0) pad the table so the last iteration may overrun `count`
            src, dst = (jnp.pad(a, (0, unroll)) for a in (src, dst))
            weight = jnp.pad(weight, (0, unroll))
            acc = jnp.zeros((self.max_nodes, coords.shape[1]), jnp.float32)
            acc = acc.at[:NUM_INPUTS].set(coords)

            def edges(i, acc):
                for j in range(unroll):
                    k = unroll * i + j
                    s = src[k]
                    acc = acc.at[dst[k]].add(weight[k] * activate_one(act[s], acc[s]))
                return acc

            acc = jax.lax.fori_loop(0, (count + unroll - 1) // unroll, edges, acc)
            outs = [activate_one(act[o], acc[o]) for o in range(NUM_INPUTS, self.first_hidden)]
            return jnp.stack(outs)

        return jax.lax.map(one, (act, schedule))

    def _outputs_batched(self, act: jax.Array, schedule, coords: jax.Array) -> jax.Array:
        """float32 [G, C, P]: G genomes (act [G, N], schedules) on pixel inputs [4, P].

        The loop runs to the largest live-edge count of the chunk; shorter genomes run on
        dead edges of weight 0, which add nothing.
        """
        src, dst, weight, count = schedule
        num = act.shape[0]
        rows = jnp.arange(num)
        acc = jnp.zeros((num, self.max_nodes, coords.shape[1]), jnp.float32)
        acc = acc.at[:, :NUM_INPUTS].set(coords)

        def edge(k, acc):
            s = src[:, k]
            value = activate(act[rows, s][:, None], acc[rows, s])
            return acc.at[rows, dst[:, k]].add(weight[:, k, None] * value)

        acc = jax.lax.fori_loop(0, jnp.max(count), edge, acc)
        outs = slice(NUM_INPUTS, self.first_hidden)
        return activate(act[:, outs, None], acc[:, outs])

    def outputs(self, genomes: CppnGenome, size: int | None = None) -> jax.Array:
        """float32 [B, size, size, C]: raw CPPN outputs in [-1, 1] (default size: native)."""
        size = size or self.image_shape[0]
        if self.render_strategy != "auto":
            return self._outputs(self.render_strategy, size, genomes)
        sequential = partial(self._outputs, "sequential", size)
        batched = partial(self._outputs, "batched", size)
        return platforms.select(self.backend, sequential, batched, genomes)

    def _outputs(self, strategy: str, size: int, genomes: CppnGenome) -> jax.Array:
        """`outputs` by one renderer ("sequential" or "batched")."""
        pixels = size * size
        block = min(pixels, self.max_genome_pixels)
        if strategy == "sequential":  # a genome's node rows then stay in a CPU core's cache
            block = min(block, SEQUENTIAL_PIXEL_BLOCK)
        num_blocks = -(-pixels // block)
        coords = self.coordinates(size)
        coords = jnp.pad(coords, ((0, 0), (0, num_blocks * block - pixels)))
        coords = coords.reshape(NUM_INPUTS, num_blocks, block).transpose(1, 0, 2)
        batch = genomes.act.shape[0]
        chunk = max(1, min(batch, self.max_genome_pixels // block))
        num_chunks = -(-batch // chunk)
        padded = jax.tree.map(
            lambda a: jnp.concatenate([a, jnp.repeat(a[:1], num_chunks * chunk - batch, 0)]),
            genomes,
        )
        chunks = jax.tree.map(lambda a: a.reshape((num_chunks, chunk) + a.shape[1:]), padded)

        evaluate = self._outputs_sequential if strategy == "sequential" else self._outputs_batched

        def render_chunk(gs):
            schedules = jax.vmap(self._schedule)(gs)
            per_block = jax.lax.map(
                lambda c: evaluate(gs.act, schedules, c), coords
            )  # [blocks, chunk, C, block]
            return per_block.transpose(1, 2, 0, 3).reshape(chunk, -1, num_blocks * block)

        out = jax.lax.map(render_chunk, chunks).reshape(num_chunks * chunk, self.num_outputs, -1)
        out = out[:batch, :, :pixels].reshape(batch, self.num_outputs, size, size)
        return out.transpose(0, 2, 3, 1)

    def render(self, genomes: CppnGenome, size: int | None = None) -> jax.Array:
        """uint8 [B, size, size, C]: bytes |trunc(o * 255)|; colour bytes are HLS (or HSV)."""
        raw = jnp.abs(jnp.trunc(self.outputs(genomes, size) * 255.0)).astype(jnp.uint8)
        if self.num_outputs == 1:
            return raw
        return color.hls_bytes_to_rgb(raw) if self.color == "hls" else color.hsv_bytes_to_rgb(raw)

    def express(self, genomes: CppnGenome) -> jax.Array:
        return self.render(genomes)
