"""Memory: what a compiled program needs, what the machine has, and what a run has used.

A run whose population or classifier chunk cannot fit is refused before it starts: XLA's memory
analysis of the compiled program (its arguments, outputs and temporaries) against the device's
memory limit where the backend reports one (GPU, TPU), else the host's available memory (the
CPU backend computes in host memory). An out-of-memory error that still happens mid-run (other
processes took memory meanwhile) is caught by the run loop and named the same way.
"""

from __future__ import annotations

import os
import resource
from typing import Any

import jax

from jaxfool.base.errors import OutOfMemory


def peak_memory() -> dict[str, int | None]:
    """Peak host RSS of this process so far and, where the backend reports it (else None),
    peak device memory, in MiB."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {
        "peak_host_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_device_mib": None if peak is None else round(peak / 2**20),
    }


def host_available_bytes() -> int | None:
    """The host memory available to a new allocation (Linux MemAvailable; None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes() -> tuple[int | None, str]:
    """(bytes a program may use, where): the device's free memory where the backend reports
    its limit, else the host's available memory."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0), "device"
    return host_available_bytes(), "host"


def needed_bytes(compiled: Any) -> int | None:
    """What a compiled program needs at once (arguments, outputs, temporaries), from XLA's
    memory analysis; None where the backend gives none."""
    try:
        m = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if m is None:
        return None
    parts = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    return sum(int(getattr(m, p, 0) or 0) for p in parts)


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n < 2**40 else f"{n / 2**40:.3g} TiB"


def check_fits(compiled: Any, what: str, lower: str) -> None:
    """OutOfMemory if `compiled` needs more memory than is available: '<what> needs ~X, the
    <device or host> has Y available; lower <lower>'."""
    need = needed_bytes(compiled)
    have, where = available_bytes()
    if need is not None and have is not None and need > have:
        raise OutOfMemory(
            f"{what} needs ~{gib(need)} at once, the {where} has {gib(have)} available; "
            f"lower {lower}"
        )


def is_out_of_memory(e: BaseException) -> bool:
    """Whether an XLA runtime error is an allocation failure."""
    return isinstance(e, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(e)
