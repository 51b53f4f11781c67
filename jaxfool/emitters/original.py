"""The original code's variation: uniform parents over occupied cells, then the encoding's
own operators (direct: SBX + polynomial mutation; CPPN: the six DnnFF mutations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
from flax import struct

from jaxfool import archive as archive_lib
from jaxfool.emitters import register


@struct.dataclass
class OriginalParams:
    """None: the rates are the encoding's settings (`DirectEncoding.mutation_rate`, ...)."""


@register("original")
@dataclass(frozen=True)
class Original:
    encoding: Any

    def default_params(self) -> OriginalParams:
        return OriginalParams()

    def emit(self, key, archive, params, generation, n, context=None):
        """n children of n/2 parent pairs drawn uniformly over occupied cells (pairs are
        consecutive draws), varied by `encoding.vary`: today's generation, bit for bit."""
        del params, context
        k_select, k_vary = jax.random.split(key)
        parents = archive_lib.gather(archive, archive_lib.select(archive, k_select, n))
        parents_a = jax.tree.map(lambda g: g[0::2], parents)
        parents_b = jax.tree.map(lambda g: g[1::2], parents)
        return self.encoding.vary(k_vary, parents_a, parents_b, generation)
