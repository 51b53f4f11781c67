"""The cases other than whole generations: the device's throughput, one network's forward pass
(beside torch where installed), the CPPN renderer, the archive insert and R runs in one call;
and `run_case`, which measures any case into its JSON row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool import classifiers
from jaxfool.base import memory
from jaxfool.runs.config import RunConfig
from jaxfool.runs.setup import build_encoding
from jaxfool.search import archive as archive_lib
from jaxfool.search import map_elites
from jaxfool.search.encodings.cppn import CppnEncoding
from jaxfool.studies.benchmark.cases import Case
from jaxfool.studies.benchmark.generation import case_setup, generation_case_row, insert_loop
from jaxfool.studies.benchmark.startup import startup_case_row
from jaxfool.studies.benchmark.timing import (
    best_time,
    blocking,
    cpu_flops,
    device_throughput,
    environment,
    interleaved,
    sig,
    throughput_from,
    throughput_probes,
)


def torch_network(name: str):
    """The same architecture in torch (the tests' reference implementations), or None where
    torch (a test-only extra) is not installed."""
    try:
        import torch

        from jaxfool.classifiers import torch_reference
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    if name in classifiers.TORCHVISION_NETS:
        return torch_reference.torchvision_model(name)
    return {
        "lenet": torch_reference.lenet,
        "caffenet": lambda: torch_reference.caffenet(lrn_before_pool=False),
        "alexnet_caffe": lambda: torch_reference.caffenet(lrn_before_pool=True),
        "alexnet_torchvision": torch_reference.alexnet_torchvision,
        "efficientnet_lite0": lambda: torch_reference.efficientnet_lite(1.0, 1.0),
    }[name]()


def classifier_case_row(case: Case) -> dict:
    """One network's forward pass alone: Flax images/s, its FLOPs, limit and torch's speed."""
    module, size, channels = classifiers.MODELS[case.model].network
    batch = case.population
    x = jax.random.normal(jax.random.key(0), (batch, size, size, channels)) * 50
    variables = module.init(jax.random.key(1), x[:1])
    forward = jax.jit(module.apply)
    t = time.perf_counter()
    jax.block_until_ready(forward(variables, x))
    first = time.perf_counter() - t
    fns = {"flax": blocking(forward, variables, x)}
    # torch here is the CPU build: compared on the CPU only, device against device
    net = torch_network(case.model) if jax.default_backend() == "cpu" else None
    if net is not None:
        import torch

        xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())

        def torch_forward():
            with torch.no_grad():
                net(xt)

        torch_forward()
        fns["torch"] = torch_forward
    probes = throughput_probes()
    fns.update({k: fn for k, (fn, _) in probes.items()})
    times = interleaved(fns, case.repeats)
    flops = cpu_flops(module.apply, variables, x) / batch
    throughput = throughput_from(probes, times)
    limit = throughput["device_flops_per_s"] / flops
    row = {
        "model": case.model,
        "weights": "random",  # the network's own initialisation: speed only
        "batch": batch,
        "input_shape": [size, size, channels],
        "compile_s": sig(max(first - times["flax"], 0.0)),
        "flops_per_image": sig(flops),
        "flax_images_per_s": sig(batch / times["flax"]),
        "device_flops_per_s": sig(throughput["device_flops_per_s"]),
        "limit_images_per_s": sig(limit),
        "fraction_of_limit": sig(batch / times["flax"] / limit),
        "torch_images_per_s": None,
        "flax_over_torch_speed": None,
    }
    if "torch" in times:
        import torch

        row["torch_version"] = torch.__version__
        row["torch_images_per_s"] = sig(batch / times["torch"])
        row["flax_over_torch_speed"] = round(times["torch"] / times["flax"], 3)
    return row


def grown_cppns(enc: CppnEncoding, n: int, rounds: int = 30):
    """n CPPNs after `rounds` rounds of mutation from the random start (evolved-sized graphs)."""
    vary = jax.jit(lambda k, a, b: enc.vary(k, a, b, jnp.int32(0)))
    pop = enc.init(jax.random.key(0), n + n % 2)
    for r in range(rounds):
        pop = vary(
            jax.random.key(r + 1), *(jax.tree.map(lambda g, s=s: g[s::2], pop) for s in (0, 1))
        )
    return jax.tree.map(lambda g: g[:n], pop)


def render_case_row(case: Case) -> dict:
    """The CPPN renderer alone: genome-pixels/s and edge-pixel updates/s at one size."""
    enc = CppnEncoding(image_shape=(case.size, case.size, case.channels))
    genomes = grown_cppns(enc, case.population)
    render = jax.jit(enc.render)
    t = time.perf_counter()
    jax.block_until_ready(render(genomes))
    first = time.perf_counter() - t
    render_s = best_time(blocking(render, genomes), case.repeats)
    pixels = case.population * case.size**2
    edges = np.asarray(genomes.edge_alive.sum(axis=1))
    return {
        "batch": case.population,
        "image_shape": [case.size, case.size, case.channels],
        "render_strategy": "sequential" if jax.default_backend() == "cpu" else "batched",
        "compile_s": sig(max(first - render_s, 0.0)),
        "render_s": sig(render_s),
        "genome_pixels_per_s": sig(pixels / render_s),
        "mean_live_edges": round(float(edges.mean()), 2),
        "edge_pixel_updates_per_s": sig(float(edges.sum()) * case.size**2 / render_s),
    }


def insert_case_row(case: Case) -> dict:
    """The MAP-Elites insert alone, as it runs inside a generation loop."""
    shape = (case.size, case.size, case.channels)
    enc = build_encoding(RunConfig(encoding=case.encoding), shape)
    key = jax.random.key(0)
    children = enc.init(key, case.population)
    example = jax.tree.map(lambda g: g[0], children)
    arch = archive_lib.empty(example, case.cells)
    log_probs = -jax.random.exponential(key, (case.population, case.cells))
    t = time.perf_counter()
    fn = insert_loop(arch, children, log_probs, case.generations)
    first = time.perf_counter() - t
    insert_s = best_time(fn, case.repeats) / case.generations
    archive_bytes = sum(g.nbytes for g in jax.tree.leaves(arch.genomes))
    return {
        "encoding": case.encoding,
        "image_shape": list(shape),
        "cells": case.cells,
        "children": case.population,
        "archive_genome_mib": round(archive_bytes / 2**20, 1),
        "compile_s": sig(max(first - insert_s * case.generations, 0.0)),
        "insert_s": sig(insert_s),
        "inserts_per_s": sig(1 / insert_s),
        "archive_bytes_per_s": sig(archive_bytes / insert_s),
    }


def runs_case_row(case: Case) -> dict:
    """`case.runs` runs of `case.generations` generations (seeds 0..R-1): one
    `map_elites.run_many` call (its default batching, and vmapped) against one call per run, and
    how far apart their archives are."""
    setup = case_setup(case)
    params, config = setup.params, setup.evolution
    n, r = case.generations, case.runs
    seeds = jnp.arange(r)
    batch = map_elites.default_batch()
    t = time.perf_counter()
    compiled = {
        b: jax.jit(lambda p, s, b=b: map_elites.run_many(config, p, s, n, None, b))
        .lower(params, seeds).compile()
        for b in (batch, "vmap")
    }  # fmt: skip
    alone = jax.jit(lambda p, s: map_elites.run_many(config, p, s, n, None, batch))
    alone = alone.lower(params, seeds[:1]).compile()
    compile_s = time.perf_counter() - t

    def separately():
        return [alone(params, seeds[i : i + 1]) for i in range(r)]

    fns = {"together": blocking(compiled[batch], params, seeds),
           "vmapped": blocking(compiled["vmap"], params, seeds),
           "separately": lambda: [jax.block_until_ready(s) for s in separately()]}  # fmt: skip
    times = interleaved(fns, case.repeats)
    many_state, one_states = compiled[batch](params, seeds), separately()
    delta = max(
        float(np.max(np.abs(np.asarray(many_state.archive.log_prob[i])
                            - np.asarray(one.archive.log_prob[0]))))
        for i, one in enumerate(one_states)
    )  # fmt: skip
    same_takeovers = all(
        np.array_equal(
            np.asarray(many_state.archive.takeovers[i]), np.asarray(one.archive.takeovers[0])
        )
        for i, one in enumerate(one_states)
    )
    return {
        "model": case.model,
        "weights": case.weights or "shipped",
        "encoding": case.encoding,
        "emitter": case.emitter,
        "population": case.population,
        "runs": r,
        "batch": batch,
        "generations_timed": n,
        "repeats": case.repeats,
        "compile_s": sig(compile_s),
        "run_many_s_per_run": sig(times["together"] / r),
        "separate_calls_s_per_run": sig(times["separately"] / r),
        "run_many_speedup": round(times["separately"] / times["together"], 3),
        "vmap_speedup": round(times["separately"] / times["vmapped"], 3),
        "max_abs_delta_log_prob": sig(delta),
        "same_takeovers": same_takeovers,
    }


def device_case_row(case: Case) -> dict:
    return {k: sig(v) for k, v in device_throughput(case.repeats).items()}


ROWS = {
    "device": device_case_row,
    "generation": generation_case_row,
    "classifier": classifier_case_row,
    "render": render_case_row,
    "insert": insert_case_row,
    "runs": runs_case_row,
    "startup": startup_case_row,
}


def run_case(case: Case, isolated: bool = True) -> dict:
    """Measures one case in this process: its JSON row. isolated: the process ran nothing
    else, so its peak memory is the case's own (else: the peak of the cases so far)."""
    t = time.perf_counter()
    row = {"suite": case.suite, "case": case.name, "kind": case.kind, **environment()}
    row.update(ROWS[case.kind](case))
    row.update(memory.peak_memory())
    row["isolated"] = isolated
    row["wall_s"] = round(time.perf_counter() - t, 1)
    return row


def run_isolated(case: Case, command: list[str]) -> bool:
    """Runs one case in a fresh Python process (`command` + --case=JSON: a program that runs
    one case and prints its row) and relays its JSON line; False if it failed."""
    cmd = [*command, f"--case={json.dumps(dataclasses.asdict(case))}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        print(lines[-1], flush=True)
        return True
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    print(json.dumps({"suite": case.suite, "case": case.name, "error": tail[0]}), flush=True)
    sys.stderr.write(proc.stderr)
    return False
