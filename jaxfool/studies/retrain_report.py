"""The retraining experiment's report: a round's statistics, its log line, the markdown table,
the confidence chart's series (drawn by `plots.retrain_confidence_figure`), and `read_retrain`,
which reads them back from an experiment's retrain.json.

A row is one network's dict from `jaxfool.studies.retrain.retrain` (test accuracy, rejection of the
previous round's fooling images, confidences of the new ones, generations to thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxfool.runs.readers import read_json_object
from jaxfool.runs.store import format_confidence


def median_confidence(log_prob: np.ndarray) -> float:
    """Median over cells of the elites' probabilities (the paper's "median confidence")."""
    return float(np.median(np.exp(np.asarray(log_prob, np.float64))))


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


def round_stats(rnd: Any, thresholds: Sequence[float]) -> dict[str, Any]:
    """The table row of one evolution round (a `retrain.FoolingRound`): confidences of all
    elites, generations needed."""
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


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def format_row(row: dict[str, Any], thresholds: Sequence[float]) -> str:
    """One log line per round."""
    gens = " ".join(
        f"gens_to_median>={t} {_fmt(row['generations_to_median'][str(t)], '.0f')}"
        for t in thresholds
    )
    line = (
        f"{row['network']} ({row['outputs']} outputs): test acc {row['test_accuracy']:.4f} | "
        f"rejects prev {_fmt(row.get('rejects_previous_trained'), '.2f')} "
        f"(held-out {_fmt(row.get('rejects_previous_heldout'), '.2f')}) | new fooling: median "
        f"{row['median_confidence']:.6f} max {row['max_confidence']:.6f} | {gens}"
    )
    probe = row.get("probe")
    if probe:
        rejects = _fmt(probe.get("rejects_previous"), ".2f")
        line += (
            f" | probe {probe['emitter']}: median {probe['median_confidence']:.6f} max "
            f"{probe['max_confidence']:.6f}, rejects prev {rejects}"
        )
    return line


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
    probed = any(r.get("probe") for r in rows)
    if probed:
        head += ["probe: rejects prev.", "probe: median conf", "probe: >= " + str(thresholds[-1])]
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
        if probed:
            probe = r.get("probe") or {}
            top = str(thresholds[-1])
            cells += [
                _pct(probe.get("rejects_previous")),
                format_confidence(probe["median_confidence"]) if probe else "-",
                f"{100 * probe['fraction_above'][top]:.0f}%" if probe else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def chart_series(rows: list[dict[str, Any]], emitter: str) -> dict[str, list[dict[str, Any]]]:
    """The confidence chart's series: the trained-on runs, and the probe runs if there are any
    (their rows carry the round's iteration; their rejection is of the previous probe)."""
    probes = [
        {**r["probe"], "iteration": r["iteration"], "test_accuracy": None,
         "rejects_previous_heldout": r["probe"].get("rejects_previous")}
        for r in rows if r.get("probe")
    ]  # fmt: skip
    if not probes:
        return {"": rows}
    return {f"{emitter} (trained on)": rows, f"probe: {probes[0]['emitter']}": probes}


def read_retrain(
    experiment_dir: str | Path, label: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """A retraining experiment's chart series (`chart_series`) from its retrain.json, each
    named 'LABEL, series' (LABEL: the encoding unless given), for
    `plots.retrain_confidence_figure` to overlay several experiments."""
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        raise ValueError(f"{experiment_dir}: no such retraining directory")
    path = experiment_dir / "retrain.json"
    if not path.exists():
        raise ValueError(f"{path}: no such file (not a retrain.py output directory?)")
    summary = read_json_object(path)
    rows, config = summary.get("rows"), summary.get("config")
    flags = config.get("flags") if isinstance(config, dict) else None
    if not isinstance(rows, list) or not rows or not isinstance(flags, dict):
        raise ValueError(f"{path}: no rounds and settings (rows, config.flags)")
    if label is None:
        label = str(flags.get("encoding", experiment_dir.resolve().name))
    series = chart_series(rows, str(flags.get("emitter", "original")))
    return {f"{label}, {name}" if name else label: rs for name, rs in series.items()}
