"""Genome encodings: how an array genome becomes an image, and what an emitter may move.

An encoding is a frozen (hashable) dataclass of static settings whose methods are pure, so it is a
static argument of `jax.jit`. Emitters use only this protocol and never ask which encoding they
hold:

- `init(key, n)`: n random genomes (a pytree with leading axis n);
- `express(genomes)`: uint8 images [n, H, W, C], the images that are scored;
- `vary(key, parents_a, parents_b, generation, rates)`: the original code's variation of n parent
  pairs, children [2n] ordered (child 1 of pair 0, child 2 of pair 0, ...); `default_rates()`
  is its runtime numbers (a pytree, so a new value does not recompile);
- `genes_of(genomes)`: the real genes in [0, 1] an emitter may move, float32 [n, ...];
  `with_genes(genomes, genes)` puts moved genes back; `gene_mask(genomes)` is 1 where a gene is
  live (0: a padding slot that moving would not change);
- `partner_genes(a, b)`: b's genes aligned with a's, for operators that combine two parents;
- `mutate_structure(key, genomes)`: the encoding's own per-genome mutation that a gene step
  cannot do (a CPPN grows nodes and edges; direct genomes: none);
- `surrogate(genomes, genes, max_size)`: a differentiable stand-in for `express` whose forward
  values are the exact bytes (straight-through), for gradient emitters; `max_size` bounds its
  resolution (None: native size, exactly);
- `tuned(emitter)`: this encoding's measured defaults for an emitter's Params ({} for none);
- `from_settings(image_shape, settings)`: the encoding a run's settings describe.

Adding a genome type is one file and one line in `ENCODINGS` (or `register` from your own code).
`to_spec` / `from_spec` describe an encoding as JSON (the genome files and run records).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import jax

from jaxfool.search.encodings.cppn import CppnEncoding
from jaxfool.search.encodings.dense_cppn import DenseCppnEncoding
from jaxfool.search.encodings.direct import DirectEncoding


class Encoding(Protocol):
    image_shape: tuple[int, int, int]

    def init(self, key: jax.Array, n: int) -> Any: ...

    def express(self, genomes: Any) -> jax.Array: ...

    def vary(
        self, key: jax.Array, parents_a: Any, parents_b: Any, generation: jax.Array, rates=None
    ) -> Any: ...

    def default_rates(self) -> Any: ...

    def genes_of(self, genomes: Any) -> jax.Array: ...

    def with_genes(self, genomes: Any, genes: jax.Array) -> Any: ...

    def gene_mask(self, genomes: Any) -> jax.Array: ...

    def partner_genes(self, a: Any, b: Any) -> jax.Array: ...

    def mutate_structure(self, key: jax.Array, genomes: Any) -> Any: ...

    def surrogate(self, genomes: Any, genes: jax.Array, max_size: int | None) -> jax.Array: ...

    def tuned(self, emitter: str) -> dict[str, float]: ...


# name (the runs' --encoding) -> class; adding a genome type: its file, and its line here
ENCODINGS: dict[str, type] = {
    "direct": DirectEncoding,
    "cppn": CppnEncoding,
    "dense_cppn": DenseCppnEncoding,
}


def register(name: str, cls: type | None = None):
    """Registers an encoding class under `name` from your own code (usable as a decorator)."""

    def add(c: type) -> type:
        ENCODINGS[name] = c
        return c

    return add if cls is None else add(cls)


def build(name: str, image_shape: tuple[int, int, int], settings: Mapping[str, Any]) -> Any:
    """The encoding registered as `name` for images of `image_shape`, from a run's settings
    (each encoding reads the ones it has); ValueError for an unknown name or bad settings."""
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; choose one of {', '.join(ENCODINGS)}")
    return ENCODINGS[name].from_settings(tuple(image_shape), settings)


def to_spec(encoding: Any) -> dict[str, Any]:
    """A JSON-able description of an encoding: its class name and settings."""
    return {"name": type(encoding).__name__, **dataclasses.asdict(encoding)}


def from_spec(spec: Mapping[str, Any]) -> Any:
    """Rebuilds the encoding that `to_spec` described; ValueError if it is not one."""
    classes = {c.__name__: c for c in ENCODINGS.values()}
    if not isinstance(spec, Mapping) or spec.get("name") not in classes:
        raise ValueError(f"unknown encoding {spec!r:.60}")
    settings = {k: v for k, v in spec.items() if k != "name"}
    settings["image_shape"] = tuple(settings["image_shape"])
    return classes[spec["name"]](**settings)
