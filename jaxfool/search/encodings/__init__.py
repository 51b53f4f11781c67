"""Genome encodings. Each one is a frozen (hashable) dataclass of static settings with three
pure methods, so it can be passed to `jax.jit` as a static argument:

- `init(key, n)`: n random genomes (a pytree with leading axis n);
- `vary(key, parents_a, parents_b, generation)`: children of n parent pairs, leading axis 2n,
  ordered (child 1 of pair 0, child 2 of pair 0, child 1 of pair 1, ...) as the original;
- `express(genomes)`: uint8 images [n, H, W, C].
"""

from __future__ import annotations

from typing import Any, Protocol

import jax


class Encoding(Protocol):
    image_shape: tuple[int, int, int]

    def init(self, key: jax.Array, n: int) -> Any: ...

    def vary(
        self, key: jax.Array, parents_a: Any, parents_b: Any, generation: jax.Array
    ) -> Any: ...

    def express(self, genomes: Any) -> jax.Array: ...
