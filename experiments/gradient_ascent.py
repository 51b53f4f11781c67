"""Fooling images by gradient ascent on the input (the paper's §3.7, `find_fooling_image.py`).

    python experiments/gradient_ascent.py --model=lenet --classes=0-9
    python experiments/gradient_ascent.py --model=efficientnet_lite0 --preset=plain \\
        --classes=200,207,215,279 --stop_at=0.9999

All classes ascend at once (one jitted, vmapped loop); progress is printed every --log_every
steps. Writes DIR/summary.json (per class: confidence, steps to argmax / 0.99 / 0.999 /
0.9999, image), config.json, metrics.jsonl, images/ (one PNG per class) and gallery.png.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from jaxfool import classifiers, runs
from jaxfool.base import cli, fileio, images
from jaxfool.base.cli import FlagError
from jaxfool.base.npz import WeightsFileError
from jaxfool.search import gradient_ascent as ga

# The 20 classes of the original's supplementary figures (run_chosen_supplementary.sh).
PAPER_CLASSES = "200,207,215,279,366,367,390,414,445,500,509,580,643,657,704,713,782,805,826,906"

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}, or package.module:factory."
)
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_string("mean", None, "Mean image (.binaryproto/.npy) for LeNet / Caffe models.")
flags.DEFINE_string(
    "classes",
    None,
    "Target classes, e.g. '0-9' or '200,207' (default: all of a 10-class model, else the "
    "paper's 20 supplementary classes).",
)
flags.DEFINE_string("preset", "plain", f"Hyperparameters of the original: {', '.join(ga.PRESETS)}.")
flags.DEFINE_string(
    "optimizer",
    "progress",
    f"progress (the original's step rule) or {', '.join(ga.OPTAX_OPTIMIZERS)}.",
)
flags.DEFINE_float("learning_rate", 1.0, "optax optimisers only: step size in grey levels.")
flags.DEFINE_integer("steps", None, "Steps (default: the preset's N).")
flags.DEFINE_string("start", "mean_plus", f"Start image: {', '.join(ga.STARTS)}.")
flags.DEFINE_float(
    "stop_at", None, "Stop a class once its probability reaches this (default: run all steps)."
)
flags.DEFINE_integer("seed", 0, "Seed of the start image (the original's rseed).")
flags.DEFINE_string("out", None, "Run directory (default: runs/<time>_ascent_<model>_<preset>).")
flags.DEFINE_bool("overwrite", False, "Replace an existing run in --out.")
flags.DEFINE_integer("log_every", 25, "Steps per host call: one progress line each.")


def parse_classes(text: str | None, num_classes: int) -> tuple[int, ...]:
    """--classes as fool.py reads it; by default all classes of a 10-class model, else the
    paper's 20."""
    if (text is None or not text.strip()) and num_classes > 10:
        text = PAPER_CLASSES
    try:
        return runs.parse_classes(text, num_classes)
    except ValueError as e:
        raise FlagError(f"--classes: {e}") from None


def build_config() -> ga.AscentConfig:
    """The preset with the flags' overrides; invalid values are a FlagError naming the flag."""
    from jaxfool.classifiers import custom as custom_model

    if FLAGS.model not in classifiers.MODELS and not custom_model.is_spec(FLAGS.model):
        models = ", ".join(classifiers.MODELS)
        raise FlagError(f"--model={FLAGS.model}: choose one of {models} or package.module:factory")
    if FLAGS.preset not in ga.PRESETS:
        raise FlagError(f"--preset={FLAGS.preset}: choose one of {', '.join(ga.PRESETS)}")
    if FLAGS.log_every < 1:
        raise FlagError(f"--log_every={FLAGS.log_every}: must be >= 1")
    if FLAGS.seed < 0:
        raise FlagError(f"--seed={FLAGS.seed}: must be >= 0")
    overrides = {
        "optimizer": FLAGS.optimizer,
        "learning_rate": FLAGS.learning_rate,
        "start": FLAGS.start,
        "stop_at": FLAGS.stop_at,
    }
    if FLAGS.steps is not None:
        overrides["steps"] = FLAGS.steps
    try:
        return dataclasses.replace(ga.PRESETS[FLAGS.preset], **overrides)
    except ValueError as e:
        name = str(e).split("=", 1)[0]  # "steps=0: must be >= 1" -> --steps
        raise FlagError(f"--{name}: {e}") from None


def log(msg: str) -> None:
    print(msg, flush=True)


