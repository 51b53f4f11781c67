"""Retraining with fooling images as an extra class (paper §3.6), for MNIST and image folders.

    DNN_1 --evolve (cells = the real classes)--> fooling images F_1
          --train on real data + F_1 as class n--> DNN_2 (n + 1 outputs)
          --evolve against DNN_2 (still only the n real cells)--> F_2 --> DNN_3 ...

Each round runs several independent MAP-Elites runs against DNN_i. A run's archive has one cell
per *real* class (0..n-1); for an (n+1)-output net the fitness of cell c is log p_c under the
full softmax, so an image only counts when the net calls it a real class and not "fooling".
The final elites of the runs are the round's fooling images. Some runs are held out from
training, to measure whether DNN_{i+1} also rejects fooling images it never saw.

What differs between MNIST and ImageNet (the network, its training, its data) is a `Task`;
`retrain` is the loop, written once. `mnist_task` keeps the digits in memory; `folder_task`
reads an ImageNet-format directory (one subfolder of images per class) batch by batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from jaxfool import classifiers, evolve, preprocess, scoring, train
from jaxfool.classifiers import Classifier
from jaxfool.nets.caffenet import CaffeNet
from jaxfool.runs import format_confidence
from jaxfool.transfer import score_images

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

    def __post_init__(self):
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.runs_per_iteration < 1:
            raise ValueError("runs_per_iteration must be >= 1")
        if not 0 <= self.holdout_runs < self.runs_per_iteration:
            raise ValueError(
                f"holdout_runs must be in 0..runs_per_iteration-1 "
                f"({self.runs_per_iteration - 1}), got {self.holdout_runs}"
            )
        if self.generations < 1 or self.log_every < 1:
            raise ValueError("generations and log_every must be >= 1")
        if not self.thresholds or not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must lie in (0, 1], got {self.thresholds}")


@dataclass(frozen=True)
class Task:
    """A dataset and network family. All callables take and return plain arrays / pytrees.

    num_real: real classes n; the fooling class is n.
    classifier(net_params) -> (Classifier, classifier params), for evolution and prediction.
    train(fooling_images, repeats, seed) -> net params with n + 1 outputs, trained on the real
        training data plus each fooling image `repeats` times, labelled n.
    accuracy(net_params) -> top-1 accuracy on the held-out real test data (all outputs
        compete: a real image called "fooling" is wrong).
    """

    num_real: int
    classifier: Callable[[Params], tuple[Classifier, Any]]
    train: Callable[[np.ndarray, int, int], Params]
    accuracy: Callable[[Params], float]
    num_train: int


# --- evolution against one network --------------------------------------------------------------


def fooling_evolution_config(
    encoding: Any, classifier: Classifier, num_real: int, population: int, eval_chunk=None
) -> evolve.EvolutionConfig:
    """MAP-Elites over the real classes only (cells 0..n-1), whatever the net's output count."""
    return evolve.EvolutionConfig(
        encoding=encoding,
        classifier=classifier,
        classes=tuple(range(num_real)),
        population=population,
        initial_population=population,
        eval_chunk=eval_chunk,
    )


def median_confidence(log_prob: np.ndarray) -> float:
    """Median over cells of the elites' probabilities (the paper's "median confidence")."""
    return float(np.median(np.exp(np.asarray(log_prob, np.float64))))


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
    config: evolve.EvolutionConfig,
    params: Any,
    key: jax.Array,
    runs: int,
    generations: int,
    log_every: int,
) -> FoolingRound:
    """`runs` independent MAP-Elites runs of `generations` generations (run r uses fold_in(key, r)).

    Records each run's median confidence every `log_every` generations (host calls).
    """
    t0 = time.perf_counter()
    checkpoints = list(range(0, generations, log_every)) + [generations]
    images, log_probs, medians = [], [], []
    for r in range(runs):
        init_key, loop_key = jax.random.split(jax.random.fold_in(key, r))
        state = evolve.init(config, params, init_key)
        row = [median_confidence(state.archive.log_prob)]
        for start, stop in zip(checkpoints[:-1], checkpoints[1:], strict=True):
            state = evolve.run(config, params, state, loop_key, stop - start)
            row.append(median_confidence(state.archive.log_prob))
        medians.append(row)
        log_probs.append(np.asarray(state.archive.log_prob))
        images.append(np.asarray(_express(config.encoding, state.archive.genomes)))
    return FoolingRound(
        images=np.stack(images),
        log_prob=np.stack(log_probs),
        generations=np.asarray(checkpoints, np.int64),
        medians=np.asarray(medians, np.float64).T,
        seconds=time.perf_counter() - t0,
    )


