"""The retraining experiment's report: its log line and markdown table
(the confidence chart is `plots.retrain_confidence_figure`).

A row is one network's dict from `jaxfool.retrain.retrain` (test accuracy, rejection of the
previous round's fooling images, confidences of the new ones, generations to thresholds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxfool.runs import format_confidence


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
