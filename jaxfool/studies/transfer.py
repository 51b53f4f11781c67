"""Transfer of fooling images (paper §3.5): score the elites evolved against one model with others.

    runs (summary.json + elite PNGs) --group by source model--> images, classes
    --score with each target model--> p_target(same class) --> matrix[source, target]

A cell holds the median confidence that the target gives the class the image was evolved for,
and the fraction of images at or above a threshold (0.99). The diagonal (a model scoring its own
elites) reproduces the runs' summary.json confidences, which checks the whole path.
Everything but the file readers is a pure function of arrays.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxfool.base import images as images_lib
from jaxfool.classifiers import Classifier, ModelRef
from jaxfool.classifiers.scoring import score_images
from jaxfool.runs.store import format_confidence

DEFAULT_THRESHOLD = 0.99


class TransferError(ValueError):
    """A run directory or model spec cannot be used; the message names it."""


def same_model(a: ModelRef, b: ModelRef) -> bool:
    """True when a and b name the same network: same name, the same weights (by sha256,
    defaults filled in) and mean file."""
    return a.key() == b.key()


def source_ref(model: str, weights: Any, mean: str | None) -> ModelRef:
    """The model a run fooled, from its summary's weights: a weights record (model, file,
    package or shipped, sha256), or a path (runs recorded before weights records)."""
    if isinstance(weights, dict):
        default = weights.get("shipped") or weights.get("package")
        file = None if default else weights.get("file")
        return ModelRef(model, file, mean, weights.get("sha256"))
    if isinstance(weights, list):  # an ensemble: its members' digests
        digests = [w.get("sha256", "") if isinstance(w, dict) else "" for w in weights]
        return ModelRef(model, None, mean, "ensemble:" + ",".join(digests))
    return ModelRef(model, weights, mean)


@dataclass
class RunElites:
    """The elites of one fool.py run: the model they fooled, their classes and images."""

    run: str
    source: ModelRef
    classes: np.ndarray  # int [N], the class each image was evolved for
    images: np.ndarray  # uint8 [N, H, W, C], as saved (the PNGs)
    confidences: np.ndarray  # float64 [N], the run's own confidence (summary.json)
    files: list[str] = field(default_factory=list)


def load_run(run_dir: str | Path) -> RunElites:
    """Reads summary.json, config.json (for --mean) and the elite PNGs of a fool.py run."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise TransferError(f"{run_dir}: no summary.json (not a fool.py run directory)")
    try:
        summary = json.loads(path.read_text())
        records = summary["classes"]
        model = summary["model"]
        if model == "ensemble":  # its members and fitness, e.g. "ensemble(mean: lenet + ...)"
            model = str(summary.get("ensemble", model))
    except (ValueError, KeyError, TypeError):
        raise TransferError(f"{path}: not a fool.py summary (no model/classes)") from None
    mean = None
    config = run_dir / "config.json"
    if config.is_file():
        try:
            mean = json.loads(config.read_text()).get("flags", {}).get("mean")
        except ValueError:
            raise TransferError(f"{config}: not valid JSON") from None
    if not records:
        raise TransferError(f"{path}: the run archived no elites")
    pngs, classes, confs, files = [], [], [], []
    for record in records:
        png = run_dir / record["image"]
        if not png.is_file():
            raise TransferError(f"{run_dir}: elite image {record['image']} is missing")
        pngs.append(images_lib.load_png(png))
        classes.append(int(record["index"]))
        confs.append(float(record["confidence"]))
        files.append(str(record["image"]))
    shapes = {p.shape for p in pngs}
    if len(shapes) != 1:
        raise TransferError(f"{run_dir}: elite images differ in shape: {sorted(shapes)}")
    return RunElites(
        run=str(run_dir),
        source=source_ref(model, summary.get("weights"), mean),
        classes=np.asarray(classes, np.int64),
        images=np.stack(pngs),
        confidences=np.asarray(confs, np.float64),
        files=files,
    )


