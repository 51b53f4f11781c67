"""How the benchmark measures: best-of timings taken in turn, CPU time, the machine's FLOP/s
(throughput probes), a classifier's FLOPs per image, XLA's memory analysis, and the limits that
follow from them.

Timings are the best of `repeats` runs; functions timed together are timed in turn within each
repeat (`interleaved`), so that on a shared machine a change of load hits all of them alike and
their ratios stay meaningful.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

# The original code's published cost, as evaluations per second: the paper reports its ImageNet
# runs (5000 generations of 400 images) at about 4 days on 128 CPU cores, and its MNIST runs
# (200 generations of 200) at about 5 minutes on 4 cores.
ORIGINAL_IMAGENET = {"evaluations_per_s": 5000 * 400 / (4 * 86400), "hardware": "128 CPU cores"}
ORIGINAL_MNIST = {"evaluations_per_s": 200 * 200 / 300, "hardware": "4 CPU cores"}


def best_time(fn, repeats: int) -> float:
    """Smallest wall time of `repeats` calls of fn() (which blocks until done)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(fns: dict, repeats: int, cpu: dict | None = None) -> dict[str, float]:
    """Best wall time of each blocking fn, timed in turn within each repeat: on a shared
    machine, load changes hit all of them alike, so their ratios stay meaningful. With a
    `cpu` dict, also fills in each fn's least CPU time (all threads of this process), which
    other processes' load barely changes."""
    times = {name: [] for name in fns}
    cpu_times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, t = process_cpu_s(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu_times[name].append(process_cpu_s() - c)
    if cpu is not None:
        cpu.update({name: min(ts) for name, ts in cpu_times.items()})
    return {name: min(ts) for name, ts in times.items()}


def blocking(fn, *args):
    """A no-argument callable that runs fn(*args) to completion."""
    return lambda: jax.block_until_ready(fn(*args))


def environment() -> dict:
    """Where the numbers come from: device, host and versions."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2),  # > cpu_count: shared, slower figures
    }


def throughput_probes(dtype: str = "float32") -> dict[str, tuple]:
    """{name: (blocking fn, FLOPs per call)}: a large matmul and a large 3 x 3 convolution
    (the kinds of work a classifier is made of) in `dtype`, at the default precision;
    compiled and run once."""
    cpu = jax.default_backend() == "cpu"
    n = 2048 if cpu else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    batch, hw, ch = (16, 56, 128) if cpu else (128, 56, 256)
    x = jax.random.normal(jax.random.key(1), (batch, hw, hw, ch), dtype)
    w = jax.random.normal(jax.random.key(2), (3, 3, ch, ch), dtype)
    matmul = jax.jit(lambda a: a @ a)
    conv = jax.jit(
        lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    probes = {
        "matmul": (blocking(matmul, a), 2 * n**3),
        "conv": (blocking(conv, x, w), 2 * batch * hw * hw * ch * ch * 9),
    }
    for fn, _ in probes.values():
        fn()
    return probes


def throughput_from(probes: dict, times: dict) -> dict:
    """FLOP/s of each probe from its best time; the device's best is the limit's divisor."""
    mm = probes["matmul"][1] / times["matmul"]
    cv = probes["conv"][1] / times["conv"]
    return {"matmul_flops_per_s": mm, "conv_flops_per_s": cv, "device_flops_per_s": max(mm, cv)}


def device_throughput(repeats: int = 3) -> dict:
    """Measured FLOP/s of the throughput probes, best of `repeats`."""
    probes = throughput_probes()
    times = interleaved({k: fn for k, (fn, _) in probes.items()}, repeats)
    return throughput_from(probes, times)


def cpu_flops(fn, *args) -> float:
    """FLOPs of fn(*args), from XLA's cost analysis of its lowered graph on the CPU backend
    (its compiled graph's where that gives none), whatever device the arguments are on: only
    their shapes and dtypes are used. Not the default backend's: on a GPU (issue 32, H200, jax
    0.11.2) the compiled graph's count leaves out the convolutions handed to cuDNN (LeNet 0.83
    of 4.6 MFLOPs, EfficientNet-Lite0 97 of 936, CaffeNet 10-crop 1.2 of 13.5 GFLOPs), and
    JAX's plugin backends give no count for a lowered graph. The lowered and compiled counts
    agree to 0.2% on the CPU (EfficientNet-Lite0 0.936 and 0.938 GFLOPs, LeNet exactly)."""
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])

    def spec(a):
        if hasattr(a, "shape") and hasattr(a, "dtype"):  # arrays, ShapeDtypeStructs
            return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu)
        return jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a), sharding=cpu)

    lowered = jax.jit(fn).lower(*jax.tree.map(spec, args))
    cost = lowered.cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per computation
        cost = cost[0]
    if not cost or not cost.get("flops"):
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def flops_per_image(logits_fn, params, image_shape, batch: int = 4) -> float:
    """The classifier's FLOPs per image (`cpu_flops` of its forward pass)."""
    x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.uint8)
    return cpu_flops(logits_fn, params, x) / batch


def process_cpu_s() -> float:
    """CPU seconds this process has used so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sig(x: float | None, digits: int = 4):
    """x rounded to `digits` significant digits (JSON lines stay readable)."""
    if x is None or not np.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits}g}")


def run_device_mib(compiled) -> dict | None:
    """XLA's memory analysis of a compiled function, in MiB: its arguments, outputs, temporaries
    and their total (arguments + outputs - aliased + temporaries); None where unavailable."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    mib = {
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "temp": stats.temp_size_in_bytes,
    }
    mib["total"] = sum(mib.values()) - stats.alias_size_in_bytes
    return {k: round(v / 2**20, 1) for k, v in mib.items()}


def limit_fields(flops: float, throughput: dict, population: int, gen_s: float, clf_s) -> dict:
    """The fastest a generation could be on this device (its FLOPs at the probes' best FLOP/s)
    and how close the measured generation (and the classifier alone) come to it."""
    limit_s = flops * population / throughput["device_flops_per_s"]
    return {
        "flops_per_image": sig(flops),
        "matmul_flops_per_s": sig(throughput["matmul_flops_per_s"]),
        "conv_flops_per_s": sig(throughput["conv_flops_per_s"]),
        "device_flops_per_s": sig(throughput["device_flops_per_s"]),
        "limit_generation_s": sig(limit_s),
        "limit_generations_per_s": sig(1 / limit_s),
        "fraction_of_limit": sig(limit_s / gen_s),
        "classifier_fraction_of_limit": None if clf_s is None else sig(limit_s / clf_s),
    }