def progress_row(state: ga.AscentState, seconds: float, steps: int) -> dict:
    log_prob = np.asarray(state.classes.log_prob, np.float64)
    p = np.exp(log_prob)
    return {
        "step": int(state.step),
        "seconds": round(seconds, 4),
        "steps_per_s": steps / seconds if seconds > 0 else 0.0,
        "median_confidence": float(np.median(p)),
        "min_confidence": float(np.min(p)),
        "num_classes_above": {
            t: int(np.sum(log_prob > math.log(float(t)))) for t in runs.store.THRESHOLDS
        },
        "done": int(np.sum(np.asarray(state.classes.done))),
    }


def progress_line(row: dict, total: int, k: int) -> str:
    above = row["num_classes_above"]
    return (
        f"step {row['step']:>5}/{total} | {row['steps_per_s']:6.2f} steps/s | "
        f"median {row['median_confidence']:.6f} min {row['min_confidence']:.6f} | "
        f">0.99 {above['0.99']}/{k} >0.9999 {above['0.9999']}/{k} | done {row['done']}/{k}"
    )


def class_records(out: Path, res: ga.Result, labels: tuple[str, ...]) -> list[dict]:
    """Saves images/<class>_<label>.png per class; returns the summary's per-class records."""
    records = []
    for k, c in enumerate(res.targets.tolist()):
        stem = runs.store.elite_stem(c, labels[c])
        png = images.save_png(out / "images" / f"{stem}.png", res.images[k])
        records.append(
            {
                "index": c,
                "label": labels[c],
                "confidence": float(np.exp(np.float64(res.log_prob[k]))),
                "log_prob": float(res.log_prob[k]),
                "final_confidence": float(np.exp(np.float64(res.final_log_prob[k]))),
                "image_confidence": float(np.exp(np.float64(res.image_log_prob[k]))),
                "steps_to": {
                    m: int(s) for m, s in zip(ga.MILESTONES, res.first_step[k], strict=True)
                },
                "image": str(png.relative_to(out)),
            }
        )
    return records


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = build_config()
    try:
        clf, params = classifiers.load_classifier(FLAGS.model, FLAGS.weights, FLAGS.mean)
    except (WeightsFileError, ValueError, OSError) as e:
        raise FlagError(f"--model={FLAGS.model}: {e}") from None
    classes = parse_classes(FLAGS.classes, clf.num_classes)
    try:
        space = ga.input_space(clf)
    except ValueError as e:
        raise FlagError(f"--model={FLAGS.model}: {e}") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(FLAGS.out or f"runs/{stamp}_ascent_{FLAGS.model}_{FLAGS.preset}")
    out = runs.store.prepare_run_dir(out, FLAGS.overwrite)
    run_config = {
        "command": shlex.join(sys.argv),
        "flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])},
        "ascent": dataclasses.asdict(config),
        "weights": classifiers.weights_file(FLAGS.model, FLAGS.weights),
        "classes": list(classes),
        "jax_version": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
    fileio.write_json(out / "config.json", run_config)
    log(
        f"run directory {out}  ({clf.name}, preset {config.name}, {config.optimizer}, "
        f"{len(classes)} classes, {config.steps} steps, seed {FLAGS.seed})"
    )

    t_start = time.perf_counter()
    last = {"t": t_start, "step": 0}

    def report(state: ga.AscentState) -> None:
        now = time.perf_counter()
        row = progress_row(state, now - last["t"], int(state.step) - last["step"])
        last.update(t=now, step=int(state.step))
        runs.store.append_jsonl(out / "metrics.jsonl", row)
        log(progress_line(row, config.steps, len(classes)))

    targets = jnp.asarray(classes, jnp.int32)
    state = ga.ascend(
        config, space, params, targets, jax.random.key(FLAGS.seed), FLAGS.log_every, report
    )
    res = ga.result(space, params, targets, state)
    records = class_records(out, res, clf.labels)
    runs.store.save_elite_gallery(out / "gallery.png", res.images, records)
    stats = runs.store.archive_stats(res.log_prob)
    summary = {
        "model": FLAGS.model,
        "weights": run_config["weights"],
        "method": "gradient_ascent",
        "preset": config.name,
        "optimizer": config.optimizer,
        "start": config.start,
        "seed": FLAGS.seed,
        "steps": config.steps,
        "steps_completed": res.steps_run,
        "stop_at": config.stop_at,
        "median_confidence": stats["median_confidence"],
        "min_confidence": stats["min_confidence"],
        "num_classes_above": stats["num_classes_above"],
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "classes": records,
    }
    fileio.write_json(out / "summary.json", summary)
    above = summary["num_classes_above"]
    log(
        f"done: {res.steps_run} steps, median confidence {summary['median_confidence']:.6f}, "
        f">=0.9999 {above['0.9999']}/{len(classes)} classes; wrote {out}/summary.json"
    )


if __name__ == "__main__":
    cli.run(main)