def same_class_confidence(log_probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """float64 [N]: each image's probability of its own class; NaN where the target lacks it."""
    log_probs = np.asarray(log_probs, np.float64)
    classes = np.asarray(classes, np.int64)
    ok = (classes >= 0) & (classes < log_probs.shape[1])
    picked = np.take_along_axis(log_probs, np.where(ok, classes, 0)[:, None], axis=1)[:, 0]
    return np.where(ok, np.exp(picked), np.nan)


def cell_stats(
    confidences: np.ndarray, threshold: float = DEFAULT_THRESHOLD, top1: np.ndarray | None = None
) -> dict[str, Any]:
    """Median confidence, fraction >= threshold (and of top-1 hits) over the non-NaN images."""
    conf = np.asarray(confidences, np.float64)
    valid = ~np.isnan(conf)
    n = int(valid.sum())
    if n == 0:
        return {"n": 0, "median_confidence": None, "fraction_above": None, "top1_fraction": None}
    stats = {
        "n": n,
        "median_confidence": float(np.median(conf[valid])),
        "fraction_above": float(np.mean(conf[valid] >= threshold)),
        "top1_fraction": None,
    }
    if top1 is not None:
        stats["top1_fraction"] = float(np.mean(np.asarray(top1, bool)[valid]))
    return stats


def top1_hits(log_probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """bool [N]: the target's top-1 class is the class the image was evolved for."""
    return np.argmax(np.asarray(log_probs), axis=1) == np.asarray(classes)


def without_default_weights(ref: ModelRef) -> ModelRef:
    """`ref` with weights None when they are the registry default (so it is labelled `name`)."""
    if ref.weights and same_model(ref, ModelRef(ref.name, None, ref.mean)):
        return ModelRef(ref.name, None, ref.mean, ref.sha256)
    return ref


def group_by_source(run_elites: list[RunElites]) -> list[tuple[ModelRef, list[RunElites]]]:
    """Runs grouped by the model they fooled (one matrix row each), in first-seen order."""
    groups: list[tuple[ModelRef, list[RunElites]]] = []
    for r in run_elites:
        for ref, members in groups:
            if same_model(ref, r.source):
                members.append(r)
                break
        else:
            groups.append((without_default_weights(r.source), [r]))
    return groups


def unique_labels(refs: list[ModelRef]) -> list[str]:
    """Short labels, falling back to full paths where two models would share one."""
    short = [r.label() for r in refs]
    out = []
    for ref, label in zip(refs, short, strict=True):
        if short.count(label) > 1:
            label = f"{ref.name}:{ref.weights}" + (f"+{ref.mean}" if ref.mean else "")
        out.append(label)
    return out


def build_matrix(
    sources: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    cells: list[list[dict[str, Any]]],
    threshold: float,
) -> dict[str, Any]:
    """The JSON-able transfer matrix: rows = sources, columns = targets, a stats dict per cell."""
    if len(cells) != len(sources) or any(len(row) != len(targets) for row in cells):
        raise ValueError("cells must be [len(sources)][len(targets)]")

    def table(key: str) -> list[list[float | None]]:
        return [[cell[key] for cell in row] for row in cells]

    return {
        "threshold": threshold,
        "sources": sources,
        "targets": targets,
        "median_confidence": table("median_confidence"),
        "fraction_above": table("fraction_above"),
        "top1_fraction": table("top1_fraction"),
        "cells": cells,
    }


def _pct(x: float | None) -> str:
    """A percentage with enough digits not to round 0.99999998 up to 100%."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format_confidence(x)


def markdown(matrix: dict[str, Any]) -> str:
    """Two markdown tables (median confidence; fraction >= threshold), rows = sources.

    A cell where source and target are the same model is in bold (that is the runs' own score).
    """
    cols = [t["label"] for t in matrix["targets"]]
    thr = matrix["threshold"]

    def table(key: str, fmt) -> list[str]:
        lines = [
            "| source \\ target | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for src, row in zip(matrix["sources"], matrix["cells"], strict=True):
            texts = []
            for cell in row:
                text = fmt(cell)
                texts.append(f"**{text}**" if cell.get("same_model") else text)
            lines.append(f"| {src['label']} ({src['images']} images) | " + " | ".join(texts) + " |")
        return lines

    def frac(cell):
        if cell["fraction_above"] is None:
            return "n/a"
        return f"{round(cell['fraction_above'] * cell['n'])}/{cell['n']}"

    out = [
        "Median confidence of the target model for the class each image was evolved for:",
        "",
        *table("median_confidence", lambda c: _pct(c["median_confidence"])),
        "",
        f"Images that the target gives >= {thr} for that class:",
        "",
        *table("fraction_above", frac),
        "",
        "Bold: the target is the model the images were evolved against.",
    ]
    return "\n".join(out) + "\n"


def transfer_matrix(
    groups: list[tuple[ModelRef, list[RunElites]]],
    targets: list[tuple[ModelRef, Classifier, Any]],
    threshold: float = DEFAULT_THRESHOLD,
    chunk: int = 64,
) -> dict[str, Any]:
    """Scores every source group's images with every target; returns `build_matrix`'s dict.

    A target whose input shape differs from the images (MNIST vs ImageNet) gets an empty
    cell (n = 0). Per-image confidences are kept under each source's "images" list.
    """
    source_labels = unique_labels([ref for ref, _ in groups])
    target_labels = unique_labels([ref for ref, _, _ in targets])
    sources, cells = [], []
    for (ref, members), label in zip(groups, source_labels, strict=True):
        imgs = np.concatenate([m.images for m in members])
        classes = np.concatenate([m.classes for m in members])
        own = np.concatenate([m.confidences for m in members])
        per_image = [
            {"run": m.run, "image": f, "class": int(c), "source_confidence": float(p)}
            for m in members
            for f, c, p in zip(m.files, m.classes, m.confidences, strict=True)
        ]
        row = []
        for (tref, clf, params), tlabel in zip(targets, target_labels, strict=True):
            cell = {"source": label, "target": tlabel}
            if tuple(imgs.shape[1:]) != tuple(clf.image_shape):
                conf = np.full(len(imgs), np.nan)
                hits = np.zeros(len(imgs), bool)
            else:
                lp = score_images(clf, params, imgs, chunk)
                conf = same_class_confidence(lp, classes)
                hits = top1_hits(lp, classes)
            cell.update(cell_stats(conf, threshold, hits))
            cell["same_model"] = same_model(ref, tref)
            row.append(cell)
            for rec, p in zip(per_image, conf, strict=True):
                rec.setdefault("target_confidence", {})[tlabel] = None if np.isnan(p) else float(p)
        cells.append(row)
        sources.append(
            {
                "label": label,
                "model": ref.name,
                "weights": ref.weights,
                "mean": ref.mean,
                "runs": [m.run for m in members],
                "images": int(len(imgs)),
                "source_median_confidence": float(np.median(own)),
                "per_image": per_image,
            }
        )
    target_rows = [
        {"label": tl, "model": r.name, "weights": r.weights, "mean": r.mean}
        for (r, _, _), tl in zip(targets, target_labels, strict=True)
    ]
    return build_matrix(sources, target_rows, cells, threshold)
