"""The original code's variation: uniform parents over occupied cells, then the encoding's
own operators (direct: SBX + polynomial mutation; CPPN: the six `DnnFF` mutations).

Its Params are the encoding's rates (`DirectRates`: mutation_rate, eta_m, crossover_rate,
eta_c; `CppnRates`: the six mutations' rates and eta_m), defaulting to the encoding's fields
(the original's values, or the `--mutation_rate` / `--crossover_rate` flags), so
`--emitter_params=original.mutation_rate=0.2` changes a rate without recompiling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from jaxfool.search import archive as archive_lib


@dataclass(frozen=True)
class Original:
    encoding: Any

    def default_params(self) -> Any:
        return self.encoding.default_rates()

    def emit(self, key, archive, params, generation, n, context=None):
        """n children of n/2 parent pairs drawn uniformly over occupied cells (pairs are
        consecutive draws), varied by `encoding.vary`."""
        del context
        k_select, k_vary = jax.random.split(key)
        parents = archive_lib.gather(archive, archive_lib.select(archive, k_select, n))
        parents_a = jax.tree.map(lambda g: g[0::2], parents)
        parents_b = jax.tree.map(lambda g: g[1::2], parents)
        return self.encoding.vary(k_vary, parents_a, parents_b, generation, params)
