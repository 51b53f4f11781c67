"""A gradient-ascent run (experiments/gradient_ascent.py): its settings and its directory.

    DIR/config.json     the command, its settings, the ascent's hyperparameters, the weights,
                        the classes and the machine (written first)
    DIR/metrics.jsonl   one progress row per host call (step, speed, confidences, done)
    DIR/images/         one PNG per class (its best image, as the classifier's uint8 input)
    DIR/gallery.png     every class's image with its confidence
    DIR/summary.json    per class: confidence (of the float input, its last step and its saved
                        image), the steps to argmax / 0.99 / 0.999 / 0.9999, the image

`ascent_config` is a preset of `search.gradient_ascent.PRESETS` with overrides; `run` loads the
classifier, ascends every class at once (`search.gradient_ascent.ascend`) and writes the run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base import fileio, images
from jaxfool.base.errors import ConfigError
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers import custom, registry
from jaxfool.runs import store
from jaxfool.runs.config import parse_classes
from jaxfool.search import gradient_ascent as ga

# The 20 classes of the original's supplementary figures (its run_chosen_supplementary.sh).
PAPER_CLASSES = "200,207,215,279,366,367,390,414,445,500,509,580,643,657,704,713,782,805,826,906"


def ascent_config(
    preset: str,
    optimizer: str = "progress",
    learning_rate: float = 1.0,
    start: str = "mean_plus",
    stop_at: float | None = None,
    steps: int | None = None,
) -> ga.AscentConfig:
    """The preset with these overrides (steps: None keeps the preset's); ConfigError naming
    the setting that is invalid."""
    if preset not in ga.PRESETS:
        raise ConfigError("preset", f"choose one of {', '.join(ga.PRESETS)}")
    overrides = {
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "start": start,
        "stop_at": stop_at,
    }
    if steps is not None:
        overrides["steps"] = steps
    try:
        return dataclasses.replace(ga.PRESETS[preset], **overrides)
    except ValueError as e:
        name = str(e).split("=", 1)[0]  # "steps=0: must be >= 1" -> steps
        raise ConfigError(name, f"--{name}: {e}") from None


def target_classes(text: str | None, num_classes: int) -> tuple[int, ...]:
    """`classes` as fool.py reads it; by default all classes of a 10-class model, else the
    paper's 20."""
    if (text is None or not text.strip()) and num_classes > 10:
        text = PAPER_CLASSES
    try:
        return parse_classes(text, num_classes)
    except ValueError as e:
        raise ConfigError("classes", f"--classes: {e}") from None


def progress_row(state: ga.AscentState, seconds: float, steps: int) -> dict:
    """metrics.jsonl's row after a host call of `steps` steps that took `seconds`."""
    log_prob = np.asarray(state.classes.log_prob, np.float64)
    p = np.exp(log_prob)
    return {
        "step": int(state.step),
        "seconds": round(seconds, 4),
        "steps_per_s": steps / seconds if seconds > 0 else 0.0,
        "median_confidence": float(np.median(p)),
        "min_confidence": float(np.min(p)),
        "num_classes_above": {
            t: int(np.sum(log_prob > math.log(float(t)))) for t in store.THRESHOLDS
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
        stem = store.elite_stem(c, labels[c])
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


def run(
    config: ga.AscentConfig,
    model: str,
    weights: str | None = None,
    mean: str | None = None,
    classes: str | None = None,
    seed: int = 0,
    out: str | None = None,
    overwrite: bool = False,
    log_every: int = 25,
    command: str = "",
    flags: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Ascends `classes` of `model` (all at once, `log_every` steps per host call) from the
    start image of `seed`, writing the run directory `out` (default runs/<time>_ascent_<model>_
    <preset>); returns summary.json's dict. `flags`: the settings config.json records; `log`
    gets the progress lines (default: printed)."""
    log = log or (lambda msg: print(msg, flush=True))
    if model not in registry.MODELS and not custom.is_spec(model):
        models = ", ".join(registry.MODELS)
        raise ConfigError("model", f"choose one of {models} or package.module:factory")
    if log_every < 1:
        raise ConfigError("log_every", "must be >= 1")
    if seed < 0:
        raise ConfigError("seed", "must be >= 0")
    try:
        clf, params = registry.load_classifier(model, weights, mean)
    except (WeightsFileError, ValueError, OSError) as e:
        raise ConfigError("model", str(e)) from None
    targets = target_classes(classes, clf.num_classes)
    try:
        space = ga.input_space(clf)
    except ValueError as e:
        raise ConfigError("model", str(e)) from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out or f"runs/{stamp}_ascent_{model}_{config.name}")
    out = store.prepare_run_dir(out, overwrite)
    record = {
        "command": command,
        "flags": flags or {},
        "ascent": dataclasses.asdict(config),
        "weights": registry.weights_file(model, weights),
        "classes": list(targets),
        "jax_version": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
    fileio.write_json(out / "config.json", record)
    log(
        f"run directory {out}  ({clf.name}, preset {config.name}, {config.optimizer}, "
        f"{len(targets)} classes, {config.steps} steps, seed {seed})"
    )

    t_start = time.perf_counter()
    last = {"t": t_start, "step": 0}

    def report(state: ga.AscentState) -> None:
        now = time.perf_counter()
        row = progress_row(state, now - last["t"], int(state.step) - last["step"])
        last.update(t=now, step=int(state.step))
        store.append_jsonl(out / "metrics.jsonl", row)
        log(progress_line(row, config.steps, len(targets)))

    target_array = jnp.asarray(targets, jnp.int32)
    key = jax.random.key(seed)
    state = ga.ascend(config, space, params, target_array, key, log_every, report)
    res = ga.result(space, params, target_array, state)
    records = class_records(out, res, clf.labels)
    store.save_elite_gallery(out / "gallery.png", res.images, records)
    stats = store.archive_stats(res.log_prob)
    summary = {
        "model": model,
        "weights": record["weights"],
        "method": "gradient_ascent",
        "preset": config.name,
        "optimizer": config.optimizer,
        "start": config.start,
        "seed": seed,
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
        f">=0.9999 {above['0.9999']}/{len(targets)} classes; wrote {out}/summary.json"
    )
    return summary
