"""The MNIST direct-encoding MAP-Elites loop written the straightforward way in NumPy.

This is the baseline a user would otherwise write, and what the benchmark (`studies.benchmark`)
compares jaxfool against: the same algorithm as `jaxfool.search.map_elites` with
`DirectEncoding` and LeNet (uniform parent selection over occupied cells, SBX with probability
0.5 else a copy in random order, polynomial mutation of every gene with probability 0.1, pixel
bytes floor(gene * 255), LeNet scoring, insertion of every child into every cell it beats), but
one individual at a time: a Python loop over pairs and children, each gene operator vectorised
over one genome's pixels, LeNet run on one image, the archive updated child by child. It does
not draw the same random numbers as jaxfool, so runs differ in detail, not in kind.
`experiments/numpy_baseline.py` runs it from the command line (`evolve`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

FLT_EPSILON = float(np.finfo(np.float32).eps)


# --- LeNet ------------------------------------------------------------------------------------


def numpy_lenet_params(params: Any) -> dict[str, np.ndarray]:
    """jaxfool's LeNet classifier params ({"net": Flax variables, "mean"}) as NumPy arrays."""
    p = params["net"]["params"]
    out = {"mean": np.asarray(params["mean"], np.float32)}
    for layer in ("conv1", "conv2", "ip1", "ip2"):
        out[f"{layer}_w"] = np.asarray(p[layer]["kernel"], np.float32)
        out[f"{layer}_b"] = np.asarray(p[layer]["bias"], np.float32)
    return out


