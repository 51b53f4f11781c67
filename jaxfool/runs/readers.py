"""Reading a run directory back for charts: its metrics.jsonl rows, and the run as a
`plots.RunCurve` labelled from its summary.json or config.json (experiments/plot.py overlays
several). Every reader names the file that is missing or corrupt (ValueError).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxfool.plots import RunCurve


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; ValueError naming the file if it is missing, empty or has
    a line that is not a JSON object with a generation. An unterminated last line that does not
    parse is a row being written (the run is live) and is left out."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (not a run directory?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    lines = text.split("\n")
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # no newline after it: still being written
                continue
            raise ValueError(f"{path}: line {n} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("generation"), int):
            raise ValueError(f"{path}: line {n} is not a metrics row (no 'generation')")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no metrics rows (the run has not logged a chunk yet?)")
    return rows


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} if the file does not exist, ValueError if it is corrupt."""
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object")
    return obj


def run_label(name: str, settings: Mapping[str, Any]) -> str:
    """'DIR (model, encoding, seed N)', or just DIR when the run's settings are unknown."""
    encoding = settings.get("encoding")
    if isinstance(encoding, Mapping):
        encoding = encoding.get("name")
    parts = [str(settings[k]) for k in ("model",) if settings.get(k) is not None]
    parts += [str(encoding)] if encoding is not None else []
    parts += [f"seed {settings['seed']}"] if settings.get("seed") is not None else []
    return f"{name} ({', '.join(parts)})" if parts else name


def read_run(run_dir: str | Path, label: str | None = None) -> RunCurve:
    """A run directory's metrics.jsonl as a RunCurve; label, population and the number of
    classes come from summary.json, else config.json (written at the start of a run)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    rows = read_metrics(run_dir / "metrics.jsonl")
    summary = read_json_object(run_dir / "summary.json")
    config = read_json_object(run_dir / "config.json")
    flags = config.get("flags") if isinstance(config.get("flags"), dict) else {}
    settings = {**flags, **{k: v for k, v in summary.items() if v is not None}}
    classes = summary.get("classes", config.get("classes"))
    return RunCurve(
        label=label if label is not None else run_label(run_dir.resolve().name, settings),
        rows=rows,
        population=_int_or_none(settings.get("population")),
        initial_population=_int_or_none(flags.get("initial_population")),
        num_classes=len(classes) if isinstance(classes, list) else None,
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
