"""CPU workarounds chosen by the platform a computation is lowered for, not the one at hand.

Some hot spots have a CPU form (XLA:CPU runs the plain op slowly) and an accelerator form (the
plain XLA op). `select` picks one by a `backend` setting:

- "auto": both are staged out with `jax.lax.platform_dependent` and the lowering keeps the one
  for its platform: the CPU form for "cpu", the accelerator form for CUDA, ROCm and TPU. So
  `jax.export(..., platforms=("cuda",))` on a CPU-only machine holds the accelerator form, and
  nothing reads `jax.default_backend()` at trace time.
- "cpu" / "accelerator": that form, wherever it runs (the tests run the accelerator form on
  the CPU and compare it with the CPU form).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

BACKENDS = ("auto", "cpu", "accelerator")


def check_backend(backend: str) -> str:
    """`backend`, or ValueError if it is not one of BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def select(backend: str, cpu: Callable[..., Any], accelerator: Callable[..., Any], *args: Any):
    """`cpu(*args)` or `accelerator(*args)`, by `backend` (see the module docstring)."""
    if check_backend(backend) == "cpu":
        return cpu(*args)
    if backend == "accelerator":
        return accelerator(*args)
    return jax.lax.platform_dependent(*args, cpu=cpu, default=accelerator)
