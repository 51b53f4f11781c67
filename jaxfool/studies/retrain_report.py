"""The retraining experiment's report: its log line and markdown table
(the confidence chart is `plots.retrain_confidence_figure`).

A row is one network's dict from `jaxfool.studies.retrain.retrain` (test accuracy, rejection of the
previous round's fooling images, confidences of the new ones, generations to thresholds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxfool.runs.store import format_confidence


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
