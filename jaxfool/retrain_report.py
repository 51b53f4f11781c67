"""The retraining experiment's report: its log line, markdown table and confidence plot.

A row is one network's dict from `jaxfool.retrain.retrain` (test accuracy, rejection of the
previous round's fooling images, confidences of the new ones, generations to thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

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
