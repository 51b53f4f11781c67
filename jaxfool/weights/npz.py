"""The project's own parameter files: a flat `.npz` of `/`-joined keys plus a JSON metadata entry.

Small, dependency-free and readable by NumPy alone; written atomically.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxfool import fileio

META_KEY = "__meta__"


class WeightsFileError(ValueError):
    """A weights file is missing, corrupt, or does not fit the network."""


def flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> {'a/b/c': array}."""
    flat = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict) or hasattr(v, "items"):
            flat.update(flatten(v, key))
        else:
            flat[key] = np.asarray(v)
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """{'a/b/c': array} -> nested dicts of arrays."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def save_params(path: str | Path, params: Any, meta: dict[str, Any] | None = None) -> Path:
    """Writes `params` (nested dicts of arrays) and JSON-able `meta` to `path` atomically."""
    arrays = flatten(params)
    if META_KEY in arrays:
        raise ValueError(f"{META_KEY!r} is reserved")
    arrays[META_KEY] = np.frombuffer(json.dumps(meta or {}).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return fileio.write_bytes(path, buf.getvalue())


def load_params(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a file written by `save_params`; returns (params, meta)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such weights file")
    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsFileError(f"{path}: not a readable .npz weights file ({e})") from None
    meta_bytes = flat.pop(META_KEY, None)
    meta = json.loads(meta_bytes.tobytes().decode()) if meta_bytes is not None else {}
    return unflatten(flat), meta


def check_matches(path: str | Path, params: Any, reference: Any) -> None:
    """Raises `WeightsFileError` naming the first key whose presence or shape differs."""
    got, want = flatten(params), flatten(reference)
    for key in sorted(set(got) | set(want)):
        if key not in got:
            raise WeightsFileError(f"{path}: missing parameter {key} {tuple(want[key].shape)}")
        if key not in want:
            raise WeightsFileError(f"{path}: unexpected parameter {key}")
        if got[key].shape != want[key].shape:
            raise WeightsFileError(
                f"{path}: parameter {key} has shape {tuple(got[key].shape)}, "
                f"the network expects {tuple(want[key].shape)}"
            )
