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

from jaxfool.base import fileio

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
            if not isinstance(node, dict):
                raise ValueError(f"key {key!r} lies under the array {p!r}")
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"key {key!r} is both an array and a group")
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


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first entry, or an empty one
NPY_MAGIC = b"\x93NUMPY"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _check_zip(path: Path) -> None:
    """A WeightsFileError unless `path` looks like a complete zip archive (what .npz is)."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise WeightsFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if not head:
        raise WeightsFileError(f"{path}: empty file, not an .npz (zip archive) file")
    if head.startswith(NPY_MAGIC):
        raise WeightsFileError(f"{path}: a single .npy array, not an .npz (zip archive) file")
    if not head.startswith(ZIP_MAGIC):
        raise WeightsFileError(f"{path}: not an .npz file (an .npz is a zip archive)")
    if not zipfile.is_zipfile(path):
        raise WeightsFileError(f"{path}: truncated or corrupt .npz file (no zip directory)")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive; a WeightsFileError names the entry that cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {}
            for key in z.files:
                try:
                    flat[key] = z[key]
                except ValueError as e:
                    if "pickle" in str(e):
                        msg = f"entry {key!r} holds pickled Python objects (never loaded)"
                    else:
                        msg = f"entry {key!r} is not a readable array ({_one_line(e)})"
                    raise WeightsFileError(f"{path}: corrupt .npz file: {msg}") from None
                except (OSError, EOFError, zipfile.BadZipFile) as e:
                    msg = f"entry {key!r} is truncated or corrupt ({_one_line(e)})"
                    raise WeightsFileError(f"{path}: corrupt .npz file: {msg}") from None
            return flat
    except WeightsFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise WeightsFileError(f"{path}: not a readable .npz file ({_one_line(e)})") from None


def _read_meta(path: Path, entry: np.ndarray | None) -> dict[str, Any]:
    """The JSON object of the `__meta__` entry ({} without one)."""
    if entry is None:
        return {}
    try:
        if entry.dtype != np.uint8 or entry.ndim != 1:
            raise ValueError(f"{entry.dtype}{list(entry.shape)}, not uint8 bytes")
        meta = json.loads(entry.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"JSON {type(meta).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsFileError(f"{path}: corrupt {META_KEY} entry ({_one_line(e)})") from None
    return meta


def load_params(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a file written by `save_params`; returns (params, meta).

    Anything else (missing, empty, truncated, not a zip archive, pickled entries, corrupt
    metadata) raises `WeightsFileError` naming the file.
    """
    path = Path(path)
    fileio.check_readable_file(path, WeightsFileError, "weights file")
    _check_zip(path)
    flat = _read_arrays(path)
    meta = _read_meta(path, flat.pop(META_KEY, None))
    try:
        return unflatten(flat), meta
    except ValueError as e:
        raise WeightsFileError(f"{path}: corrupt .npz file: {e}") from None


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
