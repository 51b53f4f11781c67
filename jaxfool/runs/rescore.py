"""Re-render a run's elite genomes and re-score them with the run's own classifier.

A run directory's elites/*.npz genomes are the record of what it found (the PNGs can be
re-rendered from them). `rescore` checks that record: it rebuilds the run's classifier and
encoding from config.json, expresses every genome (the same bytes that were scored), scores the
images through the same path as evolution (`map_elites.evaluate`: same eval chunk, so the classifier
sees the same batch shapes) and compares each elite's log-probability with classes.csv.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base.errors import ConfigError, RunDirError
from jaxfool.base.npz import WeightsFileError
from jaxfool.runs import store
from jaxfool.runs.config import LoopConfig, RunConfig
from jaxfool.runs.setup import build
from jaxfool.search import map_elites


@dataclass(frozen=True)
class Elite:
    """One row of classes.csv: the class, its recorded score and its genome file."""

    index: int
    label: str
    log_prob: float
    genome_path: Path


@dataclass(frozen=True)
class Rescored:
    """The re-scored elites, in classes.csv order."""

    elites: list[Elite]
    log_probs: np.ndarray  # float32 [n]: the class's log-probability of the re-rendered image
    images: np.ndarray  # uint8 [n, H, W, C]: the re-rendered images

    @property
    def recorded(self) -> np.ndarray:
        return np.asarray([e.log_prob for e in self.elites], np.float32)

    @property
    def mismatches(self) -> np.ndarray:
        """Positions whose re-scored log-probability differs from the recorded one (bit for bit)."""
        return np.flatnonzero(self.log_probs != self.recorded)

    @property
    def max_abs_diff(self) -> float:
        if not len(self.elites):
            return 0.0
        return float(np.max(np.abs(self.log_probs.astype(np.float64) - self.recorded)))


def read_elites(run_dir: Path) -> list[Elite]:
    """classes.csv's rows with their genome files' paths; RunDirError for a missing or bad file."""
    path = run_dir / "classes.csv"
    if not path.is_file():
        raise RunDirError(f"{path}: no such file (is {run_dir} a finished run directory?)")
    elites = []
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                genome = run_dir / Path(row["image"]).with_suffix(".npz")
                elites.append(
                    Elite(int(row["index"]), row["label"], float(row["log_prob"]), genome)
                )
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise RunDirError(f"{path}: not a jaxfool classes.csv ({e})") from None
    return elites


def run_configs(run_dir: Path) -> tuple[RunConfig, LoopConfig]:
    """The run's RunConfig and LoopConfig as config.json records them."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    try:
        config, loop, _ = store.resumed_configs(
            run_dir, asdict(RunConfig()), LoopConfig(), given=set()
        )
    except ConfigError as e:
        raise RunDirError(f"{run_dir}: {e}") from None
    return config, loop


def _stack(genomes: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *a: jnp.concatenate(a), *genomes)


def rescore(run_dir: str | Path, classes: Sequence[int] | None = None) -> Rescored:
    """Re-renders and re-scores the elites of `run_dir` (those of `classes`, default all)."""
    run_dir = Path(run_dir)
    config, loop = run_configs(run_dir)
    elites = read_elites(run_dir)
    if classes is not None:
        wanted = set(classes)
        missing = wanted - {e.index for e in elites}
        if missing:
            raise RunDirError(f"{run_dir}: no elite for class {min(missing)} in classes.csv")
        elites = [e for e in elites if e.index in wanted]
    for elite in elites:  # only the classes asked for need their genomes (a run may keep a few)
        if not elite.genome_path.is_file():
            raise RunDirError(f"{elite.genome_path}: genome file missing (class {elite.index})")
    setup = build(config, loop)
    clf, params, evolution = setup.classifier, setup.params, setup.evolution
    genomes = []
    for elite in elites:
        try:
            encoding, genome, _ = store.load_genome(elite.genome_path)
        except WeightsFileError as e:
            raise RunDirError(str(e)) from None
        if encoding != evolution.encoding:
            raise RunDirError(
                f"{elite.genome_path}: its encoding is not the run's ({encoding} != "
                f"{evolution.encoding})"
            )
        genomes.append(genome)
    if not elites:
        shape = (0, *clf.image_shape)
        return Rescored([], np.zeros(0, np.float32), np.zeros(shape, np.uint8))
    column = {c: i for i, c in enumerate(evolution.classes)}
    try:
        cols = np.asarray([column[e.index] for e in elites])
    except KeyError as e:
        raise RunDirError(f"{run_dir}: class {e} is in classes.csv but not in the run") from None
    # Blocks of `population` genomes (the last padded with copies of the first): the classifier
    # sees exactly the batch shapes it saw in the run, so the scores can match bit for bit.
    stacked = _stack(genomes)
    n, block = len(elites), evolution.population
    padded = -(-n // block) * block
    order = np.concatenate([np.arange(n), np.zeros(padded - n, int)])
    blocks = jax.tree.map(lambda a: a[order].reshape((-1, block) + a.shape[1:]), stacked)
    score = jax.jit(lambda p, g: map_elites.evaluate(evolution, p, g)[0])
    scored = [
        np.asarray(score(params, jax.tree.map(lambda a, i=i: a[i], blocks)))
        for i in range(padded // block)
    ]
    log_probs = np.concatenate(scored)[np.arange(n), cols]
    images = np.asarray(jax.jit(evolution.encoding.express)(stacked))
    return Rescored(elites, log_probs.astype(np.float32), images)


def report(result: Rescored) -> str:
    """A one-line verdict: how many elites reproduce their recorded score exactly."""
    n, bad = len(result.elites), len(result.mismatches)
    if not bad:
        return f"{n} elites re-rendered and re-scored: all {n} log-probabilities equal classes.csv"
    first = result.elites[int(result.mismatches[0])]
    return (
        f"{n} elites re-rendered and re-scored: {bad} differ from classes.csv (max |diff| "
        f"{result.max_abs_diff:.3g} in log-probability; first: class {first.index} {first.label})"
    )
