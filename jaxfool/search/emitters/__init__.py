"""Emitters: how a generation's children are made from the archive (parent selection included).

An emitter is a frozen dataclass of static settings (hashable: a static argument of `jit`)
with two methods:

- `default_params()`: its tunable numbers as a `flax.struct` pytree (evosax style): passed to
  `evolve.run` at run time, so a new value does not recompile and runs vmap over them;
- `emit(key, archive, params, generation, n, context) -> children`: n child genomes.

`context` (`EmitContext`) gives what some emitters need beyond the archive: the encoding, the
classifier with its params and the archive's classes (the gradient emitter differentiates
log p(class) through `express`). Several emitters share a generation by fractions of the
population (`parse_spec("original:0.5,gradient:0.5")`). Adding one = one file + one line in
`EMITTERS` (or `register` from your own code).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import jax


class Emitter(Protocol):
    def default_params(self) -> Any: ...

    def emit(
        self, key: jax.Array, archive: Any, params: Any, generation: jax.Array, n: int, context
    ) -> Any: ...


@dataclass(frozen=True)
class EmitContext:
    """What an emitter may use besides the archive (static parts; `clf_params` is traced)."""

    encoding: Any
    classifier: Any
    classes: tuple[int, ...]
    clf_params: Any = None


EMITTERS: dict[str, type] = {}


def register(name: str, cls: type | None = None):
    """Registers an emitter class under `name` (usable as a decorator)."""

    def add(c: type) -> type:
        EMITTERS[name] = c
        return c

    return add if cls is None else add(cls)


def param_names(name: str, encoding: Any = None) -> tuple[str, ...]:
    """The fields of emitter `name`'s runtime Params over `encoding` (None: over either
    built-in encoding, for checks made before the encoding exists)."""
    from jaxfool.search.encodings.cppn import CppnEncoding
    from jaxfool.search.encodings.direct import DirectEncoding

    encodings = [encoding] if encoding is not None else [DirectEncoding(), CppnEncoding()]
    names: list[str] = []
    for enc in encodings:
        for field in dataclasses.fields(EMITTERS[name](enc).default_params()):
            if field.name not in names:
                names.append(field.name)
    return tuple(names)


def parse_spec(text: str, population: int) -> tuple[tuple[str, int], ...]:
    """'original:0.5,gradient:0.5' -> (('original', 100), ('gradient', 100)) for population
    200: children per emitter, each even and > 0, summing to the population (the remainder of
    rounding goes to the first). A bare name takes the whole population. ValueError if bad."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("no emitter given")
    names, fractions = [], []
    for part in parts:
        name, _, frac = part.partition(":")
        if name not in EMITTERS:
            raise ValueError(f"unknown emitter {name!r}; choose from {', '.join(EMITTERS)}")
        if name in names:
            raise ValueError(f"emitter {name!r} appears twice")
        try:
            f = float(frac) if frac else 1.0
        except ValueError:
            raise ValueError(f"{part!r}: the fraction is not a number") from None
        if not 0 < f <= 1:
            raise ValueError(f"{part!r}: the fraction must be in (0, 1]")
        names.append(name)
        fractions.append(f)
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions sum to {sum(fractions):g}, not 1")
    counts = [2 * max(1, round(f * population / 2)) for f in fractions]
    counts[0] += population - sum(counts)
    if counts[0] < 2:
        raise ValueError(f"population {population} is too small to split as {text!r}")
    return tuple(zip(names, counts, strict=True))


def build(name: str, encoding: Any) -> Any:
    """The emitter registered as `name` for genomes of `encoding`."""
    return EMITTERS[name](encoding)


from jaxfool.search.emitters import gradient, isoline, original  # noqa: E402,F401  (registrations)
