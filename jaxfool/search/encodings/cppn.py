"""CPPN encoding: variable-topology networks in fixed-capacity arrays, as the original code's
Sferes `DnnFF` genome, mutated and rendered inside jit.

The genome (`cppn_genome.CppnGenome`) is a padded node and edge table; variation is the
original's: no crossover, each child copied from a parent and mutated by `DnnFF::mutate`
(weights, activations, add/delete a connection, add/delete a neuron). Rendering is in
`cppn_render`. What an emitter moves is the connection weights; `mutate_structure` is the
original's mutation, which grows the network (a weight step alone cannot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxfool.base import platforms
from jaxfool.search import operators
from jaxfool.search.encodings import cppn_grad, cppn_render
from jaxfool.search.encodings.cppn_genome import (
    ACTIVATIONS,
    IDENTITY,
    NUM_INPUTS,
    CppnGenome,
    ancestors,
    first_free,
    pick,
)

COORDS = ("raw", "normalized")
COLORS = ("hls", "hsv")
# Emitter defaults measured on MNIST (shipped LeNet, seed 0):
# - gradient steps (the RMS of the weight-gene change) drawn log-uniformly in [lo, hi]: with the
#   original's raw pixel-index inputs log p is so rugged in the weights that steps above ~1e-3
#   overshoot (measured against finite differences): 1e-6..1e-3 brings 8 of 10 digits to 0.9999
#   by generation 50 (1e-4..1e-2: 5, 1e-5..1e-1: 6, 1e-7..1e-4: 7); normalized inputs take
#   1e-4..1e-2 (all ten by generation 10);
# - isoline on weight genes: iso_sigma 0.01, line_sigma 0.1.
TUNED = {
    "isoline": {"iso_sigma": 0.01, "line_sigma": 0.1},
    "gradient": {
        "raw": {"step_min": 1e-6, "step_max": 1e-3},
        "normalized": {"step_min": 1e-4, "step_max": 1e-2},
    },
}


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

    limits = {
        "weight_mutation_rate": "probability",
        "eta_m": "nonnegative",
        "activation_mutation_rate": "probability",
        "add_connection_rate": "probability",
        "delete_connection_rate": "probability",
        "add_neuron_rate": "probability",
        "delete_neuron_rate": "probability",
    }


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

    @classmethod
    def from_settings(cls, image_shape: tuple[int, int, int], settings) -> CppnEncoding:
        """The encoding of a run's settings: capacities, coordinates and colour space."""
        names = {"max_nodes": "max_nodes", "max_edges": "max_edges",
                 "coords": "cppn_coords", "color": "cppn_color"}  # fmt: skip
        options = {k: settings[v] for k, v in names.items() if v in settings}
        return cls(image_shape=tuple(image_shape), **options)

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
        source, _ = pick(keys[4], g.node_alive & ~is_output)
        target, has_target = pick(keys[5], g.node_alive & ~is_input & ~ancestors(g, source))
        slot, has_slot = first_free(g.edge_alive)
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
        edge, has_edge = pick(keys[8], g.edge_alive)
        g = g.replace(edge_alive=g.edge_alive.at[edge].set(g.edge_alive[edge] & ~(do & has_edge)))

        # 5. add a neuron on a random connection: src->new and new->dst keep the old weight
        do = jax.random.uniform(keys[9]) < r.add_neuron_rate
        edge, has_edge = pick(keys[10], g.edge_alive)
        node, has_node = first_free(g.node_alive, self.first_hidden)
        slot, has_slot = first_free(g.edge_alive)
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
        node, has_node = pick(keys[13], g.node_alive & (n_slots >= self.first_hidden))
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
        return cppn_render.coordinates(self, size)

    def outputs(self, genomes: CppnGenome, size: int | None = None) -> jax.Array:
        """float32 [B, size, size, C]: raw CPPN outputs in [-1, 1] (default size: native)."""
        return cppn_render.outputs(self, genomes, size)

    def render(self, genomes: CppnGenome, size: int | None = None) -> jax.Array:
        """uint8 [B, size, size, C]: bytes |trunc(o * 255)|; colour bytes are HLS (or HSV)."""
        return cppn_render.render(self, genomes, size)

    def express(self, genomes: CppnGenome) -> jax.Array:
        return self.render(genomes)

    # --- what emitters move: the connection weight genes -------------------------------------
    def genes_of(self, genomes: CppnGenome) -> jax.Array:
        return genomes.weight

    def with_genes(self, genomes: CppnGenome, genes: jax.Array) -> CppnGenome:
        return genomes.replace(weight=jnp.where(genomes.edge_alive, genes, genomes.weight))

    def gene_mask(self, genomes: CppnGenome) -> jax.Array:
        return genomes.edge_alive.astype(jnp.float32)

    def partner_genes(self, a: CppnGenome, b: CppnGenome) -> jax.Array:
        """b's weight where b has the same connection (src, dst) in the same slot, else a's."""
        same = a.edge_alive & b.edge_alive & (a.src == b.src) & (a.dst == b.dst)
        return jnp.where(same, b.weight, a.weight)

    def mutate_structure(self, key: jax.Array, genomes: CppnGenome) -> CppnGenome:
        """`DnnFF::mutate` on each genome (one key per genome, split from `key`)."""
        n = genomes.act.shape[0]
        return jax.vmap(self.mutate)(jax.random.split(key, n), genomes)

    def surrogate(self, genomes: CppnGenome, genes: jax.Array, max_size: int | None) -> jax.Array:
        """Images with the exact bytes forward, differentiable in the weight genes, rendered at
        most `max_size` pixels a side (and resized), so ImageNet gradients fit in memory;
        None: at native size, the exact gradient in bounded memory (`cppn_grad`)."""
        if max_size is None:
            return cppn_grad.surrogate(self, genomes, genes)
        size = min(max_size, self.image_shape[0])
        return cppn_render.surrogate(self, genomes.replace(weight=genes), size)

    def tuned(self, emitter: str) -> dict[str, float]:
        if emitter == "gradient":
            return dict(TUNED["gradient"][self.coords])
        return dict(TUNED.get(emitter, {}))
