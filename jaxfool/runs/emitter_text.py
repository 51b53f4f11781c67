"""The text forms of emitters on the command line, parsed in one place.

`--emitter='original:0.5,gradient:0.5'` shares each generation's population between emitters
by fractions; `--emitter_params='gradient.step_min=0.002,isoline.iso_sigma=0.02'` sets fields
of their runtime Params. The search core only ever sees emitter objects and Params pytrees.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp

from jaxfool.search.emitters import EMITTERS, build
from jaxfool.search.encodings import ENCODINGS


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


def build_emitters(text: str, encoding: Any, population: int) -> tuple[tuple[Any, int], ...]:
    """The (emitter, children) pairs of `EvolutionConfig.emitters` for an `--emitter` text;
    () for "original" (the core's default: the original emitter for the whole population)."""
    if text == "original":
        return ()
    return tuple((build(name, encoding), n) for name, n in parse_spec(text, population))


# the values a Params field may take, by the kind its class's `limits` names (unnamed: any
# finite number); each a test and the phrase that completes "must be ..."
LIMITS = {
    "positive": (lambda v: v > 0, "> 0"),
    "nonnegative": (lambda v: v >= 0, ">= 0"),
    "probability": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "count": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "switch": (lambda v: v in (0, 1), "0 or 1"),
}


def param_limits(name: str, encoding: Any = None) -> dict[str, str | None]:
    """{field: its `LIMITS` kind or None} of emitter `name`'s runtime Params over `encoding`
    (None: over every registered encoding with its default settings, for checks made before
    one exists), in field order."""
    encodings = [encoding] if encoding is not None else [cls() for cls in ENCODINGS.values()]
    out: dict[str, str | None] = {}
    for enc in encodings:
        params = build(name, enc).default_params()
        for field in dataclasses.fields(params):
            out.setdefault(field.name, getattr(params, "limits", {}).get(field.name))
    return out


def param_names(name: str, encoding: Any = None) -> tuple[str, ...]:
    """The fields of emitter `name`'s runtime Params over `encoding` (None: every encoding)."""
    return tuple(param_limits(name, encoding))


def parse_params(text: str, spec: str, encoding: Any = None) -> dict[str, dict[str, float]]:
    """'gradient.step_size=0.1,isoline.iso_sigma=0.02' -> {emitter: {field: value}}, each
    emitter one of `spec`'s and each field one of its Params' over `encoding` (None: over
    every encoding). ValueError naming the part."""
    names = {name.partition(":")[0].strip() for name in spec.split(",")}
    out: dict[str, dict[str, float]] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        target, _, value = part.partition("=")
        name, _, field = target.partition(".")
        if name not in names:
            raise ValueError(f"emitter_params {part!r}: {name!r} is not in --emitter={spec}")
        fields = param_limits(name, encoding)
        if field not in fields:
            known = ", ".join(fields) or "none"
            raise ValueError(f"emitter_params {part!r}: {name} has no {field!r} ({known})")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"emitter_params {part!r}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"emitter_params {part!r}: {value!r} is not a finite number")
        if fields[field] is not None:
            test, phrase = LIMITS[fields[field]]
            if not test(number):
                raise ValueError(f"emitter_params {part!r}: {name}.{field} must be {phrase}")
        out.setdefault(name, {})[field] = number
    return out


def runtime_params(spec: str, text: str, evolution: Any) -> tuple:
    """The runtime Params of `evolution`'s emitters (built from `spec`): their defaults with
    the `--emitter_params` text `text` applied."""
    given = parse_params(text, spec, evolution.encoding)
    names = [name for name, _ in parse_spec(spec, evolution.population)]
    return tuple(
        p.replace(**{k: jnp.float32(v) for k, v in given.get(name, {}).items()})
        for name, p in zip(names, evolution.default_emitter_params(), strict=True)
    )
