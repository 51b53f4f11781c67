"""A run directory: its outputs (summary, metrics, elites, gallery, checkpoint) and their rules.

Layout (docs/running.md): summary.json, metrics.jsonl, gallery.png, config.json, elites/ (one
PNG and one genome .npz per class), checkpoint/state.npz. Every file is written atomically, and
a directory that already holds a run is never reused unless the caller says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.base import fileio, images, npz
from jaxfool.base.errors import ConfigError, RunDirError
from jaxfool.runs.config import LoopConfig, RunConfig, replace_checked
from jaxfool.runs.rundir import RunDir
from jaxfool.search import encodings

THRESHOLDS = ("0.99", "0.999", "0.9999")
# outputs of every run (elites/ come per class): recorded in the manifest before they exist
RUN_FILES = (
    "config.json", "metrics.jsonl", "progress.png", "summary.json", "classes.csv",
    "gallery.png", "checkpoint/state.npz",
)  # fmt: skip


def prepare_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Creates run directory `out` with its manifest (see `rundir.RunDir.create`: with
    `overwrite`, only a previous run's own files are removed)."""
    return RunDir.create(out, overwrite).path


def confidences(log_prob: np.ndarray) -> np.ndarray:
    """Probabilities from float32 log-probabilities, computed in float64 (keeps 1 - 1e-9)."""
    return np.exp(np.asarray(log_prob, np.float64))


def archive_stats(log_prob: np.ndarray) -> dict[str, Any]:
    """Median/mean/min confidence over occupied cells and counts above each threshold."""
    lp = np.asarray(log_prob, np.float64)
    occ = lp[np.isfinite(lp)]
    p = np.exp(occ)
    above = {t: int(np.sum(occ >= math.log(float(t)))) for t in THRESHOLDS}
    if not len(p):
        return {
            "occupied": 0,
            "median_confidence": 0.0,
            "mean_confidence": 0.0,
            "min_confidence": 0.0,
            "num_classes_above": above,
        }
    return {
        "occupied": int(len(p)),
        "median_confidence": float(np.median(p)),
        "mean_confidence": float(np.mean(p)),
        "min_confidence": float(np.min(p)),
        "num_classes_above": above,
    }


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40] or "class"


def elite_stem(class_index: int, label: str) -> str:
    return f"{class_index:04d}_{slug(label)}"


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Appends one JSON line, rewriting the file atomically: a crash never leaves half a line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    fileio.write_bytes(path, old + (json.dumps(row) + "\n").encode())


def write_elites(
    out: Path,
    classes: tuple[int, ...],
    labels: tuple[str, ...],
    elite_images: np.ndarray,
    genomes: Any,
    log_prob: np.ndarray,
    last_improved: np.ndarray,
    takeovers: np.ndarray,
    encoding: Any,
) -> list[dict[str, Any]]:
    """Writes elites/<class>_<label>.png and .npz (genome); returns the per-class records."""
    conf = confidences(log_prob)
    records = []
    for cell, c in enumerate(classes):
        if not np.isfinite(log_prob[cell]):
            continue
        stem = elite_stem(c, labels[c])
        png = images.save_png(out / "elites" / f"{stem}.png", elite_images[cell])
        genome = _as_dict(jax.tree.map(lambda g, i=cell: np.asarray(g[i]), genomes))
        meta = {
            "class": c,
            "label": labels[c],
            "encoding": encodings.to_spec(encoding),
            "log_prob": float(log_prob[cell]),
        }
        npz.save_params(out / "elites" / f"{stem}.npz", {"genome": genome}, meta)
        records.append(
            {
                "index": c,
                "label": labels[c],
                "confidence": float(conf[cell]),
                "log_prob": float(log_prob[cell]),
                "image": str(png.relative_to(out)),
                "genome": f"elites/{stem}.npz",
                "last_improved": int(last_improved[cell]),
                "takeovers": int(takeovers[cell]),
            }
        )
    return records


def format_confidence(p: float) -> str:
    """A percentage with just enough digits not to round up to 100% (99.9999986%)."""
    for digits in range(2, 11):
        text = f"{100 * p:.{digits}f}"
        if not text.startswith("100"):
            return text + "%"
    return f"{100 * p:.10f}%"


