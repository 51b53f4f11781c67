"""The gradient emitter at full resolution: `Gradient` with the encoding's exact surrogate.

`gradient` takes a CPPN's gradient on at most 64 x 64 pixels through an autodiff scan over every
edge slot, then resizes (its memory bound). `gradient_full` asks the encoding for its surrogate at
native size (`max_size=None`): for a CPPN the exact, pixel-chunked weight gradient of
`cppn_grad` (the real renderer forward, a hand-written reverse pass over the live edges only),
which is both exact at the scored resolution and cheaper (measured in docs/emitters.md). Direct
genomes' surrogate has no size, so there both emitters are the same. Params, step sizes and the
encoding's tuned defaults are `gradient`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any  # noqa: F401 (the inherited __init__'s annotations resolve here: pdoc)

from jaxfool.search.emitters.gradient import Gradient


@dataclass(frozen=True)
class GradientFull(Gradient):
    grad_size: int | None = None  # None: the surrogate at native size, exact