def _conv_valid(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """VALID convolution by im2col: x [B, H, W, C], kernel [kh, kw, C, O] -> [B, H', W', O]."""
    kh, kw, c, o = kernel.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    cols = windows.transpose(0, 1, 2, 4, 5, 3)  # [B, H', W', kh, kw, C]
    cols = cols.reshape(cols.shape[:3] + (kh * kw * c,))
    return cols @ kernel.reshape(kh * kw * c, o) + bias


def _max_pool_2x2(x: np.ndarray) -> np.ndarray:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def lenet_logits(p: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """Caffe's MNIST LeNet on uint8 images [B, 28, 28, 1]: float32 logits [B, N]."""
    x = (images.astype(np.float32) - p["mean"]) * np.float32(1 / 256)
    x = _max_pool_2x2(_conv_valid(x, p["conv1_w"], p["conv1_b"]))
    x = _max_pool_2x2(_conv_valid(x, p["conv2_w"], p["conv2_b"]))
    x = x.reshape(x.shape[0], -1)  # H, W, C order, as the Flax model flattens
    x = np.maximum(x @ p["ip1_w"] + p["ip1_b"], 0.0)
    return x @ p["ip2_w"] + p["ip2_b"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (precise near probability 1)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# --- variation (Sferes' operators, one genome at a time) ---------------------------------------


def _sbx_beta_q(u: np.ndarray, beta: np.ndarray, eta: float) -> np.ndarray:
    alpha = 2.0 - beta ** -(eta + 1.0)
    return np.where(
        u <= 1.0 / alpha,
        (u * alpha) ** (1.0 / (eta + 1.0)),
        (1.0 / (2.0 - u * alpha)) ** (1.0 / (eta + 1.0)),
    )


def sbx(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, eta: float = 10.0):
    """Bounded simulated binary crossover of two genomes (genes in [0, 1]): two children."""
    u = rng.random(a.shape, dtype=np.float32)
    swap = rng.random(a.shape) < 0.5
    y1, y2 = np.minimum(a, b), np.maximum(a, b)
    differ = np.abs(y1 - y2) > FLT_EPSILON
    span = np.where(differ, y2 - y1, 1.0)
    c1 = np.clip(0.5 * ((y1 + y2) - _sbx_beta_q(u, 1.0 + 2.0 * y1 / span, eta) * (y2 - y1)), 0, 1)
    c2 = np.clip(
        0.5 * ((y1 + y2) + _sbx_beta_q(u, 1.0 + 2.0 * (1.0 - y2) / span, eta) * (y2 - y1)), 0, 1
    )
    c1, c2 = np.where(swap, c2, c1), np.where(swap, c1, c2)
    return (
        np.where(differ, c1, a).astype(np.float32),
        np.where(differ, c2, b).astype(np.float32),
    )


def polynomial_mutation(
    rng: np.random.Generator, genes: np.ndarray, rate: float = 0.1, eta: float = 15.0
) -> np.ndarray:
    """Each gene moves by a polynomial step with probability `rate`, clipped to [0, 1]."""
    picked = rng.random(genes.shape) < rate
    u = rng.random(genes.shape)
    p = np.where(u < 0.5, 2.0 * u, 2.0 * (1.0 - u)) ** (1.0 / (eta + 1.0))
    delta = np.where(u < 0.5, p - 1.0, 1.0 - p)
    return np.where(picked, np.clip(genes + delta, 0.0, 1.0), genes).astype(np.float32)


# --- MAP-Elites ------------------------------------------------------------------------------


@dataclass
class NumpyArchive:
    """One elite per class: genomes float32 [K, 28, 28, 1], log_prob float64 [K] (-inf empty)."""

    genomes: np.ndarray
    log_prob: np.ndarray

    @classmethod
    def empty(cls, num_cells: int, shape=(28, 28, 1)) -> NumpyArchive:
        return cls(np.zeros((num_cells, *shape), np.float32), np.full(num_cells, -np.inf))

    def insert(self, genome: np.ndarray, log_probs: np.ndarray) -> None:
        """The child takes every cell whose elite it beats (strict >)."""
        better = log_probs > self.log_prob
        self.log_prob[better] = log_probs[better]
        self.genomes[better] = genome


def score_one(p: dict[str, np.ndarray], genome: np.ndarray) -> np.ndarray:
    """Express one genome (bytes floor(gene * 255)) and score it: log-probabilities [K]."""
    image = np.floor(genome * 255.0).astype(np.uint8)
    return log_softmax(lenet_logits(p, image[None]))[0]


def init(rng: np.random.Generator, p: dict[str, np.ndarray], population: int) -> NumpyArchive:
    """Scores `population` random genomes one by one and archives them."""
    archive = NumpyArchive.empty(p["ip2_b"].shape[0])
    for _ in range(population):
        genome = rng.random((28, 28, 1), dtype=np.float32)
        archive.insert(genome, score_one(p, genome))
    return archive


def generation(
    rng: np.random.Generator, p: dict[str, np.ndarray], archive: NumpyArchive, population: int
) -> None:
    """One generation, one pair and one child at a time (updates `archive` in place)."""
    occupied = np.flatnonzero(archive.log_prob > -np.inf)
    children = []
    for _ in range(population // 2):
        a, b = (archive.genomes[c] for c in rng.choice(occupied, 2))
        if rng.random() < 0.5:
            c1, c2 = sbx(rng, a, b)
        else:
            c1, c2 = (b, a) if rng.random() < 0.5 else (a, b)
        children += [polynomial_mutation(rng, c1), polynomial_mutation(rng, c2)]
    for child in children:
        archive.insert(child, score_one(p, child))


def run(
    params: Any, population: int, generations: int, seed: int = 0
) -> tuple[NumpyArchive, NumpyArchive]:
    """(archive after the random start, archive after `generations` generations)."""
    rng = np.random.default_rng(seed)
    p = numpy_lenet_params(params)
    archive = init(rng, p, population)
    start = NumpyArchive(archive.genomes.copy(), archive.log_prob.copy())
    for _ in range(generations):
        generation(rng, p, archive, population)
    return start, archive


def evolve(
    params: Any,
    population: int,
    generations: int,
    seed: int = 0,
    log_every: int = 10,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A run of `generations` generations from `seed` with a progress line every `log_every`
    generations (generation, gens/s, median and minimum confidence); returns its result
    (evaluations, seconds, speed, the final confidences)."""
    log = log or (lambda msg: print(msg, flush=True))
    p = numpy_lenet_params(params)
    rng = np.random.default_rng(seed)
    archive = init(rng, p, population)
    log(f"numpy baseline: LeNet, direct, population {population}, seed {seed}")
    start = time.perf_counter()
    for g in range(1, generations + 1):
        generation(rng, p, archive, population)
        if g % log_every == 0 or g == generations:
            rate = g / (time.perf_counter() - start)
            conf = np.exp(archive.log_prob)
            log(
                f"generation {g}/{generations}  {rate:.2f} gens/s  median "
                f"{np.median(conf):.6f}  min {conf.min():.6f}"
            )
    seconds = time.perf_counter() - start
    conf = np.exp(archive.log_prob)
    return {
        "generations": generations,
        "population": population,
        "seed": seed,
        "evaluations": population + generations * population,
        "seconds": round(seconds, 3),
        "generations_per_s": round(generations / seconds, 3) if seconds > 0 else None,
        "median_confidence": float(np.median(conf)),
        "min_confidence": float(conf.min()),
        "confidence": [float(c) for c in conf],
    }