@partial(jax.jit, static_argnums=0)
def _express(encoding: Any, genomes: Any) -> jax.Array:
    return encoding.express(genomes)


def generations_to_threshold(
    generations: np.ndarray, medians: np.ndarray, threshold: float
) -> list[int | None]:
    """Per run, the first recorded generation whose median confidence is >= threshold."""
    out: list[int | None] = []
    for run in np.asarray(medians).T:
        hit = np.nonzero(run >= threshold)[0]
        out.append(int(generations[hit[0]]) if len(hit) else None)
    return out


def median_generations(per_run: Sequence[int | None]) -> float | None:
    """Median over runs, a run that never got there counting as infinite; None if that wins."""
    values = np.array([math.inf if g is None else g for g in per_run], np.float64)
    med = float(np.median(values))
    return None if math.isinf(med) else med


def round_stats(rnd: FoolingRound, thresholds: Sequence[float]) -> dict[str, Any]:
    """The table row of one evolution round: confidences of all elites, generations needed."""
    p = np.exp(np.asarray(rnd.log_prob, np.float64)).reshape(-1)
    per_run = {
        str(t): generations_to_threshold(rnd.generations, rnd.medians, t) for t in thresholds
    }
    return {
        "fooling_images": int(p.size),
        "median_confidence": float(np.median(p)),
        "max_confidence": float(np.max(p)),
        "min_confidence": float(np.min(p)),
        "fraction_above": {str(t): float(np.mean(p >= t)) for t in thresholds},
        "generations_to_median": {t: median_generations(g) for t, g in per_run.items()},
        "generations_to_median_per_run": per_run,
        "generation_budget": int(rnd.generations[-1]),
        "evolution_seconds": round(rnd.seconds, 2),
    }


# --- the training set with the fooling class -----------------------------------------------------


def fooling_repeats(num_fooling: int, num_real_examples: int, num_real: int, balance: bool) -> int:
    """How often each fooling image enters the training set: enough to make the fooling class
    about as large as a mean real class (at least once), or once without `balance`."""
    if num_fooling < 1:
        raise ValueError("no fooling images")
    if not balance:
        return 1
    return max(1, round(num_real_examples / num_real / num_fooling))


def with_fooling_class(
    images: np.ndarray, labels: np.ndarray, fooling: np.ndarray, fooling_label: int, repeats: int
) -> tuple[np.ndarray, np.ndarray]:
    """Real images [N, ...] + each fooling image `repeats` times, labelled `fooling_label`."""
    extra = np.tile(fooling, (repeats,) + (1,) * (fooling.ndim - 1))
    return (
        np.concatenate([images, extra.astype(images.dtype)]),
        np.concatenate([labels, np.full(len(extra), fooling_label, labels.dtype)]),
    )


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


