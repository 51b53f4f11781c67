"""Emitters: how a generation's children are made from the archive (parent selection included).

An emitter is a frozen dataclass of static settings (hashable: part of the static config of
`jit`) holding the genome encoding it varies, with two methods:

- `default_params()`: its tunable numbers as a `flax.struct` pytree (evosax style): passed to
  `map_elites.run` at run time, so a new value does not recompile and runs vmap over them;
- `emit(key, archive, params, generation, n, context) -> children`: n child genomes.

Emitters move genomes only through the encoding's protocol (`jaxfool.search.encodings`): they
never ask which encoding they hold. `context` (`EmitContext`) gives what some emitters need
beyond the archive: the classifier with its params and the archive's classes (the gradient
emitter differentiates log p(class) through the encoding's surrogate of `express`).

A generation's population can be shared by several emitters (`EvolutionConfig.emitters`, pairs
of emitter and children); the text form 'original:0.5,gradient:0.5' is parsed by the runs
layer. Adding an emitter: one file, and its line in `EMITTERS` (or `register` from your code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jax

from jaxfool.search.emitters.gradient import Gradient
from jaxfool.search.emitters.gradient_full import GradientFull
from jaxfool.search.emitters.gradient_walk import GradientWalk
from jaxfool.search.emitters.gradient_walk_relay import GradientWalkRelay
from jaxfool.search.emitters.gradient_walk_stones import GradientWalkStones
from jaxfool.search.emitters.isoline import Isoline
from jaxfool.search.emitters.original import Original


class Emitter(Protocol):
    encoding: Any

    def default_params(self) -> Any: ...

    def emit(
        self, key: jax.Array, archive: Any, params: Any, generation: jax.Array, n: int, context
    ) -> Any: ...


@dataclass(frozen=True)
class EmitContext:
    """What an emitter may use besides the archive (static parts; `clf_params` is traced).
    eval_chunk: at most this many images through the classifier at once (None: all), which
    bounds the memory of a gradient emitter's backward pass as it bounds scoring's."""

    encoding: Any
    classifier: Any
    classes: tuple[int, ...]
    clf_params: Any = None
    eval_chunk: int | None = None


# name -> class (the class is built with the encoding: `EMITTERS[name](encoding)`)
EMITTERS: dict[str, type] = {
    "original": Original,
    "isoline": Isoline,
    "gradient": Gradient,
    "gradient_full": GradientFull,
    "gradient_walk": GradientWalk,
    "gradient_walk_stones": GradientWalkStones,
    "gradient_walk_relay": GradientWalkRelay,
}


def register(name: str, cls: type | None = None):
    """Registers an emitter class under `name` from your own code (usable as a decorator)."""

    def add(c: type) -> type:
        EMITTERS[name] = c
        return c

    return add if cls is None else add(cls)


def build(name: str, encoding: Any) -> Any:
    """The emitter registered as `name` for genomes of `encoding`."""
    if name not in EMITTERS:
        raise ValueError(f"unknown emitter {name!r}; choose from {', '.join(EMITTERS)}")
    return EMITTERS[name](encoding)
