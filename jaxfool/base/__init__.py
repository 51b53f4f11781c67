"""The light base: errors, signals, command-line helpers, atomic files, PNG/npz, memory, the
compilation cache, platform kernels and random bits. Scripts import `cli` (and install its
`Stop`) before JAX, so this file imports nothing; modules are imported by name
(`from jaxfool.base import fileio`)."""

__all__ = [
    "cli", "compile_cache", "errors", "fileio", "images", "memory", "npz", "platforms", "rng",
    "signals",
]  # fmt: skip