def retrain(
    task: Task,
    encoding: Any,
    config: RetrainConfig,
    dnn1: Params,
    key: jax.Array,
    log: LogFn | None = None,
    on_round: Callable[[int, Params, FoolingRound, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs the loop from DNN_1 = `dnn1`; returns one row per network DNN_1..DNN_{N+1}.

    Round i: evaluate DNN_i (test accuracy; how many of round i-1's fooling images it puts in
    the fooling class, trained-on and held-out), evolve against it, then train DNN_{i+1}.
    `on_round(i, params_i, round, row)` is called after each round's evolution (for saving).
    Keys: round i uses fold_in(key, i), split into evolution and training keys.
    """
    log = log or (lambda _: None)
    params, pool = dnn1, None
    previous: tuple[np.ndarray, np.ndarray] | None = None
    trained_on: dict[str, Any] = {}
    rows = []
    for i in range(1, config.iterations + 2):
        evo_key, train_key = jax.random.split(jax.random.fold_in(key, i))
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
        evo = fooling_evolution_config(
            encoding, clf, task.num_real, config.population, config.eval_chunk
        )
        rnd = evolve_fooling(
            evo,
            clf_params,
            evo_key,
            config.runs_per_iteration,
            config.generations,
            config.log_every,
        )
        row.update(round_stats(rnd, config.thresholds))
        rows.append(row)
        log(format_row(row, config.thresholds))
        if on_round is not None:
            on_round(i, params, rnd, row)
        if i == config.iterations + 1:
            break
        flat = rnd.images.reshape(-1, *rnd.images.shape[2:])
        per_run = rnd.images.shape[1]
        held = flat[: config.holdout_runs * per_run]
        fresh = flat[config.holdout_runs * per_run :]
        pool = fresh if pool is None or not config.cumulative else np.concatenate([pool, fresh])
        repeats = fooling_repeats(len(pool), task.num_train, task.num_real, config.balance)
        seed = int(jax.random.randint(train_key, (), 0, 2**31 - 1))
        t0 = time.perf_counter()
        log(f"training DNN_{i + 1} on the real data + {len(pool)} fooling images x{repeats}")
        params = task.train(pool, repeats, seed)
        trained_on = {
            "trained_fooling_images": int(len(pool)),
            "trained_fooling_repeats": repeats,
            "train_seed": seed,
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        previous = (fresh, held)
    return rows


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def format_row(row: dict[str, Any], thresholds: Sequence[float]) -> str:
    """One log line per round."""
    gens = " ".join(
        f"gens_to_median>={t} {_fmt(row['generations_to_median'][str(t)], '.0f')}"
        for t in thresholds
    )
    return (
        f"{row['network']} ({row['outputs']} outputs): test acc {row['test_accuracy']:.4f} | "
        f"rejects prev {_fmt(row.get('rejects_previous_trained'), '.2f')} "
        f"(held-out {_fmt(row.get('rejects_previous_heldout'), '.2f')}) | new fooling: median "
        f"{row['median_confidence']:.6f} max {row['max_confidence']:.6f} | {gens}"
    )


def markdown_table(rows: list[dict[str, Any]], thresholds: Sequence[float]) -> str:
    """The per-iteration table in markdown."""
    head = [
        "iteration",
        "outputs",
        "test acc",
        "rejects prev. (trained)",
        "rejects prev. (held-out)",
        "median conf",
        "max conf",
        *[f">= {t}" for t in thresholds],
        *[f"gens to median >= {t}" for t in thresholds],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pct = [f"{100 * r['fraction_above'][str(t)]:.0f}%" for t in thresholds]
        gens = [_fmt(r["generations_to_median"][str(t)], ".0f") for t in thresholds]
        cells = [
            r["network"],
            str(r["outputs"]),
            f"{100 * r['test_accuracy']:.2f}%",
            _pct(r.get("rejects_previous_trained")),
            _pct(r.get("rejects_previous_heldout")),
            format_confidence(r["median_confidence"]),
            format_confidence(r["max_confidence"]),
            *pct,
            *gens,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


# --- the plot (Pillow only) ----------------------------------------------------------------------


def nines(p: float) -> float:
    """-log10(1 - p): 2 for 0.99, 4 for 0.9999 (how close to certainty a confidence is)."""
    return float(-np.log10(max(1.0 - p, 1e-12)))


def plot_confidence(rows: list[dict[str, Any]], width: int = 800, height: int = 600) -> Image.Image:
    """Two panels over iterations, drawn with Pillow. Top: median and max confidence of the new
    fooling images and the network's test accuracy (0..1). Bottom: the same confidences as
    "nines", -log10(1 - p), which separates 0.99 from 0.9999 where the top panel cannot."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    med = [r["median_confidence"] for r in rows]
    top = [r["max_confidence"] for r in rows]
    acc = [r["test_accuracy"] for r in rows]
    red, blue, green = (200, 30, 30), (30, 30, 200), (30, 150, 30)
    top_nines = 5.0 * max(1, math.ceil(max(nines(p) for p in med + top) / 5))  # integer ticks
    panels = [
        (
            (60, 30, width - 200, height // 2 - 30),
            [
                ("median confidence", med, red),
                ("max confidence", top, blue),
                ("test accuracy", acc, green),
            ],
            1.0,
            "fooling images evolved against DNN_i: confidence",
        ),
        (
            (60, height // 2 + 20, width - 200, height - 50),
            [
                ("median, -log10(1-p)", [nines(p) for p in med], red),
                ("max, -log10(1-p)", [nines(p) for p in top], blue),
            ],
            top_nines,
            "the same as nines: -log10(1 - p) (2 = 0.99, 4 = 0.9999)",
        ),
    ]
    n = len(rows)
    for (left, y0, right, y1), series, vmax, title in panels:

        def xy(i: int, v: float, box=(left, y0, right, y1), vmax=vmax) -> tuple[float, float]:
            x = box[0] + (box[2] - box[0]) * (i / max(1, n - 1))
            return x, box[3] - (box[3] - box[1]) * min(max(v / vmax, 0.0), 1.0)

        draw.rectangle([left, y0, right, y1], outline="black")
        draw.text((left, y0 - 18), title, fill="black", font=font)
        for k in range(6):
            v = vmax * k / 5
            _, y = xy(0, v)
            draw.line([left, y, right, y], fill=(230, 230, 230))
            draw.text((left - 40, y - 6), f"{v:.1f}", fill="black", font=font)
        for i, r in enumerate(rows):
            x, _ = xy(i, 0)
            draw.line([x, y1, x, y1 + 4], fill="black")
            draw.text((x - 4, y1 + 8), str(r["iteration"]), fill="black", font=font)
        for j, (name, values, colour) in enumerate(series):
            points = [xy(i, v) for i, v in enumerate(values)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            lx, ly = right + 15, y0 + 16 * j  # legend right of the panel
            draw.line([lx, ly + 6, lx + 20, ly + 6], fill=colour, width=2)
            draw.text((lx + 26, ly), name, fill="black", font=font)
    draw.text((width // 2 - 70, height - 24), "iteration i (network DNN_i)", fill="black")
    return img


# --- MNIST ---------------------------------------------------------------------------------------

MNIST_CLASSIFIER_NAME = "lenet_retrain"


def mnist_classifier(net_params: Params) -> tuple[Classifier, Any]:
    """LeNet params (10 or 11 outputs) as a classifier; one name, so jit caches are shared."""
    return classifiers.lenet_classifier(MNIST_CLASSIFIER_NAME, {"params": net_params})


def mnist_task(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    steps: int = 10000,
    batch_size: int = 64,
    log_fn: train.LogFn | None = None,
) -> Task:
    """MNIST digits uint8 [N, 28, 28] in memory; DNN_{i+1} is LeNet with 11 outputs trained
    from scratch by Caffe's LeNet solver (`train.train_lenet`) for `steps` steps."""

    def train_fn(fooling: np.ndarray, repeats: int, seed: int) -> Params:
        x, y = with_fooling_class(train_images, train_labels, fooling[..., 0], 10, repeats)
        return train.train_lenet(
            x,
            y,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            num_classes=11,
            log_fn=log_fn,
            log_every=max(1, steps // 5),
        )

    return Task(
        num_real=10,
        classifier=mnist_classifier,
        train=train_fn,
        accuracy=lambda p: train.accuracy(p, test_images, test_labels),
        num_train=len(train_images),
    )


# --- ImageNet-format folders ---------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp")
ARCHS = ("tiny", "caffenet")


def scan_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """(paths, labels int32, class names) of an ImageNet-format folder: one subfolder per
    class (sorted names = class order, as torchvision's ImageFolder and the WNID order)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    names = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not names:
        raise ValueError(f"{root}: no class subfolders")
    paths, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root}: no images in its class subfolders")
    return paths, np.asarray(labels, np.int32), names


def load_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """uint8 RGB [N, size, size, 3]: each file resized (bilinear, aspect not kept) to size^2,
    as Caffe's convert_imageset --resize_height/width does for the ImageNet LMDB."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(im)
    return out


class TinyNet(nn.Module):
    """A small convnet for the synthetic stand-in of ImageNet (tests, smoke runs)."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name="conv1")(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), name="conv2")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


@dataclass(frozen=True)
class FolderLogits:
    """uint8 RGB [B, S, S, 3] -> logits [B, num_classes] of a folder network.

    tiny: x / 255 - 0.5. caffenet: CaffeNet with any number of outputs (the registry's
    CaffeNetLogits is fixed at 1000): BGR minus the mean, then the paper's 10 crops with the
    softmax averaged (`ten_crop`, for evolution) or the centre crop (training, accuracy).
    params = {"net": Flax variables, "mean_227": float32 [227, 227, 3] (caffenet only)}.
    """

    arch: str
    num_classes: int
    ten_crop: bool = False

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        if self.arch == "tiny":
            x = images.astype(jnp.float32) / 255.0 - 0.5
            return TinyNet(self.num_classes).apply(params["net"], x)
        net = CaffeNet(num_classes=self.num_classes)
        bgr = images[..., ::-1].astype(jnp.float32)
        if not self.ten_crop:
            return net.apply(params["net"], preprocess.caffe_center_crop(bgr, params["mean_227"]))
        crops = preprocess.caffe_ten_crops(bgr, params["mean_227"])
        b, n = crops.shape[:2]
        log_probs = scoring.log_softmax(net.apply(params["net"], crops.reshape(b * n, 227, 227, 3)))
        return jax.nn.logsumexp(log_probs.reshape(b, n, -1), axis=1) - jnp.log(jnp.float32(n))


def folder_module(arch: str, num_classes: int) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return TinyNet(num_classes) if arch == "tiny" else CaffeNet(num_classes=num_classes)


# bvlc_reference_caffenet train_val.prototxt: gaussian weight std and constant bias per layer
CAFFENET_INIT = {
    "conv1": (0.01, 0.0),
    "conv2": (0.01, 1.0),
    "conv3": (0.01, 0.0),
    "conv4": (0.01, 1.0),
    "conv5": (0.01, 1.0),
    "fc6": (0.005, 1.0),
    "fc7": (0.005, 1.0),
    "fc8": (0.01, 0.0),
}


def init_folder_net(arch: str, num_classes: int, key: jax.Array, image_size: int) -> Params:
    """Fresh Flax variables of the folder network: Flax's default initialisers for the tiny
    net; for CaffeNet the reference model's own (gaussian weights, biases 0 or 1), which its
    solver's learning rate expects."""
    size = image_size if arch == "tiny" else 227
    variables = folder_module(arch, num_classes).init(
        key, jnp.zeros((1, size, size, 3), jnp.float32)
    )
    if arch == "tiny":
        return variables
    keys = dict(zip(CAFFENET_INIT, jax.random.split(key, len(CAFFENET_INIT)), strict=True))
    return {
        "params": {
            name: {
                "kernel": std * jax.random.normal(keys[name], layer["kernel"].shape),
                "bias": jnp.full(layer["bias"].shape, bias, jnp.float32),
            }
            for name, layer in variables["params"].items()
            for std, bias in [CAFFENET_INIT[name]]
        }
    }


def caffe_step_optimizer(
    base_lr: float = 0.01,
    stepsize: int = 100000,
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> optax.GradientTransformation:
    """Caffe's ImageNet solver (lr policy "step") in the update order of Caffe's SGD, with
    CaffeNet's per-parameter multipliers: biases lr_mult 2 and decay_mult 0."""

    def schedule(count):
        return base_lr * gamma ** (count // stepsize)

    def weights_mask(params):
        return jax.tree.map(lambda b: not b, train.bias_mask(params))

    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=weights_mask),
        optax.masked(optax.scale(2.0), train.bias_mask),
        optax.scale_by_schedule(lambda count: -schedule(count)),
        optax.trace(decay=momentum, nesterov=False),
    )


@partial(jax.jit, static_argnums=(0, 1))
def _folder_step(logits_fn, tx, net, opt_state, consts, images, labels):
    def loss_fn(net):
        logits = logits_fn({"net": net, **consts}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(net)
    updates, opt_state = tx.update(grads, opt_state, net)
    return optax.apply_updates(net, updates), opt_state, loss


@dataclass
class FolderData:
    """Real images (files, read per batch) followed by in-memory fooling images (each
    `repeats` times, labelled `fooling_label`)."""

    paths: list[Path]
    labels: np.ndarray
    image_size: int
    fooling: np.ndarray | None = None
    fooling_label: int = -1
    repeats: int = 0

    def __len__(self) -> int:
        extra = 0 if self.fooling is None else len(self.fooling) * self.repeats
        return len(self.paths) + extra

    def batch(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        real = index < len(self.paths)
        out = np.empty((len(index), self.image_size, self.image_size, 3), np.uint8)
        labels = np.empty(len(index), np.int32)
        if real.any():
            out[real] = load_images([self.paths[i] for i in index[real]], self.image_size)
            labels[real] = self.labels[index[real]]
        if (~real).any():
            j = (index[~real] - len(self.paths)) % len(self.fooling)
            out[~real] = self.fooling[j]
            labels[~real] = self.fooling_label
        return out, labels


def train_folder_net(
    arch: str,
    num_classes: int,
    data: FolderData,
    consts: dict[str, Any],
    *,
    steps: int,
    batch_size: int,
    seed: int,
    optimizer: optax.GradientTransformation,
    log_fn: train.LogFn | None = None,
    log_every: int = 100,
) -> Params:
    """Trains a folder network from scratch: seeded init, seeded epoch shuffles, random
    left-right mirrors (Caffe's `mirror: true`), centre crop for CaffeNet."""
    init_key, order_key, mirror_key = jax.random.split(jax.random.key(seed), 3)
    net = init_folder_net(arch, num_classes, init_key, data.image_size)
    opt_state = optimizer.init(net)
    logits_fn = FolderLogits(arch, num_classes)
    order = train.batch_indices(order_key, len(data), steps, batch_size)
    flips = np.asarray(jax.random.bernoulli(mirror_key, 0.5, (steps, batch_size)))
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        images, labels = data.batch(order[step])
        images = np.where(flips[step][:, None, None, None], images[:, :, ::-1], images)
        net, opt_state, loss = _folder_step(
            logits_fn, optimizer, net, opt_state, consts, jnp.asarray(images), jnp.asarray(labels)
        )
        losses.append(loss)
        if log_fn is not None and ((step + 1) % log_every == 0 or step + 1 == steps):
            t1 = time.perf_counter()
            log_fn(step + 1, float(jnp.stack(losses).mean()), len(losses) / (t1 - t0))
            losses, t0 = [], t1
    return jax.block_until_ready(net)


def folder_accuracy(
    arch: str, net: Params, consts: dict[str, Any], data: FolderData, batch: int = 64
) -> float:
    """Top-1 accuracy over all of `data` (read batch by batch), centre crop, all outputs."""
    num_classes = _num_outputs(net)
    clf = Classifier("folder", FolderLogits(arch, num_classes), (data.image_size,) * 2 + (3,), ())
    correct = 0
    for i in range(0, len(data), batch):
        images, labels = data.batch(np.arange(i, min(i + batch, len(data))))
        correct += int(np.sum(predict(clf, {"net": net, **consts}, images, batch) == labels))
    return correct / len(data)


def _num_outputs(net: Params) -> int:
    """Output count of folder-net variables: the bias of the last Dense layer."""
    layer = net["params"]["fc" if "fc" in net["params"] else "fc8"]
    return int(layer["bias"].shape[0])


def folder_classifier(
    arch: str, class_names: Sequence[str], consts: dict[str, Any], image_size: int, net: Params
) -> tuple[Classifier, Any]:
    """The folder net as a Classifier for evolution: 10 crops for CaffeNet (the paper's
    fitness), the plain input for the tiny net. Labels: the class names, then "fooling"."""
    k = _num_outputs(net)
    labels = tuple(class_names) + ("fooling",) * (k - len(class_names))
    logits = FolderLogits(arch, k, ten_crop=arch == "caffenet")
    shape = (image_size, image_size, 3)
    return Classifier(f"{arch}_retrain", logits, shape, labels[:k]), {"net": net, **consts}


def folder_task(
    arch: str,
    train_dir: str | Path,
    test_dir: str | Path,
    *,
    image_size: int,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    consts: dict[str, Any] | None = None,
    log_fn: train.LogFn | None = None,
) -> tuple[Task, FolderData]:
    """The loop's Task for an ImageNet-format train/ and test (val) folder pair.

    Returns the task and the real training data (to train DNN_1 from scratch if no weights).
    """
    consts = consts or {}
    paths, labels, names = scan_image_folder(train_dir)
    test_paths, test_labels, test_names = scan_image_folder(test_dir)
    if test_names != names:
        raise ValueError(f"{test_dir}: class subfolders differ from {train_dir}'s")
    real = FolderData(paths, labels, image_size)
    test = FolderData(test_paths, test_labels, image_size)
    n = len(names)

    def train_fn(fooling: np.ndarray, repeats: int, seed: int) -> Params:
        data = FolderData(paths, labels, image_size, fooling, n, repeats)
        return train_folder_net(
            arch,
            n + 1,
            data,
            consts,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            optimizer=optimizer,
            log_fn=log_fn,
            log_every=max(1, steps // 5),
        )

    task = Task(
        num_real=n,
        classifier=partial(folder_classifier, arch, names, consts, image_size),
        train=train_fn,
        accuracy=lambda net: folder_accuracy(arch, net, consts, test),
        num_train=len(paths),
    )
    return task, real