def write_classes_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    """classes.csv: one row per archived class (index, label, confidence, ...)."""
    import csv
    import io

    columns = ["index", "label", "confidence", "log_prob", "last_improved", "takeovers", "image"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return fileio.write_text(path, buf.getvalue())


def caption(label: str, index: int, confidence: float, width: int = 18) -> str:
    """'index label' (cut to `width` characters) over the confidence: a gallery tile's text."""
    text = label if label == str(index) else f"{index} {label}"
    return f"{text[:width]}\n{format_confidence(confidence)}"


def gallery_tile(num_elites: int) -> int:
    """A gallery's tile size in pixels: 112 up to 200 elites; 64 beyond, so that all 1000
    ImageNet classes make one poster of about 2,800 x 2,300 pixels (the paper's Fig. 8)."""
    return 112 if num_elites <= 200 else 64


def save_elite_gallery(
    path: str | Path, elite_images: np.ndarray, records: list[dict], tile: int | None = None
) -> Path:
    """gallery.png: each elite with its class and confidence (records as in classes.csv), in
    tiles of `tile` pixels (default `gallery_tile`: by the number of elites)."""
    tile = gallery_tile(len(records)) if tile is None else tile
    width = 18 if tile >= 112 else tile // 6  # the default font is ~6 pixels per character
    captions = [caption(r["label"], r["index"], r["confidence"], width) for r in records]
    return images.save_gallery(path, elite_images, captions, tile=tile)


def save_checkpoint(out: Path, state: Any, loop_key: jax.Array, config: dict[str, Any]) -> Path:
    """checkpoint/state.npz: the whole evolution state, the generations key and the config."""
    tree = {
        "state": jax.tree.map(np.asarray, _as_dict(state)),
        "loop_key": np.asarray(jax.random.key_data(loop_key)),
    }
    return npz.save_params(out / "checkpoint" / "state.npz", tree, {"config": config})


def _as_dict(node: Any) -> Any:
    """A flax struct dataclass tree as nested dicts (for the flat .npz layout)."""
    if hasattr(node, "__dataclass_fields__"):
        return {k: _as_dict(getattr(node, k)) for k in node.__dataclass_fields__}
    return node


def load_genome(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Reads an elite's genome file: (encoding, genome batch of one, metadata). Every array the
    encoding's genomes have must be there with its shape and dtype, else `WeightsFileError`
    naming the file and the array."""
    tree, meta = npz.load_params(path)
    if "genome" not in tree or "encoding" not in meta:
        raise npz.WeightsFileError(f"{path}: not a jaxfool genome file (no genome/encoding)")
    try:
        encoding = encodings.from_spec(meta["encoding"])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise npz.WeightsFileError(f"{path}: bad encoding description ({e})") from None
    template = jax.eval_shape(lambda k: encoding.init(k, 1), jax.random.key(0))
    flat = npz.flatten({"genome": tree["genome"]})
    leaves = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        name = "/".join(["genome", _path_name(key_path)]).rstrip("/")
        value = flat.get(name)
        if value is None:
            raise npz.WeightsFileError(f"{path}: no {name}; not a genome of its encoding")
        if value.shape != leaf.shape[1:] or value.dtype != leaf.dtype:
            raise npz.WeightsFileError(
                f"{path}: {name} is {value.dtype}{list(value.shape)}, its encoding needs "
                f"{leaf.dtype}{list(leaf.shape[1:])}"
            )
        leaves.append(jnp.asarray(value)[None])
    genome = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)
    return encoding, genome, meta


def _path_name(path) -> str:
    """'archive/genomes/act' for a pytree key path (dataclass fields and dict keys)."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "name", getattr(k, "key", k))))
    return "/".join(parts)


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Deletes the temporary files that atomic writes of a killed process left in run directory
    `out` (`.<name>.<random>.tmp` beside the file it was writing; never read: the file under its
    real name is the previous, whole one). Only files of that pattern are touched."""
    removed = []
    for path in Path(out).rglob(".*.tmp"):
        if path.is_file() and fileio.is_temporary_name(path.name):
            path.unlink()
            removed.append(path)
    return removed


def checkpoint_generation(out: Path) -> int | None:
    """The generation of the checkpoint in run directory `out` (None: none, or unreadable)."""
    try:
        with np.load(Path(out) / "checkpoint" / "state.npz", allow_pickle=False) as z:
            return int(z["state/generation"])
    except (OSError, KeyError, ValueError):
        return None


def load_checkpoint(out: Path, template: Any) -> tuple[Any, jax.Array, dict[str, Any]]:
    """Restores (state, generations key, config) from checkpoint/state.npz.

    `template` is a state of the same structure (e.g. `jax.eval_shape` of `evolve.init`); every
    array must be present with the template's shape and dtype, else `RunDirError`.
    """
    path = Path(out) / "checkpoint" / "state.npz"
    if not Path(out).is_dir():
        raise RunDirError(f"{out}: no such run directory")
    if not path.exists():
        raise RunDirError(
            f"{out}: no checkpoint/state.npz (the run never reached its first checkpoint)"
        )
    try:
        tree, meta = npz.load_params(path)
    except npz.WeightsFileError as e:
        raise RunDirError(str(e)) from None
    if not isinstance(tree.get("state"), dict) or "loop_key" not in tree:
        raise RunDirError(f"{path}: not a jaxfool checkpoint (no state/ or loop_key)")
    flat = npz.flatten(tree["state"])
    leaves = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        name = _path_name(key_path)
        if name not in flat:
            raise RunDirError(f"{path}: no {name}; the checkpoint does not fit this config")
        value = flat[name]
        if value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise RunDirError(
                f"{path}: {name} is {value.dtype}{list(value.shape)}, this config needs "
                f"{leaf.dtype}{list(leaf.shape)}"
            )
        leaves.append(jnp.asarray(value))
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)
    try:
        key = jax.random.wrap_key_data(jnp.asarray(tree["loop_key"]))
    except (TypeError, ValueError) as e:
        raise RunDirError(f"{path}: loop_key is not a random key ({e})") from None
    return state, key, meta.get("config", {})


def drop_metrics_after(path: Path, generation: int) -> None:
    """Keeps the metrics lines up to the checkpoint's generation (a killed run wrote more)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line).get("generation", 0) <= generation]
    fileio.write_text(path, "".join(line + "\n" for line in kept))


def saved_settings(out: str | Path, kind: str = "run") -> dict:
    """config.json of the run (or experiment) in `out`, whose "flags" hold its settings;
    ConfigError(resume) if there is none, or it is not one (`kind` names what it should be)."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise ConfigError("resume", f"no config.json there (not a {kind} directory)")
    try:
        record = json.loads(path.read_text())
        if not isinstance(record["flags"], dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ConfigError("resume", f"{path} is not a {kind} config") from None
    return record


def kept_settings(
    saved: dict, ours: dict, given: set[str], keeps: str = "a resumed run keeps its settings"
) -> dict:
    """The saved values of the settings named in `ours` (those saved): a resumed run keeps
    them. One of `given` whose value differs from the saved one is a ConfigError naming it."""
    kept = {}
    for name, value in ours.items():
        if name not in saved:
            continue
        if name in given and value != saved[name]:
            raise ConfigError(
                name, f"--{name}={value} conflicts with the resumed run's {saved[name]!r}; {keeps}"
            )
        kept[name] = saved[name]
    return kept


def resumed_configs(
    out: str | Path, values: dict[str, Any], loop: LoopConfig, given: set[str]
) -> tuple[RunConfig, LoopConfig, dict]:
    """The saved run's RunConfig (a `given` setting that differs is a ConfigError) and its loop
    settings, each replaced by the `given` value where one was given. `values` are the flags'
    values by RunConfig field, unchecked: the saved settings replace them before RunConfig
    checks them together (an --emitter_params given alone meets the run's own --emitter, not
    the flag's default)."""
    record = saved_settings(out)
    saved = record["flags"]
    ours = {f.name: values[f.name] for f in dataclasses.fields(RunConfig) if f.name in values}
    changes = kept_settings(saved, ours, given)
    loop_changes = {
        f.name: saved[f.name]
        for f in dataclasses.fields(LoopConfig)
        if f.name in saved and f.name not in given and f.name not in ("out", "overwrite")
    }
    try:
        return (
            replace_checked(RunConfig(), **{**ours, **changes}),
            replace_checked(loop, out=str(out), **loop_changes),
            record,
        )
    except (TypeError, ConfigError) as e:
        if isinstance(e, ConfigError) and e.field in ours and e.field not in changes:
            raise  # a flag's own value, not a saved one
        path = Path(out) / "config.json"
        raise ConfigError("resume", f"{path}: a saved setting is invalid ({e})") from None
