"""Generations (and evaluations) until every class's elite reaches a threshold, per emitter
(experiments/compare_emitters.py).

For each encoding and `--emitter` spec, each seed's run goes one generation per call until
every class is >= the threshold or `max_generations` pass; the row of a spec holds each seed's
generations (None: the run did not get there), their median and the evaluations it took.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import numpy as np

from jaxfool.base.signals import Stop
from jaxfool.runs.config import RunConfig
from jaxfool.runs.setup import build
from jaxfool.search import map_elites

TABLE_HEAD = (
    "| encoding | emitter | median generations | per seed | evaluations (median) | s |\n"
    "|---|---|---|---|---|---|"
)


def first_passing(
    config: RunConfig,
    seeds: Sequence[int],
    threshold: float,
    max_generations: int,
    stop: Stop | None = None,
) -> list[int | None]:
    """Per seed, the first generation at which every cell is >= `threshold` (None: never
    within `max_generations`). A signal in `stop` ends it after the current generation (the
    seeds not yet run are left out)."""
    setup = build(config)
    params, evolution, eparams = setup.params, setup.evolution, setup.emitter_params
    step = jax.jit(lambda s, k: map_elites.run(evolution, params, s, k, 1, eparams))
    limit = np.log(threshold)
    done: list[int | None] = []
    for seed in seeds:  # one after another: vmapping the gradient emitter's conv backward
        init_key, loop_key = map_elites.run_keys(seed)  # over runs is slow on XLA's CPU
        state = map_elites.init(evolution, params, init_key)
        done.append(None)
        for generation in range(max_generations + 1):
            if np.all(np.asarray(state.archive.log_prob) >= limit):
                done[-1] = generation
                break
            if stop:
                return done
            if generation < max_generations:
                state = step(state, loop_key)
    return done


def compare_row(
    config: RunConfig,
    seeds: Sequence[int],
    threshold: float,
    max_generations: int,
    stop: Stop | None = None,
) -> dict:
    """One spec's row: each seed's generations, their median (None: fewer than half of the runs
    got there) and the evaluations up to it, and the seconds it took."""
    t0 = time.perf_counter()
    gens = first_passing(config, seeds, threshold, max_generations, stop)
    seconds = time.perf_counter() - t0
    finite = sorted(g for g in gens if g is not None)
    median = finite[len(gens) // 2] if len(finite) > len(gens) // 2 else None
    evals = None if median is None else config.population * (median + 1)
    return {"encoding": config.encoding, "emitter": config.emitter, "generations": gens,
            "median_generations": median, "median_evaluations": evals,
            "seconds": round(seconds, 1)}  # fmt: skip


def table_line(row: dict) -> str:
    """A row in the markdown table of TABLE_HEAD ("-": a run that did not get there)."""
    median, evals = row["median_generations"], row["median_evaluations"]
    shown = ", ".join("-" if g is None else str(g) for g in row["generations"])
    return (
        f"| {row['encoding']} | `{row['emitter']}` | {'-' if median is None else median} | "
        f"{shown} | {'-' if evals is None else evals} | {row['seconds']:.0f} |"
    )
