"""Multi-host runs: joining the other processes of a run (`jax.distributed`), before anything
touches the devices. Only process 0 writes files (`runs.loop.Run.writer`)."""

from __future__ import annotations

from jaxfool.base.errors import ConfigError


def join(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    distributed: bool = False,
) -> None:
    """Joins the cluster given by process 0's host:port, the number of processes and this
    one's index (all three, or none), or found by `jax.distributed.initialize()` itself
    (`distributed`: TPU pods, SLURM); with none of them, a single-process run."""
    import jax

    multi = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in multi) and any(v is None for v in multi):
        message = "--coordinator_address, --num_processes and --process_id go together"
        raise ConfigError("coordinator_address", message)
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError("process_id", "must be in [0, --num_processes)")
    if coordinator_address is not None:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif distributed:
        jax.distributed.initialize()
