"""Retraining with fooling images as an extra class (paper §3.6), for MNIST and image folders.

    DNN_1 --evolve (cells = the real classes)--> fooling images F_1
          --train on real data + F_1 as class n--> DNN_2 (n + 1 outputs)
          --evolve against DNN_2 (still only the n real cells)--> F_2 --> DNN_3 ...

Each round runs several independent MAP-Elites runs against DNN_i. A run's archive has one cell
per *real* class (0..n-1); for an (n+1)-output net the fitness of cell c is log p_c under the
full softmax, so an image only counts when the net calls it a real class and not "fooling".
The final elites of the runs are the round's fooling images. Some runs are held out from
training, to measure whether DNN_{i+1} also rejects fooling images it never saw.

What differs between MNIST and ImageNet (the network, its training, its data) is a `Task`
(`jaxfool.studies.retrain_tasks`); `retrain` is the loop, written once. The networks are in
`jaxfool.classifiers.retrain_nets`, their training in `jaxfool.classifiers.train` /
`jaxfool.classifiers.train_folder`, a round's statistics, the table and the chart's series in
`jaxfool.studies.retrain_report`, the experiment directory (saving, resuming) in
`jaxfool.studies.retrain_store`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base.errors import ConfigError
from jaxfool.classifiers.protocol import Classifier
from jaxfool.classifiers.scoring import score_images
from jaxfool.runs import emitter_text
from jaxfool.runs.config import check_emitter_settings
from jaxfool.runs.loop import many_chunks
from jaxfool.runs.setup import search_config
from jaxfool.search.map_elites import EvolutionConfig
from jaxfool.studies.retrain_report import format_row, median_confidence, round_stats
from jaxfool.studies.retrain_tasks import Task

Params = Any
LogFn = Callable[[str], None]
DEFAULT_THRESHOLDS = (0.99, 0.9999)


@dataclass(frozen=True)
class RetrainConfig:
    """Settings of the loop (the network's training settings live in the `Task`).

    iterations: retraining rounds; DNN_1 .. DNN_{iterations + 1} are each attacked once.
    runs_per_iteration: independent MAP-Elites runs against each DNN_i (n images each).
    holdout_runs: of those, runs whose images are kept out of training (generalisation check).
    log_every: generations per host call; the resolution of "generations to threshold".
    cumulative: DNN_{i+1}'s fooling class holds F_1..F_i (True) or only F_i.
    balance: repeat the fooling images so the class is as large as a mean real class.
    emitter / emitter_params: the search of the runs whose images are trained on (the
        `--emitter` / `--emitter_params` syntax of fool.py; "original": the original code's).
    probe_emitter / probe_emitter_params / probe_runs: optionally, `probe_runs` more runs
        against each DNN_i with another search, same population and generations, whose images
        are only measured (never trained on): is a net retrained on one search's images still
        fooled by another's? ("": no probe.)
    """

    iterations: int = 15
    runs_per_iteration: int = 10
    holdout_runs: int = 1
    population: int = 200
    generations: int = 200
    log_every: int = 10
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    cumulative: bool = True
    balance: bool = True
    eval_chunk: int | None = None
    emitter: str = "original"
    emitter_params: str = ""
    probe_emitter: str = ""
    probe_emitter_params: str = ""
    probe_runs: int = 2

    def __post_init__(self):
        def check(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise ConfigError(field, message)

        check(self.iterations >= 0, "iterations", "must be >= 0")
        check(self.runs_per_iteration >= 1, "runs_per_iteration", "must be >= 1")
        check(
            0 <= self.holdout_runs < self.runs_per_iteration,
            "holdout_runs",
            f"must be in 0..runs_per_iteration - 1 ({self.runs_per_iteration - 1})",
        )
        pop = self.population
        check(pop >= 2 and pop % 2 == 0, "population", "must be an even number >= 2")
        check(self.generations >= 1, "generations", "must be >= 1")
        check(self.log_every >= 1, "log_every", "must be >= 1")
        check(
            bool(self.thresholds) and all(0 < t <= 1 for t in self.thresholds),
            "thresholds",
            "each must lie in (0, 1]",
        )
        check(self.probe_runs >= 1, "probe_runs", "must be >= 1")
        check(
            bool(self.probe_emitter) or not self.probe_emitter_params,
            "probe_emitter_params",
            "given without --probe_emitter",
        )
        check_emitter_settings(self.emitter, self.emitter_params, pop)
        if self.probe_emitter:
            fields = ("probe_emitter", "probe_emitter_params")
            check_emitter_settings(self.probe_emitter, self.probe_emitter_params, pop, fields)


def parse_thresholds(text: str) -> tuple[float, ...]:
    """'0.99,0.9999' -> (0.99, 0.9999); ConfigError(thresholds) otherwise."""
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ConfigError("thresholds", "comma-separated numbers") from None


# --- evolution against one network --------------------------------------------------------------


def fooling_evolution_config(
    encoding: Any,
    classifier: Classifier,
    num_real: int,
    population: int,
    eval_chunk=None,
    emitter: str = "original",
) -> EvolutionConfig:
    """MAP-Elites over the real classes only (cells 0..n-1), whatever the net's output count,
    searching with the emitter spec `emitter` ("original": exactly the original code's)."""
    return search_config(
        encoding, classifier, tuple(range(num_real)), population, emitter,
        eval_chunk=eval_chunk,
    )  # fmt: skip


@dataclass
class FoolingRound:
    """The outcome of `runs` independent runs against one network.

    images: uint8 [R, n, H, W, C], the final elites; log_prob: float32 [R, n];
    generations: int [T], when medians were taken; medians: float64 [T, R].
    """

    images: np.ndarray
    log_prob: np.ndarray
    generations: np.ndarray
    medians: np.ndarray
    seconds: float


def evolve_fooling(
    config: EvolutionConfig,
    params: Any,
    key: jax.Array,
    runs: int,
    generations: int,
    log_every: int,
    emitter_params: tuple | None = None,
) -> FoolingRound:
    """`runs` independent MAP-Elites runs of `generations` generations (run r uses fold_in(key, r)),
    all in each host call (`runs.loop.many_chunks`; on CPU bit for bit the runs one by one).

    Records each run's median confidence every `log_every` generations (host calls).
    `emitter_params`: the emitters' runtime Params (None: their defaults).
    """
    t0 = time.perf_counter()
    checkpoints = list(range(0, generations, log_every)) + [generations]
    keys = jax.vmap(lambda r: jax.random.split(jax.random.fold_in(key, r)))(jnp.arange(runs))
    init_keys, loop_keys = keys[:, 0], keys[:, 1]

    def medians_of(state) -> list[float]:
        log_prob = np.asarray(state.archive.log_prob)
        return [median_confidence(row) for row in log_prob]

    medians = []
    steps = many_chunks(config, params, init_keys, loop_keys, generations, log_every,
                        emitter_params)  # fmt: skip
    for state, _ in steps:
        medians.append(medians_of(state))
    log_probs = np.asarray(state.archive.log_prob)
    genomes = state.archive.genomes
    images = np.stack(
        [np.asarray(_express(config.encoding, jax.tree.map(lambda g, r=r: g[r], genomes)))
         for r in range(runs)]
    )  # fmt: skip
    return FoolingRound(
        images=images,
        log_prob=log_probs,
        generations=np.asarray(checkpoints, np.int64),
        medians=np.asarray(medians, np.float64),
        seconds=time.perf_counter() - t0,
    )


@partial(jax.jit, static_argnums=0)
def _express(encoding: Any, genomes: Any) -> jax.Array:
    return encoding.express(genomes)


# --- the training set with the fooling class -----------------------------------------------------


def fooling_repeats(num_fooling: int, num_real_examples: int, num_real: int, balance: bool) -> int:
    """How often each fooling image enters the training set: enough to make the fooling class
    about as large as a mean real class (at least once), or once without `balance`."""
    if num_fooling < 1:
        raise ValueError("no fooling images")
    if not balance:
        return 1
    return max(1, round(num_real_examples / num_real / num_fooling))


def predict(classifier: Classifier, params: Any, images: np.ndarray, chunk: int = 256):
    """Top-1 class int [N] of uint8 images under a classifier."""
    return np.argmax(score_images(classifier, params, images, chunk), axis=1)


def rejection_rate(task: Task, net_params: Params, images: np.ndarray) -> float | None:
    """Fraction of `images` that the net puts in the fooling class (None for no images)."""
    if len(images) == 0:
        return None
    clf, params = task.classifier(net_params)
    if clf.num_classes <= task.num_real:
        return 0.0  # a net without the fooling class cannot reject anything
    return float(np.mean(predict(clf, params, images) == task.num_real))


# --- the loop ------------------------------------------------------------------------------------


@dataclass
class Resume:
    """Where a stopped experiment goes on from: its rows (DNN_1..DNN_k), each finished round's
    fooling images uint8 [R, n, ...] and probe images (or None), and DNN_{k+1} as
    (params, its row's training fields) if it was trained before the stop (None: it is trained
    again, from the same seed, which gives the same network on the same machine)."""

    rows: list[dict[str, Any]]
    images: list[np.ndarray]
    probe_images: list[np.ndarray | None]
    next_network: tuple[Params, dict[str, Any]] | None = None


def _flat(images: np.ndarray) -> np.ndarray:
    """A round's images [R, n, ...] -> [R * n, ...] (run by run)."""
    return images.reshape(-1, *images.shape[2:])


def _split_round(config: RetrainConfig, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A round's images [R, n, ...] -> (trained-on, held-out) images, flat [*, ...]: the first
    `holdout_runs` runs are held out."""
    flat = _flat(images)
    held = config.holdout_runs * images.shape[1]
    return flat[held:], flat[:held]


def _grow_pool(config: RetrainConfig, pool: np.ndarray | None, fresh: np.ndarray) -> np.ndarray:
    """The fooling class after a round: all rounds' trained-on images (cumulative) or its own."""
    return fresh if pool is None or not config.cumulative else np.concatenate([pool, fresh])


def retrain(
    task: Task,
    encoding: Any,
    config: RetrainConfig,
    dnn1: Params,
    key: jax.Array,
    log: LogFn | None = None,
    on_round: Callable[..., None] | None = None,
    on_trained: Callable[[int, Params, dict[str, Any]], None] | None = None,
    resume: Resume | None = None,
) -> list[dict[str, Any]]:
    """Runs the loop from DNN_1 = `dnn1`; returns one row per network DNN_1..DNN_{N+1}.

    Round i: evaluate DNN_i (test accuracy; how many of round i-1's fooling images it puts in
    the fooling class, trained-on and held-out), evolve against it (and probe it with the probe
    emitter, if any), then train DNN_{i+1}. `on_round(i, params_i, round, row, probe_round)`
    is called after each round's evolution, `on_trained(i + 1, params, fields)` after each
    training (both for saving). With `resume`, the loop goes on after its last row, exactly
    as if it had not stopped. Keys: round i uses fold_in(key, i), split into evolution and
    training keys; the probe uses fold_in(fold_in(key, i), 1).
    """
    log = log or (lambda _: None)
    rows = list(resume.rows) if resume else []
    pool: np.ndarray | None = None
    previous: tuple[np.ndarray, np.ndarray] | None = None
    previous_probe: np.ndarray | None = None
    for images in resume.images if resume else ():
        fresh, held = _split_round(config, images)
        pool, previous = _grow_pool(config, pool, fresh), (fresh, held)
    if resume and resume.probe_images and resume.probe_images[-1] is not None:
        previous_probe = _flat(resume.probe_images[-1])

    def train_next(i: int) -> tuple[Params, dict[str, Any]]:
        """DNN_{i+1}, trained on the pool after round i with round i's training key."""
        _, train_key = jax.random.split(jax.random.fold_in(key, i))
        repeats = fooling_repeats(len(pool), task.num_train, task.num_real, config.balance)
        seed = int(jax.random.randint(train_key, (), 0, 2**31 - 1))
        t0 = time.perf_counter()
        log(f"training DNN_{i + 1} on the real data + {len(pool)} fooling images x{repeats}")
        params = task.train(pool, repeats, seed)
        fields = {
            "trained_fooling_images": int(len(pool)),
            "trained_fooling_repeats": repeats,
            "train_seed": seed,
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        if on_trained is not None:
            on_trained(i + 1, params, fields)
        return params, fields

    first = len(rows) + 1
    params, trained_on = dnn1, {}
    if rows and first <= config.iterations + 1:
        if resume.next_network is not None:
            params, trained_on = resume.next_network
        else:
            params, trained_on = train_next(first - 1)
    for i in range(first, config.iterations + 2):
        evo_key, _ = jax.random.split(jax.random.fold_in(key, i))
        clf, clf_params = task.classifier(params)
        row: dict[str, Any] = {
            "iteration": i,
            "network": f"DNN_{i}",
            "outputs": clf.num_classes,
            "test_accuracy": task.accuracy(params),
            **trained_on,
        }
        if previous is not None:
            row["rejects_previous_trained"] = rejection_rate(task, params, previous[0])
            row["rejects_previous_heldout"] = rejection_rate(task, params, previous[1])
        rnd = _search(
            task,
            encoding,
            config,
            clf,
            clf_params,
            config.emitter,
            config.emitter_params,
            config.runs_per_iteration,
            evo_key,
        )
        row.update(round_stats(rnd, config.thresholds))
        probe_rnd = None
        if config.probe_emitter:
            probe_key = jax.random.fold_in(jax.random.fold_in(key, i), 1)
            probe_rnd = _search(
                task,
                encoding,
                config,
                clf,
                clf_params,
                config.probe_emitter,
                config.probe_emitter_params,
                config.probe_runs,
                probe_key,
            )
            row["probe"] = {
                "emitter": config.probe_emitter,
                **round_stats(probe_rnd, config.thresholds),
            }
            if previous_probe is not None:
                row["probe"]["rejects_previous"] = rejection_rate(task, params, previous_probe)
            previous_probe = _flat(probe_rnd.images)
        rows.append(row)
        if on_round is not None:  # saved first: a stop asked for meanwhile keeps this round
            on_round(i, params, rnd, row, probe_rnd)
        log(format_row(row, config.thresholds))
        if i == config.iterations + 1:
            break
        fresh, held = _split_round(config, rnd.images)
        pool, previous = _grow_pool(config, pool, fresh), (fresh, held)
        params, trained_on = train_next(i)
    return rows


def _search(task, encoding, config, clf, clf_params, emitter, emitter_params, runs, key):
    """`runs` runs of `emitter` (with its `--emitter_params` text) against one network."""
    evo = fooling_evolution_config(
        encoding, clf, task.num_real, config.population, config.eval_chunk, emitter
    )
    custom = emitter != "original" or emitter_params
    params = emitter_text.runtime_params(emitter, emitter_params, evo) if custom else None
    return evolve_fooling(evo, clf_params, key, runs, config.generations, config.log_every, params)
